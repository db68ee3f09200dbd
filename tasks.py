"""invoke tasks: `invoke --list`. Each task is argument handling plus one library call.

Defaults come from invoke config (``invoke.yaml``) or ``INVOKE_DB_BACKEND`` /
``INVOKE_DB_DSN`` / ``INVOKE_DB_LOCK_TIMEOUT`` / ``INVOKE_DB_STATEMENT_TIMEOUT``; a flag wins
over both. Every flag is checked before any work.
Exit codes: 0 ok, 1 failure (a lock or statement timeout too), 2 MIGRATION_PATH_UNSPECIFIED,
3 SCHEMA_DRIFT, 4 NON_IDEMPOTENT_MIGRATION, 5 benchmark target missed (BENCHMARK_TARGET_MISSED: a
bare `docker run` of the same container meets it here, or the tool adds more than 25% of the
reset), 6 MIGRATIONS_PENDING, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up
(SIGHUP), 149 Ctrl-Break or the console window closed (Windows' SIGBREAK); each stop cancels the
statement in progress on the server and says what was left. A target missed only because this
machine's own floor misses it (a bare `docker run` of the same container misses it too) exits 0,
with `TIMING TARGET MISSED ON THIS MACHINE` printed and the outcome "missed at this machine's
floor" recorded in the bench JSON and reports/verify.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, task

# invoke turns bytecode writing off before it loads this file (unless --write-pyc), so every
# command compiled the library and its dependencies from source again (a third of a warm
# command); Python's own setting (-B, PYTHONDONTWRITEBYTECODE) decides instead
sys.dont_write_bytecode = sys.flags.dont_write_bytecode

from leaddb import cli  # noqa: E402 - after the line above, so its bytecode is written too

with cli.starting():  # Ctrl-C while the library loads: "interrupted", not a traceback
    from leaddb import workflow

PROJECT_DIR = Path(__file__).resolve().parent
BACKEND_HELP = "auto (Docker if an engine answers, else local), docker, local or dsn"
DSN_HELP = "libpq connection string of an existing server (implies --backend dsn under auto)"
COMMON_HELP = {"backend": BACKEND_HELP, "dsn": DSN_HELP}
WAIT_HELP = {
    "lock_timeout": "give up a statement that waits this long for another session's lock "
    "(seconds, or 30s, 2min; default 120; 0: no limit)",
    "statement_timeout": "give up a statement that runs this long, waiting or not (default 0: no limit)",
}
APPLY_HELP = {**COMMON_HELP, **WAIT_HELP}


def _options(c, backend: str | None, dsn: str | None, lock_timeout=None, statement_timeout=None):
    backend, dsn = cli.connection(backend, dsn, c.db.backend, c.db.dsn)
    limits = cli.wait_limits(lock_timeout, statement_timeout, c.db.lock_timeout, c.db.statement_timeout)
    return workflow.Options(backend=backend, dsn=dsn, project_dir=PROJECT_DIR, limits=limits)


@task(
    help={
        **APPLY_HELP,
        "force": "with docker/dsn: also remove a volume or database this tool did not create",
        "fast": "keep the running server; recreate the database from a template built once per migration set",
        "end-sessions": "with dsn: end other clients' sessions on the database being replaced "
        "(without it a reset refuses while there are any, naming them)",
    }
)
@cli.boundary
def reset(
    c,
    backend=None,
    dsn=None,
    force=False,
    fast=False,
    end_sessions=False,
    lock_timeout=None,
    statement_timeout=None,
):
    """Fresh cluster/volume/database, boot, apply every migration; prints each phase's time."""
    options = _options(c, backend, dsn, lock_timeout, statement_timeout)
    workflow.reset(options, force=force, fast_reset=fast, end_sessions=end_sessions)


@task(help=APPLY_HELP)
@cli.boundary
def apply(c, backend=None, dsn=None, lock_timeout=None, statement_timeout=None):
    """Apply every migration in order to the running database (psql -v ON_ERROR_STOP=1 semantics)."""
    workflow.apply(_options(c, backend, dsn, lock_timeout, statement_timeout))


@task(help=APPLY_HELP)
@cli.boundary
def reapply(c, backend=None, dsn=None, lock_timeout=None, statement_timeout=None):
    """Apply every migration again; any error or change is NON_IDEMPOTENT_MIGRATION (exit 4)."""
    workflow.reapply(_options(c, backend, dsn, lock_timeout, statement_timeout))


@task(help={**COMMON_HELP, "json": "also write the catalog snapshot to this JSON file"})
@cli.boundary
def introspect(c, backend=None, dsn=None, json=None):
    """Show the live schema (like \\dt and \\d+ leads/sources/offers) and its coverage of the spec."""
    workflow.introspect(_options(c, backend, dsn), json_path=cli.output_file("--json", json))


@task(help=COMMON_HELP)
@cli.boundary
def drift(c, backend=None, dsn=None):
    """Compare the live catalog with the spec's SQL; SCHEMA_DRIFT (exit 3) names every difference."""
    workflow.drift_check(_options(c, backend, dsn))


@task(
    help={
        **APPLY_HELP,
        "runs": f"number of fresh resets to time (default {cli.DEFAULT_RUNS})",
        "json": "also write the results here",
        "scale": "comma-separated sizes of generated schemas to apply, e.g. 10,100,1000 "
        f"(each at most {cli.MAX_SCALE})",
    }
)
@cli.boundary
def bench(
    c, backend=None, dsn=None, runs=None, json=None, scale=None, lock_timeout=None, statement_timeout=None
):
    """Time N fresh resets; p50/p95/p99 against the spec's targets (exit 5 when the tool misses one)."""
    workflow.run_bench(
        _options(c, backend, dsn, lock_timeout, statement_timeout),
        runs=cli.count("--runs", runs, default=cli.DEFAULT_RUNS),
        json_path=cli.output_file("--json", json),
        scale=cli.sizes("--scale", scale),
    )


@task(help=COMMON_HELP)
@cli.boundary
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
@cli.boundary
def status(c, backend=None, dsn=None, json=None, detail=False):
    """Per migration file: applied, pending, partial or drifted, and objects no file creates (read-only)."""
    workflow.status(_options(c, backend, dsn), json_path=cli.output_file("--json", json), detail=detail)


@task(
    help={
        **COMMON_HELP,
        "out": "where the Mermaid diagram goes (default docs/schema.md, committed)",
        "svg": "where the Graphviz SVG goes when `dot` is on PATH (default reports/schema.svg)",
    }
)
@cli.boundary
def erd(c, backend=None, dsn=None, out=None, svg=None):
    """Write the ER diagram of the live schema: Mermaid to docs/schema.md, SVG through Graphviz."""
    workflow.diagram(
        _options(c, backend, dsn),
        markdown_path=cli.output_file("--out", out, create_parents=True),
        svg_path=cli.output_file("--svg", svg, create_parents=True),
    )


@task(
    help={
        **APPLY_HELP,
        "bench_runs": f"fresh resets timed by the bench step (default {cli.DEFAULT_BENCH_RUNS}; "
        "more for steadier p95/p99)",
        "report_dir": "where verify.json and verify.junit.xml go (default reports/)",
    }
)
@cli.boundary
def verify(
    c, backend=None, dsn=None, bench_runs=None, report_dir=None, lock_timeout=None, statement_timeout=None
):
    """The whole pipeline: reset+apply, reapply, introspect, drift, status, diagram, bench; reports."""
    workflow.verify(
        _options(c, backend, dsn, lock_timeout, statement_timeout),
        bench_runs=cli.count("--bench-runs", bench_runs, default=cli.DEFAULT_BENCH_RUNS),
        report_dir=cli.output_directory("--report-dir", report_dir, default=PROJECT_DIR / "reports"),
    )


@task
@cli.boundary
def lint(c):
    """Check every migration file against the spec's rules (naming, header, one transaction, no DROP, …)."""
    workflow.lint_migrations(workflow.Options(project_dir=PROJECT_DIR))


@task(
    help={
        **COMMON_HELP,
        "all": "then everything of yours on this machine: every checkout's local cluster and state, "
        "the shared pristine, the per-user cache",
    }
)
@cli.boundary
def down(c, backend=None, dsn=None, all=False):
    """Stop and remove what this workspace created (local cluster, or compose container and volume)."""
    workflow.down(_options(c, backend, dsn), everything=all)


# the wait limits' "" is "the default" (leaddb.waits): a string, so that invoke reads INVOKE_DB_* as text
# and the flags' checks (leaddb.cli.wait_limits) name a bad value instead of invoke's cast failing
DEFAULTS = {"db": {"backend": "auto", "dsn": "", "lock_timeout": "", "statement_timeout": ""}}
db = Collection("db", reset, apply, reapply, introspect, drift, status, dump, erd, bench, verify, lint, down)
db.configure(DEFAULTS)
ns = Collection()
ns.add_collection(db)
cli.check_invoke_config(PROJECT_DIR, DEFAULTS)  # invoke merges it next, and would stop with a traceback
