"""nox sessions: `nox --list`. Bare `nox` runs lint, tests and verify (not mutation).

Each session installs what it needs into its own virtualenv; `nox -R -s tests`
reuses it. Arguments after `--` go to the underlying command, e.g.
`nox -s verify -- --backend docker` or `nox -s tests -- -k drift`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "verify"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"


def _install(session: nox.Session, *extras: str) -> None:
    target = f".[{','.join(extras)}]" if extras else "."
    session.run_install("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target)


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
    _install(session, "test", "mutation")
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
