"""What each task does, over the library: one function per task, which orchestrates the rooms
and hands what they return to the views (``leaddb.views``) and its progress lines to ``say``.

Tasks and nox sessions call these; they raise ``LeadDbError`` subclasses for expected
failures, which the tasks turn into an exit code and one message. Every task that touches a
server holds the backend's lock (``Backend.lock``) from before it starts the server to its
end: exclusive for what replaces or removes (reset, down, bench, verify for its whole
pipeline), shared for applies and reads (introspect, drift, status, dump, erd): a read never
starts a server, makes a scratch database or reads a catalog while a reset is under way, and
is refused at once, as an apply is, naming the reset.

Each task function imports the rooms it uses, so a command loads only those: `invoke --list`
none of them, `invoke db.lint` no psycopg, docker-py or matplotlib, `invoke db.apply` no
catalog, drift or diagram code (``tests/test_startup.py`` keeps it so).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from leaddb import cli, paths, views, waits
from leaddb.console import say, seconds
from leaddb.errors import (
    EXIT_FAILURE,
    BenchmarkTargetMissed,
    LeadDbError,
    NonIdempotentMigration,
    SchemaDrift,
    Stopped,
    file_error,
    file_errors,
)
from leaddb.spec import SPEC_FILENAME, Spec

if TYPE_CHECKING:
    from leaddb.backends.base import Backend, BootReport
    from leaddb.migrations import Migration
    from leaddb.runner import ApplyResult

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    backend: str = "auto"
    dsn: str = ""
    project_dir: Path = PROJECT_DIR
    limits: waits.Limits | None = None  # how long a statement may wait or run (the task's flags)


def _select(options: Options) -> Backend:
    from leaddb import backends

    if options.limits is not None:
        waits.configure(options.limits)
    backend = backends.select(options.backend, options.project_dir, dsn=options.dsn, say=say)
    backend.tidy()  # what deleted workspaces left (local: their servers and state), said in one line
    return backend


@contextmanager
def _held(options: Options, task: str, *, shared: bool, backend: Backend | None = None) -> Iterator[Backend]:
    """The backend with its lock held for ``task``; ``backend`` is one whose lock the caller
    (verify, for its whole pipeline) already holds: used as it is, its lock never taken twice."""
    if backend is not None:
        yield backend
        return
    backend = _select(options)
    with backend.lock(task, shared=shared):
        yield backend


@contextmanager
def _reading(options: Options, task: str, backend: Backend | None = None) -> Iterator[Backend]:
    """A read task's backend, started under the shared lock."""
    with _held(options, task, shared=True, backend=backend) as backend:
        backend.start()
        yield backend


def _prepare(options: Options) -> tuple[Backend, list[Migration]]:
    from leaddb import verdict

    files = verdict.load(options.project_dir)  # MIGRATION_PATH_UNSPECIFIED before anything starts
    return _select(options), files


def _shown(path: Path, options: Options) -> str:
    return paths.shown(path, options.project_dir)


def reset(
    options: Options,
    *,
    force: bool = False,
    fast_reset: bool = False,
    end_sessions: bool = False,
    held: Backend | None = None,
) -> BootReport:
    """``held``: a backend whose exclusive lock the caller holds (verify)."""
    from leaddb import verdict

    files = verdict.load(options.project_dir)  # MIGRATION_PATH_UNSPECIFIED before anything starts
    with _held(options, "db.reset", shared=False, backend=held) as backend:
        how = " (fast: recreate from the template database)" if fast_reset else ""
        say(f"resetting {backend.describe()}{how}")
        if fast_reset:
            from leaddb import fast

            backend.start()
            boot = fast.reset(backend, files)
        else:
            boot = backend.reset(files, force=force, end_sessions=end_sessions)
    views.print_boot(boot)
    say(f"ready: {backend.describe()}")
    return boot


def apply(options: Options) -> ApplyResult:
    backend, files = _prepare(options)
    with backend.lock("db.apply", shared=True):
        backend.start()
        result = backend.apply(files)
    views.print_apply(result, options.project_dir, "apply")
    return result


def reapply(options: Options, *, held: Backend | None = None) -> ApplyResult:
    """Apply every file again on the applied database: any error is NON_IDEMPOTENT_MIGRATION."""
    from leaddb import catalog, drift, verdict

    files = verdict.load(options.project_dir)
    with _held(options, "db.reapply", shared=True, backend=held) as backend:
        backend.start()
        before = catalog.snapshot_of(backend.conninfo())
        result = backend.apply(files, reapply=True)
        after = catalog.snapshot_of(backend.conninfo())
    views.print_apply(result, options.project_dir, "reapply")
    changes = drift.diff(after, before)
    if changes:
        listing = "\n".join(f"  - {d.describe('first apply')}" for d in changes)
        raise NonIdempotentMigration(
            f"applying the migrations a second time changed the schema:\n{listing}",
            hint="a re-run must be a no-op: guard the statement that re-creates or alters these objects",
        )
    say("reapply: every file applied again without error; the catalog is unchanged")
    return result


def down(options: Options, *, everything: bool = False) -> str:
    """This workspace's server and state; with ``everything``, then all of this user's on this
    machine (``backends.remove_user_state``: every checkout's, the shared pristine, the cache)."""
    backend = _select(options)
    with backend.lock("db.down"):
        message = backend.down()
    say(message)
    if everything:
        from leaddb import backends

        backends.remove_user_state()
    return message


# -- introspection and drift -----------------------------------------------------------


def _live_and_spec(backend: Backend, options: Options):
    from leaddb import catalog, drift

    spec = Spec.load(options.project_dir / SPEC_FILENAME)
    live = catalog.snapshot_of(backend.conninfo())
    expected = drift.cached_expected_snapshot(spec, backend)
    return spec, live, expected


def _check_drift(live, expected) -> None:
    from leaddb import drift

    problems = [d.describe() for d in drift.diff(live, expected)]
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise SchemaDrift(
            f"{len(problems)} difference(s) between the live database and the spec:\n{listing}",
            hint="change the migration (or the spec) so both say the same; `invoke db.reset` then re-checks",
        )


def introspect(options: Options, json_path: Path | None = None, *, held: Backend | None = None):
    from leaddb import drift, verdict

    verdict.load(options.project_dir)  # every file the spec prints, and no other, before a server
    with _reading(options, "db.introspect", held) as backend:
        spec, live, cached = _live_and_spec(backend, options)
    expected = cached.snapshot
    cover = drift.coverage(live, expected)
    optional = [(b.name, b.where, bool(live.get("table", b.name))) for b in spec.blocks_of("optional")]
    views.print_introspection(live, drift.owner_table, cover, optional)
    if json_path:
        live.save(json_path)
        say(f"catalog snapshot written to {_shown(json_path, options)}")
    _check_drift(live, expected)
    say("introspect: every specified object is present; no drift")
    return cover


SCHEMA_DUMP = Path("api/db/schema.snapshot.json")
# what reading a snapshot file that is not one raises (JSON errors are ValueErrors; "[]" a TypeError)
UNREADABLE_SNAPSHOT = (OSError, ValueError, KeyError, TypeError, AttributeError)


def drift_check(options: Options, *, held: Backend | None = None) -> None:
    """The live catalog against the spec; then against the committed schema dump, so a
    schema change is visible in review."""
    from leaddb import verdict

    started = time.perf_counter()
    verdict.load(options.project_dir)  # every file the spec prints, and no other, before a server
    with _reading(options, "db.drift", held) as backend:
        _drift_check(options, backend, started)


def _drift_check(options: Options, backend: Backend, started: float) -> None:
    from leaddb import catalog, drift, erd

    spec = Spec.load(options.project_dir / SPEC_FILENAME)
    # the schema and the diagram's model in one session, each in one round trip
    what = "reading the schema and the diagram from the catalog"
    with waits.watched(backend.conninfo(), what, connect=catalog.connect) as conn:
        live, model = catalog.snapshot(conn), erd.read_on(conn)
    expected = drift.cached_expected_snapshot(spec, backend)
    _check_drift(live, expected.snapshot)
    took, compared = seconds(time.perf_counter() - started), len(expected.snapshot.objects)
    say(f"drift: none ({compared} objects compared in {took}; the spec's schema {expected.source})")
    dump_path = options.project_dir / SCHEMA_DUMP
    hint = "run `invoke db.dump` and commit the file, so reviewers see the schema change in git diff"
    if not dump_path.is_file():
        raise SchemaDrift(f"{SCHEMA_DUMP.as_posix()} is missing", hint=hint)
    try:
        committed = catalog.Snapshot.load(dump_path)
    except UNREADABLE_SNAPSHOT as exc:  # a merge conflict, a hand edit
        raise LeadDbError(
            f"{SCHEMA_DUMP.as_posix()} cannot be read ({type(exc).__name__}: {exc})", hint=hint
        ) from None
    stale = drift.diff(live, committed)
    if stale:
        listing = "\n".join(f"  - {d.describe(SCHEMA_DUMP.name)}" for d in stale)
        raise SchemaDrift(f"{SCHEMA_DUMP.as_posix()} is stale:\n{listing}", hint=hint)
    say(f"schema dump: {SCHEMA_DUMP.as_posix()} is up to date")
    check_diagram(backend.conninfo(), options.project_dir, model)


def check_diagram(conninfo: str, project_dir: Path, model=None) -> None:
    """The committed docs/schema.md must be the diagram of the live schema (``model``: read
    already, or read here)."""
    from leaddb import erd
    from leaddb.erd import mermaid, readme

    path = project_dir / mermaid.MARKDOWN_PATH
    hint = "run `invoke db.erd` and commit docs/schema.md, so the diagram shows the schema as it is"
    if not path.is_file():
        raise SchemaDrift(f"{mermaid.MARKDOWN_PATH.as_posix()} is missing", hint=hint)
    if model is None:
        model = erd.read(conninfo)
    current = mermaid.markdown(model)
    with file_errors("read", mermaid.MARKDOWN_PATH.as_posix()):
        committed = path.read_bytes()
    if committed != current.encode("utf-8"):
        where = erd.stale_lines(committed.decode("utf-8", errors="replace"), current)
        raise SchemaDrift(f"{mermaid.MARKDOWN_PATH.as_posix()} is stale: {where}", hint=hint)
    readme.check(project_dir, model)
    say(f"diagram: {mermaid.MARKDOWN_PATH.as_posix()} is up to date")


def dump(options: Options) -> Path:
    """Write the normalised catalog snapshot of the live database to api/db/."""
    from leaddb import catalog

    path = options.project_dir / SCHEMA_DUMP
    with _reading(options, "db.dump") as backend:
        catalog.snapshot_of(backend.conninfo()).save(path)
    say(f"wrote {SCHEMA_DUMP.as_posix()}")
    return path


# -- status and diagram ----------------------------------------------------------------


def status(
    options: Options, *, json_path: Path | None = None, detail: bool = False, held: Backend | None = None
):
    """Per migration file: applied, pending, partial or drifted; then objects no file creates."""
    from leaddb import catalog, verdict  # noqa: F401 - the rooms it uses, loaded before the lock's session
    from leaddb import status as schema_status  # noqa: F401

    files = verdict.load(options.project_dir)
    with _reading(options, "db.status", held) as backend:
        return _status(options, backend, files, json_path=json_path, detail=detail)


def _status(options: Options, backend: Backend, files, *, json_path: Path | None, detail: bool):
    from leaddb import catalog, janitor
    from leaddb import status as schema_status

    live = catalog.snapshot_of(backend.conninfo())
    if detail:
        name = "the migrations applied to a scratch database"
        with janitor.scratch_database(backend.conninfo("postgres"), purpose="status") as scratch:
            backend.apply(files, dbname=scratch)
            reference = catalog.snapshot_of(backend.conninfo(scratch))
    else:
        name = SCHEMA_DUMP.as_posix()
        try:
            reference = catalog.Snapshot.load(options.project_dir / SCHEMA_DUMP)
        except UNREADABLE_SNAPSHOT as exc:
            raise LeadDbError(
                f"{name} cannot be read ({type(exc).__name__}: {exc}); definitions are held against it",
                hint="rebuild it (`invoke db.reset`, then `invoke db.dump`, and commit it), "
                "or run `invoke db.status --detail`",
            ) from None
    found = schema_status.check(files, live, reference, reference_name=name)
    if found.pending:  # not silently: say where the missing tables are, if they are elsewhere
        wanted = [o.name for o in reference.of_kind("table") if not live.get("table", o.name)]
        for schema, tables in catalog.tables_elsewhere(backend.conninfo(), wanted).items():
            found.notes.append(schema_status.elsewhere_note(schema, tables))
    views.print_status(found)
    if json_path:
        with file_errors("write the status to", _shown(json_path, options)):
            found.save(json_path)
        say(f"status written to {_shown(json_path, options)}")
    found.raise_for_state()
    return found


def diagram(
    options: Options,
    *,
    markdown_path: Path | None = None,
    svg_path: Path | None = None,
    held: Backend | None = None,
):
    """The ER diagram of the live schema: Mermaid in docs/schema.md, SVG when Graphviz is there."""
    from leaddb import erd
    from leaddb.erd import graphviz, mermaid, readme

    with _reading(options, "db.erd", held) as backend:
        model = erd.read(backend.conninfo())
    committed = markdown_path is None  # the committed diagram, which the README embeds too
    markdown_path = markdown_path or options.project_dir / mermaid.MARKDOWN_PATH
    with file_errors("write the diagram to", _shown(markdown_path, options)):
        mermaid.write_markdown(model, markdown_path)
    counts = f"{len(model.tables)} tables, {len(model.foreign_keys)} foreign keys, {len(model.enums)} enums"
    say(f"wrote {_shown(markdown_path, options)} ({counts})")
    readme_path = options.project_dir / readme.README_PATH
    if committed and readme_path.is_file():
        done = readme.update(readme_path, model, _shown(readme_path, options))
        if done:
            say(done)
    svg_path = svg_path or options.project_dir / "reports" / "schema.svg"
    if graphviz.dot_program():
        with file_errors("write the diagram to", _shown(svg_path, options)):
            graphviz.svg(model, svg_path)
        say(f"wrote {_shown(svg_path, options)}")
    else:
        say("no SVG: Graphviz's `dot` is not on PATH (Debian: apt-get install graphviz)")
    return model


# -- benchmark -------------------------------------------------------------------------


def run_bench(
    options: Options,
    *,
    runs: int = 10,
    json_path: Path | None = None,
    scale: Sequence[int] = (),
    held: Backend | None = None,
):
    """``runs``, ``json_path`` and ``scale`` as ``leaddb.cli`` checks them (the tasks do);
    ``held``: a backend whose exclusive lock the caller holds (verify)."""
    from leaddb import bench, plots, psql_baseline, stats

    counts = list(scale)
    # where the results go is checked before the runs, so a bad one loses no results
    results = cli.output_directory(
        "benchmarks/results", None, default=options.project_dir / "benchmarks" / "results"
    )
    targets = Spec.load(options.project_dir / SPEC_FILENAME).targets
    if held is None:
        backend, files = _prepare(options)
    else:
        from leaddb import verdict

        backend, files = held, verdict.load(options.project_dir)
    say(f"bench: {runs} fresh resets of {backend.describe()}")
    if runs < stats.MIN_RUNS_FOR_P99:
        say(
            f"note: with {runs} runs p99 is close to the maximum; "
            f"it needs >= {stats.MIN_RUNS_FOR_P99} runs to mean much"
        )
    psql = psql_baseline.psql_program()
    no_psql = "note: no psql found: the psql -f per file baseline is left out"
    say(psql_baseline.psql_note(psql) if psql else no_psql)
    with backend.lock("db.bench") if held is None else nullcontext():  # verify holds it
        with views.bench_progress(runs) as on_run:
            result = bench.run(backend, files, runs, targets, on_run=on_run, psql=psql)
        if counts:
            sizes = ", ".join(map(str, counts))
            say(f"scale: generated schemas of {sizes} files (runner and psql -f per file)")
            result.scale = bench.scale(backend, counts, psql=psql)
    views.print_bench(
        result,
        stats.goals_for(backend.capabilities.fresh_boot_goal),
        stats.PERCENTILE_METHOD,
        overhead_goal=stats.OVERHEAD_GOAL,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = results / f"{stamp}-{backend.name}"
    with file_errors("write the results to", _shown(results, options)):
        bench.save(result, stem.with_suffix(".json"))
        plots.plot(result, stem.with_suffix(".png"))
        if result.scale:
            plots.plot_scale(result.scale, stem.with_name(stem.name + "-scale.png"))
    say(f"results: {_shown(stem.with_suffix('.json'), options)} and .png")
    if json_path:
        with file_errors("write the results to", _shown(json_path, options)):
            bench.save(result, json_path)
    if not result.passed:
        raise BenchmarkTargetMissed(
            "; ".join(v.why for v in result.missed() if v.outcome == bench.MISSED)
            + f" (on the {backend.name} backend)",
            hint="see the tables above; profile the slowest phase",
        )
    return result


# -- the whole pipeline ----------------------------------------------------------------


def verify(options: Options, *, bench_runs: int = 5, report_dir: Path | None = None) -> list:
    """reset+apply → reapply → introspect → drift → status → diagram → bench, each timed; stops at
    the first failure.

    Writes ``verify.json`` and ``verify.junit.xml`` whatever the outcome; the status and diagram
    steps write ``status.json``, ``schema.md`` and ``schema.svg`` beside them.
    """
    from leaddb import report, verdict

    backend = _select(options)
    options = replace(options, backend=backend.name)  # resolve auto once
    report_dir = report_dir or options.project_dir / "reports"
    steps = [
        ("apply", lambda: reset(options, held=backend)),
        ("reapply", lambda: reapply(options, held=backend)),
        ("introspect", lambda: introspect(options, held=backend)),
        ("drift", lambda: drift_check(options, held=backend)),
        ("status", lambda: status(options, json_path=report_dir / "status.json", held=backend)),
        (
            "diagram",
            lambda: diagram(
                options,
                markdown_path=report_dir / "schema.md",
                svg_path=report_dir / "schema.svg",
                held=backend,
            ),
        ),
        ("bench", lambda: run_bench(options, runs=bench_runs, held=backend)),
    ]
    outcome: dict[str, object] = {}
    results: list[report.StepResult] = []
    failure: LeadDbError | None = None
    # one exclusive lock from the reset to the bench: no other task runs between the steps
    with ExitStack() as whole_run:
        first = "apply"
        try:
            verdict.load(options.project_dir)  # the rules refuse before a server is touched
            first = "lock"
            whole_run.enter_context(backend.lock("db.verify"))
        except LeadDbError as exc:  # the apply step's refusal, or the lock another task holds: recorded
            failure, steps = exc, []
            results.append(report.StepResult(first, 0.0, False, exc.exit_code, str(exc)))
        for name, step in steps:
            say(f"\n== {name}")
            started = time.perf_counter()
            try:
                outcome[name] = step()
            except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the reports say where it stopped
                code = exc.exit_code if isinstance(exc, Stopped) else 130
                how = f"stopped by {exc.signal_name}" if isinstance(exc, Stopped) else "interrupted (Ctrl-C)"
                results.append(report.StepResult(name, time.perf_counter() - started, False, code, how))
                exc.add_note(_stopped_reports(results, report_dir, backend.name, name, options))
                raise
            except LeadDbError as exc:
                failure = exc
                results.append(
                    report.StepResult(name, time.perf_counter() - started, False, exc.exit_code, str(exc))
                )
                say(f"== {name}: FAILED in {seconds(results[-1].seconds)}")
                break
            except Exception as exc:  # an error no check expected (a bug, the OS): recorded, then raised
                code, why = _unexpected(exc)
                results.append(report.StepResult(name, time.perf_counter() - started, False, code, why))
                exc.add_note(_stopped_reports(results, report_dir, backend.name, name, options, "failed"))
                raise
            results.append(report.StepResult(name, time.perf_counter() - started, True))
            bench_result = outcome.get("bench")
            if name == "bench" and bench_result is not None and bench_result.outcome != "pass":
                # passed, but with a timing target missed at this machine's floor: said, never hidden
                results[-1].outcome = bench_result.outcome
                results[-1].message = "\n".join(v.why for v in bench_result.missed())
            say(f"== {name}: ok in {seconds(results[-1].seconds)}")
    views.print_verify(backend.name, results)
    try:
        with file_errors("write the reports to", _shown(report_dir, options)):
            json_path, junit_path = report.write(results, report_dir, backend=backend.name)
    except LeadDbError as unwritten:
        if failure is None:
            raise
        say(f"note: {unwritten.detail}")  # the step's failure is the one to report
        raise failure from None
    say(f"reports: {_shown(json_path, options)} {_shown(junit_path, options)}")
    if "bench" in outcome:
        views.print_targets(outcome["bench"])
    if failure:
        raise failure
    return results


def _unexpected(exc: Exception) -> tuple[int, str]:
    """The exit code and the one line ``leaddb.cli.boundary`` gives an exception no check
    expected: an ``OSError`` is the user's environment, anything else a bug."""
    if isinstance(exc, OSError):
        failure = file_error(exc, "use")
        return failure.exit_code, str(failure)
    return EXIT_FAILURE, f"internal error: {type(exc).__name__}: {exc}"


def _stopped_reports(
    results: list, report_dir: Path, backend_name: str, step: str, options: Options, how: str = "stopped"
) -> str:
    """The reports of a verify that was stopped in ``step`` (or ``how``: failed there without a
    check expecting it): what they and the pipeline say."""
    from leaddb import report

    try:
        paths = report.write(results, report_dir, backend=backend_name)
    except OSError as exc:
        return f"verify {how} in its {step} step; the reports could not be written ({exc.strerror or exc})"
    shown = " and ".join(_shown(path, options) for path in paths)
    return f"verify {how} in its {step} step, which {shown} record as {how}; no later step ran"


def lint_migrations(options: Options) -> None:
    """Every migration file against every rule of the spec's "Migrations: directory and tooling"
    (the same check reset, apply and reapply make before they touch a server)."""
    from leaddb import verdict

    files = verdict.load(options.project_dir)
    say(
        f"lint: {len(files)} migration files follow the spec's rules (naming, text, header, printed in "
        "the spec, one transaction, not destructive, no logic, schema only)"
    )
