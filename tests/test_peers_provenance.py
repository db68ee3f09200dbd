"""The harness names its run wherever its figures go: the JSON, the rendered tables, and the
README's benchmark tables, which must all be one run's."""

from __future__ import annotations

from pathlib import Path

import peers_harness
import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


peers = peers_harness.load()


def report(**load) -> object:
    found = peers.Report(
        date="2026-12-07 16:40 UTC", command="x", runs=5, groups=["floor"], machine={"commit": "abc1234"}
    )
    found.load = load or {"start": [0.5, 0.4, 0.3], "rounds": [[1.9, 1, 1], [0.7, 1, 1]], "end": [1.2, 1, 1]}
    found.run = peers.run_name(found)
    return found


def test_a_run_is_named_by_date_commit_rounds_and_load():
    assert report().run == (
        "peers run 2026-12-07 16:40 UTC, commit abc1234, 5 interleaved runs, 1-minute load 0.50–1.90"
    )
    assert report(start=None, end=None).run.endswith("1-minute load unknown")


def test_the_rendered_tables_start_with_the_runs_name(capsys):
    found = report()
    lines = peers.print_report(found, {})
    assert lines[0] == f"Run: `{found.run}`"
    assert peers.named_runs("\n".join([peers.BEGIN, *lines, peers.END])) == [found.run]


def test_writing_a_run_replaces_every_named_block_and_nothing_else():
    block = f"{peers.BEGIN}\nRun: `old`\n| work | contender |\n{peers.END}"
    text = f"intro\n{block}\nafter\n{peers.BEGIN}\nx\n{peers.END}\n"
    new = peers.replace_runs(text, ["Run: `new`", "", "| work | contender | …"])
    assert peers.named_runs(new) == ["new", "new"]
    assert new.startswith("intro\n") and "\nafter\n" in new and "old" not in new
    with pytest.raises(peers.PeersError):
        peers.replace_runs(f"{peers.BEGIN}\nno end", ["Run: `new`"])


def test_a_table_outside_the_markers_is_found():
    inside = f"{peers.BEGIN}\nRun: `a`\n| work | contender | x |\n{peers.END}\n"
    text = inside + "| goal | limit | measured | status |\n"
    assert peers.figures_outside_runs(text) == ["| goal | limit | measured | status |"]


def test_the_readmes_benchmark_tables_are_one_named_run():
    names, outside = [], []
    for name in peers.READMES:
        text = (PROJECT_DIR / name).read_text(encoding="utf-8")
        found = peers.named_runs(text)
        assert found, f"{name}: no `{peers.BEGIN}` block"
        names += found
        outside += [f"{name}: {line}" for line in peers.figures_outside_runs(text)]
    assert all(names) and len(set(names)) == 1, f"the tables name more than one run (or none): {names}"
    assert outside == [], "peers tables outside the run's markers (not from the named run)"


def test_a_marker_named_in_prose_is_not_a_block():
    text = f"the `{peers.BEGIN}` / `end` markers\n{peers.BEGIN}\nRun: `a`\n{peers.END}\n"
    assert peers.named_runs(text) == ["a"]
    assert peers.replace_runs(text, ["Run: `b`"]).startswith(f"the `{peers.BEGIN}` / `end` markers\n")
