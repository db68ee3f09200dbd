"""paths.shown: the string fast path gives pathlib's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaddb import paths


def slow(path: Path, project_dir: Path) -> str:
    for candidate, root in ((path, project_dir), (path.absolute(), project_dir.absolute())):
        try:
            return candidate.relative_to(root).as_posix() or "."
        except ValueError:
            continue
    return str(path)


@pytest.mark.parametrize(
    ("path", "project"),
    [
        ("/p/api/db/migrations/0001_a.sql", "/p"),
        ("/p", "/p"),
        ("/pp/x.sql", "/p"),  # a prefix of the name is not a parent
        ("/p/x.sql", "/"),
        ("api/db/0001_a.sql", "api"),
        ("api/db/0001_a.sql", "."),
        ("other/x.sql", "/p"),
        ("/p/a b/ü.sql", "/p"),
    ],
)
def test_the_fast_path_gives_pathlibs_answer(path, project):
    assert paths.shown(Path(path), Path(project)) == slow(Path(path), Path(project))
