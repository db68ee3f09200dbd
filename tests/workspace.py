"""A copy of the project that tests run tasks in (tests/test_dsn.py, test_reliability.py,
test_pristine.py): ``ws("db.apply")`` runs ``python -m invoke`` in it as a user does (a child
process: the end-to-end proof), ``ws.in_process("db.apply")`` runs the same task in this process
through ``invoke.Program`` over the copy's own ``tasks.py`` (the same argument handling, checks
and messages, without the child's start-up: for cases about validation and messages)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import invoke
from printed import write_printed

from leaddb import console, janitor, migrations, verdict

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")


@contextlib.contextmanager
def environment(changes: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (None: removed), restored afterwards."""
    saved = dict(os.environ)
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Workspace:
    """A copy of the project (``tasks.py``, the compose file, the spec, ``api/``; ``docs/`` too
    with ``docs=True``: db.drift checks the diagram) in a new temporary directory, its tasks run
    with ``env`` over the environment (``state``: LEADDB_STATE_DIR, a directory in the copy)."""

    def __init__(self, project_dir: Path, *, prefix: str, env: dict[str, str], docs: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        for name in PROJECT_FILES:
            shutil.copy(project_dir / name, self.root / name)
        shutil.copytree(project_dir / "api", self.root / "api")
        if docs:
            shutil.copytree(project_dir / "docs", self.root / "docs")
        self.root.chmod(0o755)
        self.env = {**os.environ, **env}
        self._tasks = None

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "invoke", *args]

    def __call__(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def in_process(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """The task run here, as ``invoke`` runs it (:func:`in_process`)."""
        if self._tasks is None:
            self._tasks = load_tasks(self.root)
        return in_process(self.root, self._tasks, {**self.env, **(env or {})}, *args)

    def write(self, name: str, content: str | bytes) -> Path:
        """A migration file, printed in the copy's spec as well (rule "printed in the spec")."""
        return write_printed(self.root, name, content)

    def files(self) -> list[migrations.Migration]:
        return verdict.load(self.root)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load_tasks(root: Path):
    """The ``tasks.py`` of a copy of the project, loaded as a module of its own."""
    spec = importlib.util.spec_from_file_location(
        f"leaddb_ws_tasks_{secrets.token_hex(4)}", root / "tasks.py"
    )
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


def run_task(
    root: Path, tasks, changes: dict[str, str | None], tempdir: Path, *args: str, patches=()
) -> tuple[int, str, str]:
    """``invoke <args>`` run in this process over ``tasks``, in ``root``, with ``changes`` to the
    environment (None: removed) and ``tempdir`` for tempfile, all restored afterwards (and
    ``patches``, context managers, held meanwhile): its exit code, stdout and stderr. The patches
    are the innermost: entered once the working directory is ``root`` and left before it is
    restored, so one that switches the user (test_inputs' ``as_user``) never has that user
    return to a directory only the test's own may enter (a clone under ``mktemp -d``, 0700)."""
    program = invoke.Program(namespace=tasks.ns, name="invoke", binary="invoke")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as held:
        held.enter_context(environment(changes))
        held.enter_context(mock.patch.object(tempfile, "tempdir", str(tempdir)))
        held.enter_context(contextlib.chdir(root))
        held.enter_context(contextlib.redirect_stdout(out))
        held.enter_context(contextlib.redirect_stderr(err))
        for patch in patches:
            held.enter_context(patch)
        try:
            program.run(["invoke", *args], exit=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def in_process(root: Path, tasks, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The task run in this process, as ``invoke`` runs it in a child in ``root`` with ``env`` as
    its environment: exit code, stdout and stderr captured; the environment and the working
    directory as the child would have them, restored afterwards."""
    bugs = root / ".bug-reports"  # a bug report (tempfile) lands here, not in /tmp
    bugs.mkdir(mode=0o700, exist_ok=True)
    changes = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changes |= {k: None for k in os.environ if k not in env}  # what the child would not have
    fresh = (  # a new process: its once-per-process sweep, and no rich console made yet
        mock.patch.object(janitor, "_swept", set()),
        mock.patch.object(console, "_made", None),
    )
    code, out, err = run_task(root, tasks, changes, bugs, *args, patches=fresh)
    argv = [sys.executable, "-m", "invoke", *args]
    return subprocess.CompletedProcess(argv, code, out, err)


def clean(result: subprocess.CompletedProcess, *secrets_: str) -> str:
    """The user-facing output (stderr), checked to carry no traceback and no secret."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, result.stderr
    for secret in secrets_:
        assert secret not in text
    return result.stderr
