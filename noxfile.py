"""nox sessions: `nox --list`. Bare `nox` runs lint, tests and verify (not mutation).

Each session installs its lock (requirements/<lock>.txt: every package pinned and
hashed) and then the project without dependencies into its own virtualenv; `nox -R -s tests`
reuses it. `nox -s lock` rewrites the locks from pyproject.toml. Arguments after `--` go to
the underlying command, e.g. `nox -s verify -- --backend docker` or `nox -s tests -- -k drift`.

SIGTERM or SIGHUP to nox (Windows: Ctrl-Break, or its console window closing) stops the session
as Ctrl-C does: nox then stops the command it runs (SIGTERM), and `invoke db.verify` stops the
way its tasks document (the statement in progress cancelled on the server, the reports saying
which step stopped, the locks free) instead of living on without its parent. nox exits 130.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "verify"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "uv|venv"


# How nox stops the command it runs when it is stopped itself: after interrupt_timeout it sends the
# command SIGTERM, then waits terminate_timeout before it kills it; the tasks' clean-up (cancel the
# statement, end the server session, say what was left) is bounded well below that. On POSIX a
# SIGTERM may have reached nox alone, so the command hears of it after a second; on Windows the
# console's Ctrl-C or Ctrl-Break reaches every process in it, and nox's "terminate" is a hard kill,
# so nox leaves the command that time to stop by itself.
STOP_GRACE = {"interrupt_timeout": 60.0 if sys.platform == "win32" else 1.0, "terminate_timeout": 60.0}


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP (SIGBREAK on Windows) to nox stop it as Ctrl-C does: nox's answer to a
    KeyboardInterrupt is to stop the command it runs, which otherwise would run on without it.
    Once: a second signal while the command stops must not cut the wait short. Names looked up
    here, when the session runs: each platform has only some of them."""
    import signal

    stopping = []

    def stop(number, frame):
        if not stopping:
            stopping.append(number)
            raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP", "SIGBREAK"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) != signal.SIG_IGN:  # nohup stays nohup
            signal.signal(number, stop)


# requirements/<lock>.txt <- pyproject.toml's dependencies plus this extra (None: none), and the
# build backend (requirements/build.in); the other requirements/*.in are tools' own locks
LOCKS = {"base": None, "test": "test", "lint": "lint", "mutation": "mutation"}


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def _install(
    session: nox.Session, lock: str = "base", *, project: bool = True, bytecode: bool = False
) -> None:
    _stop_on_signals()  # every session installs first: from here on, a signal stops what it runs
    session.install("--quiet", "--require-hashes", "-r", f"requirements/{lock}.txt")
    if project:  # its dependencies and build backend came from the lock
        session.install("--quiet", "--no-deps", "--no-build-isolation", ".")
    if bytecode:
        # uv installs no bytecode, and with PYTHONDONTWRITEBYTECODE set none is ever written: each
        # of the hundreds of `python -m invoke` children the suite runs (in both of CI's passes)
        # would compile its imports from source again (`invoke --list` 0.75 s here, 0.2 s from
        # bytecode). Compiled once per install; `nox -R` (no install) reuses it.
        purelib = session.run_install("python", "-c", PURELIB, silent=True)
        if purelib:
            session.run_install("python", "-m", "compileall", "-q", "-q", "-j", "0", purelib.strip())


@nox.session
def verify(session: nox.Session) -> None:
    """Reset, apply, reapply, introspect, drift and bench in one reproducible run."""
    _install(session)
    session.run("invoke", "db.verify", *session.posargs, **STOP_GRACE)


# The suite runs in worker processes (pytest-xdist's -n auto, at most four): each worker has its
# own test server and per-user directory (tests/conftest.py). Work stealing: a few tests take many
# seconds, most a fraction of one. `nox -s tests -- -n 0` runs it in one process.
WORKERS = ("-n", "auto", "--maxprocesses", "4", "--dist", "worksteal")


def _workers_chosen(args: list[str]) -> bool:
    """Whether the arguments already say how many workers (``-n 0``: none), or turn xdist off."""
    return any(
        arg.startswith(("-n", "--numprocesses", "--maxprocesses", "--dist"))
        or arg in ("no:xdist", "-pno:xdist")
        for arg in args
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (schema constraints, runner, backends, drift, bench)."""
    _install(session, "test", bytecode=True)
    env = {}
    if os.environ.get("LEADDB_TEST_WINDOWS_SEMANTICS") == "1":  # the view: tests/windows_semantics/
        paths = [str(Path("tests/windows_semantics").resolve()), os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    args = session.posargs or ["-q"]
    session.run("python", "-m", "pytest", *args, *([] if _workers_chosen(args) else WORKERS), env=env)


@nox.session
def peers(session: nox.Session) -> None:
    """Our whole commands side by side with psql, dbmate, migra and a bash floor (benchmarks/peers.py)."""
    _install(session)
    session.run("python", "benchmarks/peers.py", *session.posargs)


# mutmut refuses Windows ("To run mutmut on Windows, please use the WSL", boxed/mutmut#397): said
# before anything is installed, with where it does run
MUTATION_ON_WINDOWS = (
    "mutmut does not run on Windows (upstream: boxed/mutmut issue 397). Next step: run this session "
    "in WSL (once: wsl --install; then in the WSL shell, in this checkout under /mnt/c/...: "
    'python3 -m pip install "nox[uv]" && python3 -m nox -s mutation), or on Linux or macOS; '
    "it needs no server and no Docker"
)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the server-free modules against tests/unit: score and survivors."""
    if sys.platform == "win32":
        session.error(MUTATION_ON_WINDOWS)
    _install(session, "mutation")
    environ = {"LEADDB_MUTATION": "1"}  # tests/unit/conftest.py: a few deterministic examples per mutant
    session.run("mutmut", "run", *(session.posargs or ["--max-children", "2"]), env=environ)
    session.run("python", "tests/unit/mutation_report.py")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), the non-destructive-migration lint and squawk."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("invoke", "db.lint")
    migrations = sorted(str(p) for p in Path("api/db/migrations").glob("*.sql"))
    session.run("squawk", *migrations)


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite requirements/*.txt from pyproject.toml (keeps pins; `-- --upgrade` takes new releases)."""
    _install(session, "uv", project=False)
    common = ("--universal", "--generate-hashes", "--python-version", "3.11", "--quiet")
    common += ("--custom-compile-command", "nox -s lock", *session.posargs)
    tools = set(Path("requirements").glob("*.in")) - {Path("requirements/build.in")}
    # uv.txt; migra.txt (benchmarks/peers.py); compose.txt (CI's Docker Compose v2, .ci/compose-plugin.sh)
    for tool in sorted(tools):
        session.run(
            "uv", "pip", "compile", tool.as_posix(), *common, "-o", tool.with_suffix(".txt").as_posix()
        )
    for name, extra in LOCKS.items():
        sources = ("pyproject.toml", "requirements/build.in", *(("--extra", extra) if extra else ()))
        session.run("uv", "pip", "compile", *sources, *common, "-o", f"requirements/{name}.txt")
