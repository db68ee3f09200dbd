"""Output for people: rich tables when there is a terminal, plain text otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
if not console.is_terminal:
    console.width = max(console.width, 120)  # logs and CI: do not fold tables at 80 columns


def say(message: str) -> None:
    console.print(message, markup=False)


def table(title: str, columns: list[str], rows: list[list], *, right: set[int] | None = None) -> None:
    right = right or set()
    view = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        view.add_column(column, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    console.print(view)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
