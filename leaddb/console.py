"""Output for people: one line (``say``), a table (``table``: in rich's look, drawn here; rich
is imported only for a table that must fold to a narrower terminal, a Windows console, or a
capture through its console), a duration (``seconds``). It knows no task and no data type of
the library: the views the tasks print are ``leaddb.views``, over these."""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from typing import TYPE_CHECKING

from leaddb import platforms

if TYPE_CHECKING:
    from rich.console import Console


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
    lines = any("\n" in c for c in columns) or any("\n" in c for row in cells for c in row)
    if _made is None and not lines and not _needs_rich(columns, cells):
        _write_plain(title, columns, cells, right)
        return
    if len(rows) > PLAIN_ROWS and not lines:  # a cell of several lines: rich lays it out
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
