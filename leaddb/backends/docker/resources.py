"""This project's containers, volumes and network on the engine: found by Compose's labels,
created with them, and removed only when they carry them.

The service's container is found as Compose finds it, by its labels (project, service, not a
one-off), whatever its name: Compose v1 names it ``<project>_postgres_1``, v2
``<project>-postgres-1``, and every task finds the same one. A same-named container without
the labels is never touched; a same-named volume without them is refused unless ``force``;
the network is removed only when it is ours and no other container uses it. Messages name the
engine by the address it was reached at (``engine.default_address``).
"""

from __future__ import annotations

from leaddb import compose
from leaddb.backends.docker import engine
from leaddb.backends.docker.compose_cli import CHECKED_VERSION
from leaddb.backends.docker.service import LABEL, ServiceSpec
from leaddb.errors import BackendError


class Resources:
    def __init__(self, client, spec: ServiceSpec) -> None:
        self.client = client
        self.spec = spec

    @property
    def address(self) -> str:
        return engine.default_address()

    # -- finding ---------------------------------------------------------------------
    def _get(self, collection, name: str):
        import docker.errors

        try:
            return collection.get(name)
        except docker.errors.NotFound:
            return None

    def _service_filters(self, *, oneoff: bool | None = False) -> dict:
        labels = [f"{k}={v}" for k, v in self.spec.project_labels().items()]
        labels.append(f"{LABEL}service={compose.SERVICE}")
        if oneoff is not None:
            labels.append(f"{LABEL}oneoff={oneoff}")
        return {"label": labels}

    def _summaries(self, *, oneoff: bool | None = False) -> list[dict]:
        """The engine's list entries of the service's containers: one call, no inspect."""
        return self.client.api.containers(all=True, filters=self._service_filters(oneoff=oneoff))

    @staticmethod
    def _name(summary: dict) -> str:
        return (summary.get("Names") or ["/" + summary["Id"][:12]])[0].lstrip("/")

    def container(self):
        """The service's container (a docker-py ``Container`` made from the list entry, no
        inspect), found by its labels; the running one, then number 1, when there are several
        (``docker compose up --scale``); None when there is none."""
        found = self._summaries()
        if not found:
            return None

        def rank(summary: dict) -> tuple:
            labels = summary.get("Labels") or {}
            return (summary.get("State") != "running", labels.get(LABEL + "container-number") != "1")

        summary = min(found, key=rank)
        return self.client.containers.prepare_model({**summary, "Name": "/" + self._name(summary)})

    def our_containers(self) -> list[tuple[str, str]]:
        """(id, name) of every container of the project's service, one-off ones (`docker
        compose run`) included: one list call, no inspect per container."""
        return [(c["Id"], self._name(c)) for c in self._summaries(oneoff=None)]

    def running_container(self):
        container = self.container()
        if container is None:
            raise BackendError(
                f"no container of service {compose.SERVICE!r} in compose project {self.spec.project!r} "
                f"({LABEL}project={self.spec.project}) on the engine at {self.address}",
                hint="`invoke db.reset --backend docker` creates it (or `docker compose up -d postgres`)",
            )
        if container.status != "running":
            raise BackendError(
                f"container {container.name} is {container.status}",
                hint="`invoke db.reset --backend docker` recreates it (or `docker compose up -d postgres` "
                "starts it)",
            )
        return container

    # -- creating --------------------------------------------------------------------
    def check_image(self, image: str, compose_file: str) -> str:
        """The image's id (what Compose labels its containers with); a clear error when the
        engine does not have it."""
        import docker.errors

        try:
            return self.client.api.inspect_image(image)["Id"]
        except docker.errors.ImageNotFound:
            raise BackendError(
                f"image {image!r} (from {compose_file}) is not on the engine at {self.address}",
                hint=f"`docker pull {image}`; where nothing can be pulled, build the local image with "
                "`bash docker/postgres15/build-image.sh` and set POSTGRES_IMAGE=leaddb/postgres:15-local",
            ) from None

    def ensure_network(self, version: str = CHECKED_VERSION) -> None:
        """``<project>_default``, as Compose creates it (a bridge network with its labels;
        ``version``: the Compose version to label it with)."""
        network = self._get(self.client.networks, self.spec.network_name)
        if network is None:
            self.client.networks.create(
                self.spec.network_name, driver="bridge", labels=self.spec.network_labels(version)
            )

    def create_volumes(self, version: str = CHECKED_VERSION) -> None:
        for key, name in self.spec.service.volume_names.items():
            self.client.volumes.create(name=name, labels=self.spec.volume_labels(key, version))

    # -- removing --------------------------------------------------------------------
    def remove(self, *, force: bool, network: bool = False) -> list[str]:
        """Remove this project's container(s) and volume(s) (and, with ``network``, its network
        when nothing else uses it); refuse anything foreign."""
        import docker.errors

        done = []
        ours = self.our_containers()
        same_name = self.client.api.containers(all=True, filters={"name": f"^/{self.spec.container_name}$"})
        if any(c["Id"] not in {i for i, _ in ours} for c in same_name):
            raise BackendError(
                f"container {self.spec.container_name} exists but does not carry this project's "
                f"compose labels ({LABEL}project={self.spec.project}); it is not ours",
                hint="leaving it alone: remove or rename it yourself, or choose another project name "
                "(COMPOSE_PROJECT_NAME)",
            )
        for container_id, name in ours:
            # anonymous volumes only; named ones below
            self.client.api.remove_container(container_id, force=True, v=True)
            done.append(f"container {name}")
        for key, name in self.spec.service.volume_names.items():
            volume = self._get(self.client.volumes, name)
            if volume is None:
                continue
            if not self.spec.is_ours(volume.attrs.get("Labels"), volume=key) and not force:
                raise BackendError(
                    f"volume {name} exists but was not created for compose project "
                    f"{self.spec.project!r} (no {LABEL}project/{LABEL}volume labels)",
                    hint="refusing to delete data this tool did not create; pass --force to remove it "
                    "anyway, or choose another project name (COMPOSE_PROJECT_NAME)",
                )
            try:
                volume.remove(force=force)
            except docker.errors.APIError as exc:
                users = [c.name for c in self.client.containers.list(all=True, filters={"volume": name})]
                raise BackendError(
                    f"volume {name} cannot be removed: {exc.explanation or exc}"
                    + (f" (used by container(s) {', '.join(users)})" if users else ""),
                    hint="stop and remove the containers using it, then reset again",
                ) from None
            done.append(f"volume {name}")
        if network:
            done += self._remove_network()
        return done

    def _remove_network(self) -> list[str]:
        import docker.errors

        network = self._get(self.client.networks, self.spec.network_name)
        if network is None or not self.spec.is_ours(network.attrs.get("Labels"), network="default"):
            return []
        network.reload()
        if network.attrs.get("Containers"):
            return []  # other services of the project still use it
        try:
            network.remove()
        except docker.errors.APIError:
            return []  # a container joined meanwhile: it stays, as Compose leaves it
        return [f"network {self.spec.network_name}"]
