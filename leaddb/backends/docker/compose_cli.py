"""What the Compose CLI itself says about the service: its config hash and its version.

``docker compose up`` keeps a container it finds (by its labels) only when the container's
``com.docker.compose.config-hash`` is the hash Compose computes for the service as it resolves
it, and ``com.docker.compose.image`` is the id of the service's image; otherwise it recreates
it (a restart). The hash is Compose's own (its JSON of the resolved service, which changes
between Compose versions), so it is asked from Compose rather than computed here:
``docker compose config --hash=postgres`` with the project name, directory, compose file and
environment of the reset. Where the CLI does not answer (no ``docker`` on PATH, no Compose v2
plugin; Docker Desktop always has both), the container gets this tool's own hash, and the
reset says that a later ``docker compose up`` recreates it once (same volume, data kept).

``ask`` starts both CLI calls at once and returns at once; ``Question.answer`` collects them,
so their ~0.15 s each runs beside the engine's work (removing the previous container).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass

from leaddb import compose

# What this tool writes as com.docker.compose.version where no Compose answered: the Compose v2
# release it is checked against in CI (requirements/compose.in).
CHECKED_VERSION = "2.40.3"
TIMEOUT = 15.0  # seconds; `config --hash` reads files only, but the CLI may be slow to start
HASH_LINE = re.compile(rf"^{re.escape(compose.SERVICE)} ([0-9a-f]{{64}})$")
SHOWN = {"hash": f"config --hash={compose.SERVICE}", "version": "version --short"}


@dataclass(frozen=True)
class Answer:
    config_hash: str
    version: str
    from_compose: bool
    """True: both came from the Compose CLI; False: this tool's own (``reason`` says why)."""
    reason: str = ""

    def note(self) -> str | None:
        """The one line a reset prints when Compose did not answer."""
        if self.from_compose:
            return None
        return (
            f"note: `docker compose` did not answer ({self.reason}): the container carries this "
            "tool's own config hash, so a later `docker compose up` recreates it once "
            "(a restart; same volume, data kept)"
        )


def own_hash(service: compose.PostgresService) -> str:
    """This tool's hash of the service (not Compose's): where no Compose CLI answers."""
    config = json.dumps(service.raw, sort_keys=True, default=str)
    return hashlib.sha256(config.encode()).hexdigest()


def command(service: compose.PostgresService) -> list[str]:
    """The global options that make the CLI see the project as the reset does."""
    return [
        "docker",
        "compose",
        "--project-name",
        service.project_name,
        "--project-directory",
        str(service.project_dir),
        "--file",
        str(service.compose_file),
    ]


class Question:
    """Both CLI calls, running; ``answer`` waits for them (a bounded while)."""

    def __init__(self, service: compose.PostgresService, environ: dict[str, str]) -> None:
        self.service = service
        self._calls: dict[str, subprocess.Popen | None] = {}
        self._failure = ""
        # the reset's own settings, not this process's: the hash covers the resolved values
        env = {**environ, "COMPOSE_PROJECT_NAME": service.project_name}
        argv = {
            "hash": [*command(service), "config", f"--hash={compose.SERVICE}"],
            "version": ["docker", "compose", "version", "--short"],
        }
        for name, args in argv.items():
            try:
                self._calls[name] = subprocess.Popen(
                    args,
                    cwd=service.project_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                )
            except OSError as exc:  # no docker CLI on PATH
                self._failure = f"{type(exc).__name__}: {exc.strerror or exc}"
                self._stop()
                break

    def _stop(self) -> None:
        for call in self._calls.values():
            if call is not None and call.poll() is None:
                call.kill()
                call.wait()

    def close(self) -> None:
        """End whatever still runs (nothing, once ``answer`` returned) and close the pipes."""
        self._stop()
        for call in self._calls.values():
            if call is not None:
                for stream in (call.stdout, call.stderr):
                    if stream is not None:
                        stream.close()

    def _output(self, name: str, timeout: float) -> str:
        call = self._calls[name]
        try:
            out, err = call.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop()
            raise LookupError(
                f"`docker compose {SHOWN[name]}` gave no answer within {timeout:.0f} s"
            ) from None
        if call.returncode != 0:
            last = (err.strip().splitlines() or [f"exit status {call.returncode}"])[-1]
            raise LookupError(f"`docker compose {SHOWN[name]}`: {last}")
        return out

    def answer(self, timeout: float = TIMEOUT) -> Answer:
        if self._failure:
            return fallback(self.service, self._failure)
        try:
            version = self._output("version", timeout).strip().removeprefix("v")
            if not re.fullmatch(r"2\.\d+\.\d+\S*", version):
                raise LookupError(f"it is Compose {version or '?'}, not v2")
            found = [m for line in self._output("hash", timeout).splitlines() if (m := HASH_LINE.match(line))]
        except LookupError as exc:
            self._stop()
            return fallback(self.service, str(exc))
        if len(found) != 1:
            return fallback(self.service, "`docker compose config --hash` printed no hash")
        return Answer(found[0].group(1), version, True)


def fallback(service: compose.PostgresService, reason: str) -> Answer:
    return Answer(own_hash(service), CHECKED_VERSION, False, reason)


def ask(service: compose.PostgresService, environ: dict[str, str] | None = None) -> Question:
    return Question(service, dict(os.environ if environ is None else environ))
