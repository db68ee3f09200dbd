"""This project's containers, volumes and network on the engine: found by Compose's labels,
created with them, and removed only when they carry them.

A same-named container without the labels is never touched; a same-named volume without
them is refused unless ``force``; the network is removed only when it is ours and no other
container uses it.
"""

from __future__ import annotations

from leaddb import compose
from leaddb.backends.docker.service import LABEL, ServiceSpec
from leaddb.errors import BackendError


class Resources:
    def __init__(self, client, spec: ServiceSpec) -> None:
        self.client = client
        self.spec = spec

    # -- finding ---------------------------------------------------------------------
    def _get(self, collection, name: str):
        import docker.errors

        try:
            return collection.get(name)
        except docker.errors.NotFound:
            return None

    def container(self):
        return self._get(self.client.containers, self.spec.container_name)

    def our_containers(self) -> list[tuple[str, str]]:
        """(id, name) of every container of the project's service: one list call, no inspect
        per container."""
        labels = [f"{k}={v}" for k, v in self.spec.project_labels().items()]
        filters = {"label": [*labels, f"{LABEL}service={compose.SERVICE}"]}
        found = self.client.api.containers(all=True, filters=filters)
        return [(c["Id"], (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")) for c in found]

    def running_container(self):
        container = self.container()
        if container is None or not self.spec.is_ours(container.labels, service=compose.SERVICE):
            raise BackendError(
                f"no container {self.spec.container_name} of compose project {self.spec.project!r} "
                f"on the engine at {self.client.api.base_url}",
                hint="`invoke db.reset --backend docker` creates it (or `docker compose up -d postgres`)",
            )
        if container.status != "running":
            raise BackendError(
                f"container {self.spec.container_name} is {container.status}",
                hint="`invoke db.reset --backend docker` recreates it (or `docker compose up -d postgres` "
                "starts it)",
            )
        return container

    # -- creating --------------------------------------------------------------------
    def check_image(self, image: str, compose_file: str) -> None:
        import docker.errors

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise BackendError(
                f"image {image!r} (from {compose_file}) is not on the engine at {self.client.api.base_url}",
                hint=f"`docker pull {image}`; where nothing can be pulled, build the local image with "
                "`bash docker/postgres15/build-image.sh` and set POSTGRES_IMAGE=leaddb/postgres:15-local",
            ) from None

    def ensure_network(self) -> None:
        """``<project>_default``, as Compose creates it (a bridge network with its labels)."""
        network = self._get(self.client.networks, self.spec.network_name)
        if network is None:
            self.client.networks.create(
                self.spec.network_name, driver="bridge", labels=self.spec.network_labels()
            )

    def create_volumes(self) -> None:
        for key, name in self.spec.service.volume_names.items():
            self.client.volumes.create(name=name, labels=self.spec.volume_labels(key))

    # -- removing --------------------------------------------------------------------
    def remove(self, *, force: bool, network: bool = False) -> list[str]:
        """Remove this project's container(s) and volume(s) (and, with ``network``, its network
        when nothing else uses it); refuse anything foreign."""
        import docker.errors

        done = []
        same_name = self.container()
        if same_name is not None and not self.spec.is_ours(same_name.labels, service=compose.SERVICE):
            raise BackendError(
                f"container {self.spec.container_name} exists but does not carry this project's "
                f"compose labels ({LABEL}project={self.spec.project}); it is not ours",
                hint="leaving it alone: remove or rename it yourself, or choose another project name "
                "(COMPOSE_PROJECT_NAME)",
            )
        for container_id, name in self.our_containers():
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
