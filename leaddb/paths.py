"""The one way messages print a path."""

from __future__ import annotations

import os
from pathlib import Path


def shown(path: Path, project_dir: Path | None = None) -> str:
    """Relative to the project, with forward slashes, when the path is inside it (what the
    user typed or sees in the repository); otherwise absolute, as the platform spells it."""
    if project_dir is not None:
        # the common case as a string prefix (pathlib's relative_to parses both paths: some
        # 0.1 ms a call, paid several times per file on every command); the same answer
        text, base = str(path), str(project_dir)
        if text.startswith(base) and text[len(base) : len(base) + 1] == os.sep and base:
            return text[len(base) + 1 :].replace(os.sep, "/") or "."
        for candidate, root in ((path, project_dir), (path.absolute(), project_dir.absolute())):
            try:
                return candidate.relative_to(root).as_posix() or "."
            except ValueError:
                continue
    return str(path)
