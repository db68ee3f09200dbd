"""nox sessions: `nox --list`. Bare `nox` runs lint, tests and verify (not mutation).

Each session installs its lock (requirements/<lock>.txt: every package pinned and
hashed) and then the project without dependencies into its own virtualenv; `nox -R -s tests`
reuses it. `nox -s lock` rewrites the locks from pyproject.toml. Arguments after `--` go to
the underlying command, e.g. `nox -s verify -- --backend docker` or `nox -s tests -- -k drift`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "verify"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "uv|venv"


# requirements/<lock>.txt <- pyproject.toml's dependencies plus this extra (None: none), and the
# build backend (requirements/build.in); the other requirements/*.in are tools' own locks
LOCKS = {"base": None, "test": "test", "lint": "lint", "mutation": "mutation"}


def _install(session: nox.Session, lock: str = "base", *, project: bool = True) -> None:
    session.install("--quiet", "--require-hashes", "-r", f"requirements/{lock}.txt")
    if project:  # its dependencies and build backend came from the lock
        session.install("--quiet", "--no-deps", "--no-build-isolation", ".")


@nox.session
def verify(session: nox.Session) -> None:
    """Reset, apply, reapply, introspect, drift and bench in one reproducible run."""
    _install(session)
    session.run("invoke", "db.verify", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (schema constraints, runner, backends, drift, bench)."""
    _install(session, "test")
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session
def peers(session: nox.Session) -> None:
    """Our whole commands side by side with psql, dbmate, migra and a bash floor (benchmarks/peers.py)."""
    _install(session)
    session.run("python", "benchmarks/peers.py", *session.posargs)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the server-free modules against tests/unit: score and survivors."""
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
