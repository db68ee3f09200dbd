"""A long table is drawn by hand in rich's look (rich lays out every cell: ~4 ms a row)."""

from __future__ import annotations

import io

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
