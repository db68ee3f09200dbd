"""The one way messages print a path."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path, project_dir: Path | None = None) -> str:
    """Relative to the project, with forward slashes, when the path is inside it (what the
    user typed or sees in the repository); otherwise absolute, as the platform spells it."""
    if project_dir is not None:
        for candidate, base in ((path, project_dir), (path.absolute(), project_dir.absolute())):
            try:
                return candidate.relative_to(base).as_posix() or "."
            except ValueError:
                continue
    return str(path)
