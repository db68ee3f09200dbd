"""The bench's pictures (matplotlib, imported when a picture is drawn): a box per metric, and
the growth curve of the scale runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leaddb.bench import EXTRA_METRICS, BenchResult
from leaddb.stats import floor_metrics


def plot(result: BenchResult, path: Path) -> None:
    """One box per metric (log scale: phases span milliseconds to seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {"total": [r["total"] for r in result.runs]}
    for name in result.runs[0]["phases"]:
        metrics[name] = [r["phases"].get(name, 0.0) or 1e-4 for r in result.runs]
    for name in EXTRA_METRICS:
        if name in result.runs[0]:
            metrics[name] = [r[name] for r in result.runs]
    for name in floor_metrics(result.runs[0]):
        metrics[name] = [floor_metrics(r)[name] for r in result.runs]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.boxplot([[v * 1000 for v in vs] for vs in metrics.values()], showfliers=True)
    ax.set_xticks(range(1, len(metrics) + 1), list(metrics), rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log)")
    ax.set_title(
        f"leaddb bench: {result.backend}, {len(result.runs)} runs, {result.machine.get('cores')} cores"
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scale(rows: Sequence[dict], path: Path) -> None:
    """The growth curve: seconds against files, runner and psql -f per file (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [r["files"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(files, [r["runner_s"] for r in rows], marker="o", label="leaddb runner (one connection)")
    if all("psql_s" in r for r in rows):
        ax.plot(files, [r["psql_s"] for r in rows], marker="s", label="psql -f per file")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("migration files (a table and an index each)")
    ax.set_ylabel("seconds (log)")
    ax.set_title("apply time as the schema grows")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
