"""What each task does, over the library: one function per task, printing as it goes.

Tasks and nox sessions call these; they raise ``LeadDbError`` subclasses for expected
failures, which the tasks turn into an exit code and one message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leaddb import backends, catalog, migrations
from leaddb import bench as harness
from leaddb import fast as fast_path
from leaddb import lint as destructive
from leaddb import report as reports
from leaddb.backends.base import Backend, BootReport
from leaddb.console import console, say, seconds, table
from leaddb.drift import coverage, diff, expected_snapshot, owner_table, verbatim_differences
from leaddb.errors import (
    BenchmarkTargetMissed,
    LeadDbError,
    MigrationError,
    NonIdempotentMigration,
    SchemaDrift,
)
from leaddb.runner import ApplyResult
from leaddb.spec import SPEC_FILENAME, Spec

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    backend: str = "auto"
    dsn: str = ""
    project_dir: Path = PROJECT_DIR


def _select(options: Options) -> Backend:
    return backends.select(options.backend, options.project_dir, dsn=options.dsn, say=say)


def _prepare(options: Options) -> tuple[Backend, list[migrations.Migration]]:
    files = migrations.load(options.project_dir)  # MIGRATION_PATH_UNSPECIFIED before anything starts
    backend = _select(options)
    return backend, files


def print_boot(report: BootReport) -> None:
    rows = [[p.name, seconds(p.seconds)] for p in report.phases]
    rows.append(["total", seconds(report.total)])
    table(f"reset ({report.backend})", ["phase", "time"], rows, right={1})


def print_apply(result: ApplyResult, project_dir: Path, title: str) -> None:
    rows = [
        [f.migration.display(project_dir), f.statements, len(f.notices), seconds(f.seconds)]
        for f in result.files
    ]
    table(title, ["file", "statements", "notices", "time"], rows, right={1, 2, 3})
    say(f"{title}: {len(result.files)} files in {seconds(result.seconds)}")


def reset(options: Options, *, force: bool = False, fast: bool = False) -> BootReport:
    backend, files = _prepare(options)
    say(f"resetting {backend.describe()}{' (fast: recreate from the template database)' if fast else ''}")
    report = fast_path.reset(backend, files) if fast else backend.reset(files, force=force)
    print_boot(report)
    say(f"ready: {backend.describe()}")
    return report


def apply(options: Options) -> ApplyResult:
    backend, files = _prepare(options)
    result = backend.apply(files)
    print_apply(result, options.project_dir, "apply")
    return result


def reapply(options: Options) -> ApplyResult:
    """Apply every file again on the applied database: any error is NON_IDEMPOTENT_MIGRATION."""
    backend, files = _prepare(options)
    before = catalog.snapshot_of(backend.conninfo())
    result = backend.apply(files, reapply=True)
    print_apply(result, options.project_dir, "reapply")
    changes = diff(catalog.snapshot_of(backend.conninfo()), before)
    if changes:
        listing = "\n".join(f"  - {d.describe('first apply')}" for d in changes)
        raise NonIdempotentMigration(
            f"applying the migrations a second time changed the schema:\n{listing}",
            hint="a re-run must be a no-op: guard the statement that re-creates or alters these objects",
        )
    say("reapply: every file applied again without error; the catalog is unchanged")
    return result


def down(options: Options) -> str:
    backend = _select(options)
    message = backend.down()
    say(message)
    return message


# -- introspection and drift -----------------------------------------------------------

DESCRIBED_TABLES = ("leads", "sources", "offers")


def _live_and_spec(backend: Backend, options: Options):
    spec = Spec.load(options.project_dir / SPEC_FILENAME)
    live = catalog.snapshot_of(backend.conninfo())
    expected = expected_snapshot(spec, backend.conninfo("postgres"), backend.conninfo)
    return spec, live, expected


def _check_drift(spec, live, expected, options: Options) -> None:
    problems = [d.describe() for d in diff(live, expected)]
    problems += verbatim_differences(spec, options.project_dir)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise SchemaDrift(
            f"{len(problems)} difference(s) between the live database and the spec:\n{listing}",
            hint="change the migration (or the spec) so both say the same; `invoke db.reset` then re-checks",
        )


def describe_table(live, name: str) -> None:
    """A ``\\d+ name``-style view: columns, then indexes and constraints."""
    # snapshot order is the catalog query's: table, then column number
    columns = [o for o in live.objects.values() if o.kind == "column" and owner_table(o) == name]
    rows = [
        [
            o.name.split(".", 1)[1],
            o.get("type"),
            "not null" if o.get("not_null") else "",
            {"a": "generated always as identity", "d": "generated by default as identity"}.get(
                o.get("identity") or "", o.get("default") or ""
            ),
        ]
        for o in columns
    ]
    table(f'Table "public.{name}"', ["Column", "Type", "Nullable", "Default"], rows)
    for o in live.of_kind("index"):
        if owner_table(o) == name:
            say(f'    "{o.name}" {o.get("definition").split(" USING ", 1)[-1]}')
    for o in live.of_kind("constraint"):
        if owner_table(o) == name:
            say(f'    CONSTRAINT "{o.name.split(".", 1)[1]}" {o.get("definition")}')


def introspect(options: Options, json_path: Path | None = None):
    backend = _select(options)
    spec, live, expected = _live_and_spec(backend, options)
    rows = []
    for t in live.of_kind("table"):
        parts = {
            k: sum(1 for o in live.of_kind(k) if owner_table(o) == t.name)
            for k in ("column", "constraint", "index")
        }
        rows.append(["public", t.name, "table", parts["column"], parts["constraint"], parts["index"]])
    table(
        "List of relations (\\dt)",
        ["Schema", "Name", "Type", "columns", "constraints", "indexes"],
        rows,
        right={3, 4, 5},
    )
    for name in DESCRIBED_TABLES:
        if live.get("table", name):
            describe_table(live, name)
    cover = coverage(live, expected)
    table(
        "coverage of the spec",
        ["kind", "present", "specified", "coverage"],
        [[k, p, s, f"{100 * p / s:.0f}%" if s else "n/a"] for k, (p, s) in cover.items()],
        right={1, 2, 3},
    )
    for block in spec.blocks_of("optional"):
        present = bool(live.get("table", block.name))
        say(
            f"optional object {block.name} ({block.where}): "
            f"{'PRESENT although optional' if present else 'skipped on purpose (optional, not created)'}"
        )
    if json_path:
        live.save(json_path)
        say(f"catalog snapshot written to {json_path}")
    _check_drift(spec, live, expected, options)
    say("introspect: every specified object is present; no drift")
    return cover


SCHEMA_DUMP = Path("api/db/schema.snapshot.json")


def drift(options: Options) -> None:
    """The live catalog against the spec; then against the committed schema dump, so a
    schema change is visible in review."""
    started = time.perf_counter()
    backend = _select(options)
    spec, live, expected = _live_and_spec(backend, options)
    _check_drift(spec, live, expected, options)
    say(f"drift: none ({len(expected.objects)} objects compared in {seconds(time.perf_counter() - started)})")
    dump_path = options.project_dir / SCHEMA_DUMP
    hint = "run `invoke db.dump` and commit the file, so reviewers see the schema change in git diff"
    if not dump_path.is_file():
        raise SchemaDrift(f"{SCHEMA_DUMP.as_posix()} is missing", hint=hint)
    stale = diff(live, catalog.Snapshot.load(dump_path))
    if stale:
        listing = "\n".join(f"  - {d.describe(SCHEMA_DUMP.name)}" for d in stale)
        raise SchemaDrift(f"{SCHEMA_DUMP.as_posix()} is stale:\n{listing}", hint=hint)
    say(f"schema dump: {SCHEMA_DUMP.as_posix()} is up to date")


def dump(options: Options) -> Path:
    """Write the normalised catalog snapshot of the live database to api/db/."""
    backend = _select(options)
    path = options.project_dir / SCHEMA_DUMP
    catalog.snapshot_of(backend.conninfo()).save(path)
    say(f"wrote {SCHEMA_DUMP.as_posix()}")
    return path


# -- benchmark -------------------------------------------------------------------------

# The team's goals on the 2-core CI machine (issue: benchmarks). Reported, never exit-coded:
# only the spec's targets decide the exit code.
GOALS = {
    "local": [("fresh boot + apply (total)", "p95", 1.8)],
    "docker": [("fresh boot + apply (total)", "p95", 3.0)],
    "any": [("apply only", "p95", 0.250), ("reapply", "p95", 0.060), ("fast reset", "p95", 0.100)],
}


def bench(
    options: Options,
    *,
    runs: int = 10,
    json_path: Path | None = None,
    scale: str = "",
):
    if runs < 1:
        raise LeadDbError("--runs must be at least 1")
    try:
        counts = [int(c) for c in scale.split(",") if c.strip()] if scale else []
    except ValueError:
        raise LeadDbError(
            f"--scale takes comma-separated numbers of files, e.g. 10,100,1000; got {scale!r}"
        ) from None
    targets = Spec.load(options.project_dir / SPEC_FILENAME).targets
    backend, files = _prepare(options)
    say(f"bench: {runs} fresh resets of {backend.describe()}")
    if runs < harness.MIN_RUNS_FOR_P99:
        say(
            f"note: with {runs} runs p99 is close to the maximum; "
            f"it needs >= {harness.MIN_RUNS_FOR_P99} runs to mean much"
        )
    with Progress(
        TextColumn("bench"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("runs", total=runs)
        result = harness.run(backend, files, runs, targets, on_run=lambda i: progress.advance(task))
    if counts:
        say(f"scale: generated schemas of {', '.join(map(str, counts))} files (runner and psql -f per file)")
        result.scale = harness.scale(backend, counts)
    print_bench(result)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = options.project_dir / "benchmarks" / "results" / f"{stamp}-{backend.name}"
    harness.save(result, stem.with_suffix(".json"))
    harness.plot(result, stem.with_suffix(".png"))
    if result.scale:
        harness.plot_scale(result.scale, stem.with_name(stem.name + "-scale.png"))
    say(f"results: {stem.with_suffix('.json')} and .png")
    if json_path:
        harness.save(result, json_path)
    if not result.passed:
        missed = ", ".join(p for p, ok in result.verdict.items() if not ok)
        raise BenchmarkTargetMissed(
            f"{missed} over target on the {backend.name} backend",
            hint="see the table above; profile the slowest phase",
        )
    return result


def print_targets(result) -> None:
    total = result.summaries[0]
    table(
        f"spec targets, {result.backend} (fresh volume + all migrations, {total.runs} runs)",
        ["percentile", "target", "measured", "verdict"],
        [
            [p, seconds(limit), seconds(getattr(total, p)), "pass" if result.verdict[p] else "FAIL"]
            for p, limit in sorted(result.targets.items())
        ],
        right={1, 2},
    )


def print_bench(result) -> None:
    rows = [
        [
            s.metric,
            s.runs,
            seconds(s.minimum),
            seconds(s.p50),
            seconds(s.p95),
            seconds(s.p99),
            seconds(s.maximum),
            f"{seconds(s.ci95['p95'][0])}–{seconds(s.ci95['p95'][1])}",
        ]
        for s in result.summaries
    ]
    table(
        f"bench ({result.backend}); percentiles: {harness.PERCENTILE_METHOD}",
        ["metric", "runs", "min", "p50", "p95", "p99", "max", "p95 95% CI (bootstrap)"],
        rows,
        right={1, 2, 3, 4, 5, 6},
    )
    for name, ratio in result.ratios.items():
        say(f"ratio {name}: {ratio:.1f}x")
    print_targets(result)
    goal_rows = []
    for metric, p, limit in GOALS.get(result.backend, []) + GOALS["any"]:
        summary = result.summary(metric)
        if summary:
            value = getattr(summary, p)
            goal_rows.append(
                [
                    f"{metric} {p}",
                    seconds(limit),
                    seconds(value),
                    "met" if value <= limit else f"missed by {seconds(value - limit)}",
                ]
            )
    table(
        "team goals on this machine (reported, not exit-coded)",
        ["goal", "limit", "measured", "status"],
        goal_rows,
        right={1, 2},
    )
    if result.scale:
        table(
            "scale: generated migrations (a table and an index each)",
            ["files", "runner", "ms/file", "psql -f per file", "ms/file", "psql / runner"],
            [
                [
                    r["files"],
                    seconds(r["runner_s"]),
                    f"{r['runner_ms_per_file']:.1f}",
                    seconds(r["psql_s"]) if "psql_s" in r else "-",
                    f"{r['psql_ms_per_file']:.1f}" if "psql_s" in r else "-",
                    f"{r['ratio']:.1f}x" if "ratio" in r else "-",
                ]
                for r in result.scale
            ],
            right={0, 1, 2, 3, 4, 5},
        )


# -- the whole pipeline ----------------------------------------------------------------


def verify(options: Options, *, bench_runs: int = 5, report_dir: Path | None = None) -> list:
    """reset+apply → reapply → introspect → drift → bench, each timed; stops at the first failure.

    Writes ``verify.json`` and ``verify.junit.xml`` whatever the outcome.
    """
    backend = _select(options)
    options = Options(backend.name, options.dsn, options.project_dir)  # resolve auto once
    steps = [
        ("apply", lambda: reset(options)),
        ("reapply", lambda: reapply(options)),
        ("introspect", lambda: introspect(options)),
        ("drift", lambda: drift(options)),
        ("bench", lambda: bench(options, runs=bench_runs)),
    ]
    outcome: dict[str, object] = {}
    results: list[reports.StepResult] = []
    failure: LeadDbError | None = None
    for name, step in steps:
        say(f"\n== {name}")
        started = time.perf_counter()
        try:
            outcome[name] = step()
        except LeadDbError as exc:
            failure = exc
            results.append(
                reports.StepResult(name, time.perf_counter() - started, False, exc.exit_code, str(exc))
            )
            say(f"== {name}: FAILED in {seconds(results[-1].seconds)}")
            break
        results.append(reports.StepResult(name, time.perf_counter() - started, True))
        say(f"== {name}: ok in {seconds(results[-1].seconds)}")
    table(
        f"verify ({backend.name})",
        ["step", "result", "time"],
        [[r.name, "ok" if r.ok else f"FAILED (exit {r.exit_code})", seconds(r.seconds)] for r in results],
        right={2},
    )
    json_path, junit_path = reports.write(
        results, report_dir or options.project_dir / "reports", backend=backend.name
    )
    say(f"reports: {json_path} {junit_path}")
    if "bench" in outcome:
        print_targets(outcome["bench"])
    if failure:
        raise failure
    return results


def lint(options: Options) -> None:
    """Refuse destructive statements in the migrations unless the spec allows them."""
    files = migrations.load(options.project_dir)
    findings = destructive.check(files, Spec.load(options.project_dir / SPEC_FILENAME))
    if findings:
        listing = "\n".join(f"  - {f.describe()}" for f in findings)
        raise MigrationError(
            f"{len(findings)} destructive statement(s) in the migrations:\n{listing}",
            hint="migrations only add; if the spec really means it, say so there with "
            "'Destructive change allowed: `object`'",
        )
    say(f"lint: {len(files)} migration files, no destructive statement")
