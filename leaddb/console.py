"""Output for people: tables in rich's look, drawn here (rich is imported only for a table that
must fold to a narrower terminal, a Windows console, or a bench's progress); and every
view the tasks print (boot phases, apply results, the ``\\dt``/``\\d+`` views, coverage,
the migration status, bench tables, the verify summary)."""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from leaddb import platforms

if TYPE_CHECKING:
    from rich.console import Console

    from leaddb.backends.base import BootReport
    from leaddb.bench import BenchResult
    from leaddb.catalog import Snapshot
    from leaddb.report import StepResult
    from leaddb.runner import ApplyResult
    from leaddb.status import Report as StatusReport


_made: Console | None = None


def _console() -> Console:
    """The one rich console every table prints through, made for the first table: importing
    rich and making the console costs about 90 ms, which a task that prints no table saves."""
    global _made
    if _made is None:
        from rich.console import Console

        _made = Console(highlight=False, soft_wrap=True)
        if not _made.is_terminal:
            _made.width = max(_made.width, 120)  # logs and CI: do not fold tables at 80 columns
    return _made


def __getattr__(name: str):
    """``console.console``: the rich console (made on first use)."""
    if name == "console":
        return _console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def say(message: str) -> None:
    """One line, as it is. Before the first table it needs no rich; once the console is made,
    through it, so the lines stay in order with the tables and a capture sees them."""
    if _made is None:
        print(message)
    else:
        _made.print(message, markup=False, emoji=False)


# Above this many rows a table is drawn line by line here, in rich's look, in one write: rich
# lays a table out cell by cell (about 4 ms a row), which made `invoke db.apply` on 1,000 files
# spend longer printing its table than applying them. Such a table does not fold to the width.
PLAIN_ROWS = 50

# rich's default table box (HEAVY_HEAD) and its ASCII form, for output that cannot encode it:
# top, head row, head rule, body row, bottom; each as left, line, divider, right
_HEAVY_HEAD = ("┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "└─┴┘")
_ASCII = ("+--+", "| ||", "|-+|", "| ||", "+--+")


def table(title: str, columns: list[str], rows: list[list], *, right: set[int] | None = None) -> None:
    """A table, as rich draws it. Drawn here, without importing rich (its import, console and
    layout cost more than the rest of `invoke db.apply` on 7 files), unless it must fold to a
    terminal narrower than itself, or the terminal is a Windows console (whose box characters
    rich chooses); with a rich console already made (a capture), through it."""
    right = right or set()
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if _made is None and not _needs_rich(columns, cells):
        _write_plain(title, columns, cells, right)
        return
    if len(rows) > PLAIN_ROWS:
        _print_plain(title, columns, cells, right)
        return
    from rich.table import Table

    view = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        view.add_column(column, justify="right" if i in right else "left", overflow="fold")
    for row in cells:
        view.add_row(*row)
    _console().print(view)


def _needs_rich(columns: list[str], cells: list[list[str]]) -> bool:
    """Whether rich must draw it: on a terminal narrower than the table (rich folds it), and on
    a Windows console (rich asks it which box characters it can show)."""
    if not sys.stdout.isatty():
        return False
    if platforms.terminal_tables_need_rich():
        return True
    widths = _widths(columns, cells, _width)
    return sum(widths) + 3 * len(widths) + 1 > shutil.get_terminal_size().columns


def _width(text: str) -> int:
    """The columns ``text`` takes in a terminal (East Asian wide characters two, combining
    marks none), as rich's ``cell_len`` counts them."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def _widths(columns: list[str], rows: list[list[str]], width) -> list[int]:
    return [max([width(c), *(width(row[i]) for row in rows)]) for i, c in enumerate(columns)]


def _drawn(title: str, columns: list[str], rows: list[list[str]], right: set[int], box, width) -> str:
    """The table's text: ``box`` is (top, head row, head rule, body row, bottom), each as four
    characters (left, line, divider, right)."""
    widths = _widths(columns, rows, width)

    def row_line(cells: list[str], edges: str) -> str:
        padded = (
            (" " * (w - width(c)) + c) if i in right else (c + " " * (w - width(c)))
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return edges[0] + " " + f" {edges[2]} ".join(padded) + " " + edges[3]

    def rule(edges: str) -> str:
        return edges[0] + edges[2].join(edges[1] * (w + 2) for w in widths) + edges[3]

    return "\n".join(
        [
            title,
            rule(box[0]),
            row_line(columns, box[1]),
            rule(box[2]),
            *(row_line(row, box[3]) for row in rows),
            rule(box[4]),
        ]
    )


def _write_plain(title: str, columns: list[str], rows: list[list[str]], right: set[int]) -> None:
    """Drawn here and written in one go: rich's box where the output's encoding has its
    characters, else its ASCII box (as rich substitutes it); on a terminal that takes styles,
    rich's italic title and bold head."""
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower().replace("-", "")
    box = _HEAVY_HEAD if encoding.startswith("utf") else _ASCII
    if not _styled():
        print(_drawn(title, columns, rows, right, box, _width))
        return
    head = [f"{_BOLD}{c}{_PLAIN}" for c in columns]
    print(_drawn(f"{_ITALIC}{title}{_PLAIN}", head, rows, right, box, _styled_width))


_BOLD, _ITALIC, _PLAIN = "\x1b[1m", "\x1b[3m", "\x1b[0m"


def _styled_width(text: str) -> int:
    return _width(text.replace(_BOLD, "").replace(_ITALIC, "").replace(_PLAIN, ""))


def _styled() -> bool:
    """A terminal that takes styles, as rich decides it (NO_COLOR, TERM=dumb)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _print_plain(title: str, columns: list[str], rows: list[list[str]], right: set[int]) -> None:
    """``rows`` as rich draws a table (its default box, ASCII where the output needs it),
    through the rich console."""
    from rich import box
    from rich.cells import cell_len

    out = _console()
    lines = box.HEAVY_HEAD.substitute(out.options, safe=True)
    chosen = (
        lines.top_left + lines.top + lines.top_divider + lines.top_right,
        lines.head_left + " " + lines.head_vertical + lines.head_right,
        lines.head_row_left + lines.head_row_horizontal + lines.head_row_cross + lines.head_row_right,
        lines.mid_left + " " + lines.mid_vertical + lines.mid_right,
        lines.bottom_left + lines.bottom + lines.bottom_divider + lines.bottom_right,
    )
    text = _drawn(title, columns, rows, right, chosen, cell_len)
    out.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# -- reset and apply ---------------------------------------------------------------------


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


# -- introspection -----------------------------------------------------------------------


def print_relations(live: Snapshot, owner_table) -> None:
    """A ``\\dt``-style list, with each table's parts counted."""
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


def describe_table(live: Snapshot, name: str, owner_table) -> None:
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


def print_coverage(cover: dict[str, tuple[int, int]]) -> None:
    table(
        "coverage of the spec",
        ["kind", "present", "specified", "coverage"],
        [[k, p, s, f"{100 * p / s:.0f}%" if s else "n/a"] for k, (p, s) in cover.items()],
        right={1, 2, 3},
    )


def print_status(report: StatusReport) -> None:
    """db.status: one row per migration file, then the objects no file creates."""
    rows = [
        [
            f.file,
            f.state,
            f"{f.found}/{f.expected}",
            "\n".join([f"missing: {m}" for m in f.missing] + [f"differs: {d}" for d in f.differs] + f.notes),
        ]
        for f in report.files
    ]
    table(
        f"migration status (definitions held against {report.reference})",
        ["file", "status", "objects", "detail"],
        rows,
        right={2},
    )
    if report.extra:
        table(
            "objects no migration file creates (extra)",
            ["kind", "name", "definition"],
            [[e.kind, e.name, e.definition or ""] for e in report.extra],
        )
    for note in report.notes:
        say(f"note: {note}")
    say(f"status: {report.summary()}")


# -- bench -------------------------------------------------------------------------------


VERDICT_WORDS = {"pass": "pass", "missed": "FAIL", "missed at this machine's floor": "MISSED (this machine)"}


def print_targets(result: BenchResult) -> None:
    """The spec's targets, each with its verdict; for every miss, why, in one line (the image's
    bare boot, what the migrations add, what the tool adds); a miss at this machine's floor
    also as a banner that says what the exit status means."""
    total = result.summaries[0]
    table(
        f"spec targets, {result.backend} (fresh volume + all migrations, {total.runs} runs)",
        ["percentile", "target", "measured", "verdict"],
        [
            [v.percentile, seconds(v.limit), seconds(v.measured), VERDICT_WORDS.get(v.outcome, v.outcome)]
            for v in result.verdict
        ],
        right={1, 2},
    )
    for verdict in result.missed():
        say(verdict.why)
    if result.outcome == "missed at this machine's floor":
        say(
            "TIMING TARGET MISSED ON THIS MACHINE: a bare `docker run` of the same container misses "
            "it too, so the exit status stays 0 (the schema and the tool are fine); the miss is "
            'recorded as "missed at this machine\'s floor" (bench JSON; reports/verify.json)'
        )


def print_bench(
    result: BenchResult,
    goals: list[tuple[str, str, float]],
    method: str,
    overhead_goal: float | None = None,
) -> None:
    storage = result.machine.get("storage")
    if storage:  # a boot's time means little without what the server's data sits on
        say(f"bench ({result.backend}) storage: {storage}")
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
        f"bench ({result.backend}); percentiles: {method}",
        ["metric", "runs", "min", "p50", "p95", "p99", "max", "p95 95% CI (bootstrap)"],
        rows,
        right={1, 2, 3, 4, 5, 6},
    )
    for name, ratio in result.ratios.items():
        say(f"ratio {name}: {ratio:.1f}x")
    for name, share in result.overhead.items():
        say(f"{name}: {100 * share:.1f}%")
    print_targets(result)
    goal_rows = []
    for metric, p, limit in goals:
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
    if overhead_goal is not None and result.overhead:
        # the first share is the like-for-like one (the floor removes its previous boot too)
        name, share = next(iter(result.overhead.items()))
        goal_rows.append(
            [
                "tool's own overhead share of a reset (medians)",
                f"{100 * overhead_goal:.0f}%",
                f"{100 * share:.1f}%",
                "met" if share <= overhead_goal else f"missed by {100 * (share - overhead_goal):.1f} points",
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


# -- verify ------------------------------------------------------------------------------


def print_verify(backend: str, results: list[StepResult]) -> None:
    table(
        f"verify ({backend})",
        ["step", "result", "time"],
        [
            [
                r.name,
                (f"ok, {r.outcome}" if r.outcome else "ok") if r.ok else f"FAILED (exit {r.exit_code})",
                seconds(r.seconds),
            ]
            for r in results
        ],
        right={2},
    )
