"""Output for people: one line (``say``), a table (``table``: rich's when there is a terminal,
plain text otherwise), a duration (``seconds``). It knows no task and no data type of the
library: the views the tasks print are ``leaddb.views``, over these."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def table(title: str, columns: list[str], rows: list[list], *, right: set[int] | None = None) -> None:
    from rich.table import Table

    right = right or set()
    if len(rows) > PLAIN_ROWS:
        _print_plain(title, columns, [["" if v is None else str(v) for v in row] for row in rows], right)
        return
    view = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        view.add_column(column, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    _console().print(view)


def _print_plain(title: str, columns: list[str], rows: list[list[str]], right: set[int]) -> None:
    """``rows`` as rich draws a table (its default box, ASCII where the output needs it)."""
    from rich import box
    from rich.cells import cell_len

    out = _console()
    lines = box.HEAVY_HEAD.substitute(out.options, safe=True)
    widths = [max([cell_len(c), *(cell_len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def row_line(cells: list[str], edge: str, middle: str, end: str) -> str:
        padded = (
            (" " * (w - cell_len(c)) + c) if i in right else (c + " " * (w - cell_len(c)))
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return edge + " " + f" {middle} ".join(padded) + " " + end

    def rule(edge: str, line: str, cross: str, end: str) -> str:
        return edge + cross.join(line * (w + 2) for w in widths) + end

    text = [
        title,
        rule(lines.top_left, lines.top, lines.top_divider, lines.top_right),
        row_line(columns, lines.head_left, lines.head_vertical, lines.head_right),
        rule(lines.head_row_left, lines.head_row_horizontal, lines.head_row_cross, lines.head_row_right),
        *(row_line(row, lines.mid_left, lines.mid_vertical, lines.mid_right) for row in rows),
        rule(lines.bottom_left, lines.bottom, lines.bottom_divider, lines.bottom_right),
    ]
    out.print("\n".join(text), markup=False, emoji=False, highlight=False, soft_wrap=True)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
