"""A long table is drawn by hand in rich's look (rich lays out every cell: ~4 ms a row)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from leaddb import console


@pytest.fixture
def captured(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(console, "_made", Console(file=out, width=200, highlight=False, soft_wrap=True))
    return out


def rows(count: int) -> list[list]:
    return [[f"api/db/migrations/{n:04d}_generated_{n}.sql", n % 7, None, f"{n} ms"] for n in range(count)]


def drawn_by_rich(count: int) -> str:
    out = io.StringIO()
    made = console._made
    console._made = Console(file=out, width=200, highlight=False, soft_wrap=True)
    try:
        console.PLAIN_ROWS, limit = count + 1, console.PLAIN_ROWS
        console.table("apply", ["file", "statements", "notices", "time"], rows(count), right={1, 3})
    finally:
        console._made, console.PLAIN_ROWS = made, limit
    return out.getvalue()


@pytest.mark.parametrize("count", [console.PLAIN_ROWS + 1, 300])
def test_a_long_table_looks_as_rich_draws_it(captured, count):
    console.table("apply", ["file", "statements", "notices", "time"], rows(count), right={1, 3})
    assert captured.getvalue() == drawn_by_rich(count)


def test_a_long_table_is_not_laid_out_by_rich(captured, monkeypatch):
    import rich.table

    monkeypatch.setattr(rich.table, "Table", None)  # calling it would fail
    console.table("t", ["a"], [[n] for n in range(console.PLAIN_ROWS + 1)])
    assert captured.getvalue().splitlines()[4] == "│ 0  │"


def drawn_by_rich_table(title: str, columns: list[str], cells: list[list], right: set[int]) -> str:
    """What rich's own Table layout prints for it, on a 200-column non-terminal console."""
    from rich.table import Table

    out = io.StringIO()
    view = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        view.add_column(column, justify="right" if i in right else "left", overflow="fold")
    for row in cells:
        view.add_row(*("" if v is None else str(v) for v in row))
    Console(file=out, width=200, highlight=False, soft_wrap=True).print(view)
    return out.getvalue()


SHORT = [
    ["api/db/migrations/0001_extensions.sql", 3, None, "12 ms"],
    ["api/db/migrations/0002_ünïcode_名前.sql", 41, 2, "1.20 s"],  # wide and combining-free
    ["", 0, 0, "0 ms"],
]


@pytest.mark.parametrize("count", [1, 3])
def test_a_short_table_is_drawn_without_rich_as_rich_draws_it(capsys, monkeypatch, count):
    monkeypatch.setattr(console, "_made", None)
    console.table("apply", ["file", "statements", "notices", "time"], SHORT[:count], right={1, 2, 3})
    assert capsys.readouterr().out == drawn_by_rich_table(
        "apply", ["file", "statements", "notices", "time"], SHORT[:count], {1, 2, 3}
    )


@pytest.mark.parametrize("count", [2, 60])  # short, and past PLAIN_ROWS
def test_a_cell_of_several_lines_is_drawn_as_rich_draws_it(capsys, monkeypatch, count):
    """db.status's detail column and an extra object's definition hold several lines."""
    monkeypatch.setattr(console, "_made", None)
    rows = [
        ["missing", "table t", "column a\ncolumn b"],
        *[["ok", f"table u{i}", ""] for i in range(count - 1)],
    ]
    console.table("status", ["state", "object", "detail"], rows)
    assert capsys.readouterr().out == drawn_by_rich_table(
        "status", ["state", "object", "detail"], rows, set()
    )


def test_an_output_without_box_characters_gets_rich_s_ascii_box(monkeypatch):
    from rich.table import Table

    def cp1252() -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(), encoding="cp1252", newline="\n")

    ours, theirs = cp1252(), cp1252()
    monkeypatch.setattr(console, "_made", None)
    monkeypatch.setattr("sys.stdout", ours)
    console.table("t", ["a", "b"], [["x", "1"]], right={1})
    view = Table(title="t", title_justify="left")
    view.add_column("a", overflow="fold")
    view.add_column("b", justify="right", overflow="fold")
    view.add_row("x", "1")
    Console(file=theirs, width=200, highlight=False, soft_wrap=True, legacy_windows=False).print(view)
    ours.flush()
    theirs.flush()
    assert ours.buffer.getvalue() == theirs.buffer.getvalue()
    assert b"+" in ours.buffer.getvalue()


def test_a_task_s_table_imports_no_rich():
    code = (
        "import sys\n"
        "from leaddb import console\n"
        "console.table('apply', ['file', 'time'], [['a.sql', '1 ms']] * 7, right={1})\n"
        "console.say('done')\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


class _Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_head_is_bold_and_a_table_wider_than_it_is_left_to_rich(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(console.platforms, "terminal_tables_need_rich", lambda: False)
    monkeypatch.setattr(console, "_made", None)  # no rich console made by an earlier test
    monkeypatch.setenv("COLUMNS", "200")
    wide = _Terminal()
    monkeypatch.setattr("sys.stdout", wide)
    console.table("apply", ["file", "time"], [["a.sql", "1 ms"]], right={1})
    styled = wide.getvalue()
    assert "\x1b[1mfile\x1b[0m" in styled and "\x1b[3mapply\x1b[0m" in styled
    plain = styled.replace("\x1b[1m", "").replace("\x1b[3m", "").replace("\x1b[0m", "")
    assert plain == drawn_by_rich_table("apply", ["file", "time"], [["a.sql", "1 ms"]], {1})

    left_to_rich = []
    monkeypatch.setattr(console, "_console", lambda: left_to_rich.append(True) or Console(file=io.StringIO()))
    monkeypatch.setenv("COLUMNS", "12")
    console.table("apply", ["file", "time"], [["a.sql", "1 ms"]], right={1})
    assert left_to_rich
