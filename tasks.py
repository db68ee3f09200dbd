"""invoke tasks: `invoke --list`. Each task is argument handling plus one library call.

Defaults come from invoke config (``invoke.yaml``) or ``INVOKE_DB_BACKEND`` /
``INVOKE_DB_DSN``; a flag wins over both. Exit codes: 0 ok, 1 failure,
2 MIGRATION_PATH_UNSPECIFIED, 3 SCHEMA_DRIFT, 4 NON_IDEMPOTENT_MIGRATION,
5 benchmark target missed, 6 MIGRATIONS_PENDING.
"""

from __future__ import annotations

import functools
from pathlib import Path

from invoke import Collection, Exit, task

from leaddb import workflow
from leaddb.errors import LeadDbError

BACKEND_HELP = "auto (Docker if an engine answers, else local), docker, local or dsn"
DSN_HELP = "libpq connection string of an existing server (implies --backend dsn under auto)"
COMMON_HELP = {"backend": BACKEND_HELP, "dsn": DSN_HELP}


def _options(c, backend: str | None, dsn: str | None) -> workflow.Options:
    return workflow.Options(
        backend=backend or c.db.backend, dsn=dsn or c.db.dsn, project_dir=Path(__file__).resolve().parent
    )


def _expected_failures(body):
    """Expected failures leave as one message and their exit code, never a traceback."""

    @functools.wraps(body)
    def run(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except LeadDbError as exc:
            raise Exit(str(exc), exc.exit_code) from None

    return run


@task(
    help={
        **COMMON_HELP,
        "force": "with docker/dsn: also remove a volume or database this tool did not create",
        "fast": "keep the running server; recreate the database from a template built once per migration set",
    }
)
@_expected_failures
def reset(c, backend=None, dsn=None, force=False, fast=False):
    """Fresh cluster/volume/database, boot, apply every migration; prints each phase's time."""
    workflow.reset(_options(c, backend, dsn), force=force, fast_reset=fast)


@task(help=COMMON_HELP)
@_expected_failures
def apply(c, backend=None, dsn=None):
    """Apply every migration in order to the running database (psql -v ON_ERROR_STOP=1 semantics)."""
    workflow.apply(_options(c, backend, dsn))


@task(help=COMMON_HELP)
@_expected_failures
def reapply(c, backend=None, dsn=None):
    """Apply every migration again; any error or change is NON_IDEMPOTENT_MIGRATION (exit 4)."""
    workflow.reapply(_options(c, backend, dsn))


@task(help={**COMMON_HELP, "json": "also write the catalog snapshot to this JSON file"})
@_expected_failures
def introspect(c, backend=None, dsn=None, json=None):
    """Show the live schema (like \\dt and \\d+ leads/sources/offers) and its coverage of the spec."""
    workflow.introspect(_options(c, backend, dsn), json_path=Path(json) if json else None)


@task(help=COMMON_HELP)
@_expected_failures
def drift(c, backend=None, dsn=None):
    """Compare the live catalog with the spec's SQL; SCHEMA_DRIFT (exit 3) names every difference."""
    workflow.drift_check(_options(c, backend, dsn))


@task(
    help={
        **COMMON_HELP,
        "runs": "number of fresh resets to time",
        "json": "also write the results here",
        "scale": "comma-separated sizes of generated schemas to apply, e.g. 10,100,1000",
    }
)
@_expected_failures
def bench(c, backend=None, dsn=None, runs=10, json=None, scale=""):
    """Time N fresh resets; p50/p95/p99 against the spec's targets (exit 5 when one is missed)."""
    workflow.run_bench(
        _options(c, backend, dsn), runs=int(runs), json_path=Path(json) if json else None, scale=scale
    )


@task(help=COMMON_HELP)
@_expected_failures
def dump(c, backend=None, dsn=None):
    """Write the live schema, normalised, to api/db/schema.snapshot.json (commit it; verify checks it)."""
    workflow.dump(_options(c, backend, dsn))


@task(
    help={
        **COMMON_HELP,
        "json": "also write the status (each file, what is missing or differs, extras) to this JSON file",
        "detail": "hold definitions against the migrations applied to a scratch database on the same "
        "server (needs CREATEDB) instead of the committed api/db/schema.snapshot.json",
    }
)
@_expected_failures
def status(c, backend=None, dsn=None, json=None, detail=False):
    """Per migration file: applied, pending, partial or drifted, and objects no file creates (read-only)."""
    workflow.status(_options(c, backend, dsn), json_path=Path(json) if json else None, detail=detail)


@task(
    help={
        **COMMON_HELP,
        "out": "where the Mermaid diagram goes (default docs/schema.md, committed)",
        "svg": "where the Graphviz SVG goes when `dot` is on PATH (default reports/schema.svg)",
    }
)
@_expected_failures
def erd(c, backend=None, dsn=None, out=None, svg=None):
    """Write the ER diagram of the live schema: Mermaid to docs/schema.md, SVG through Graphviz."""
    workflow.diagram(
        _options(c, backend, dsn),
        markdown_path=Path(out) if out else None,
        svg_path=Path(svg) if svg else None,
    )


@task(
    help={
        **COMMON_HELP,
        "bench_runs": "fresh resets timed by the bench step (default 5; more for steadier p95/p99)",
        "report_dir": "where verify.json and verify.junit.xml go (default reports/)",
    }
)
@_expected_failures
def verify(c, backend=None, dsn=None, bench_runs=5, report_dir=None):
    """The whole pipeline: reset+apply, reapply, introspect, drift, status, diagram, bench; reports."""
    workflow.verify(
        _options(c, backend, dsn),
        bench_runs=int(bench_runs),
        report_dir=Path(report_dir) if report_dir else None,
    )


@task
@_expected_failures
def lint(c):
    """Check every migration file against the spec's rules (naming, header, one transaction, no DROP, …)."""
    workflow.lint_migrations(_options(c, None, None))


@task(help=COMMON_HELP)
@_expected_failures
def down(c, backend=None, dsn=None):
    """Stop and remove what this workspace created (local cluster, or compose container and volume)."""
    workflow.down(_options(c, backend, dsn))


db = Collection("db", reset, apply, reapply, introspect, drift, status, dump, erd, bench, verify, lint, down)
db.configure({"db": {"backend": "auto", "dsn": ""}})
ns = Collection()
ns.add_collection(db)
