"""The diagram embedded in ``README.md``: the Mermaid block between two marker lines, written
by db.erd and checked by db.drift; a README without the markers is left alone."""

from __future__ import annotations

from pathlib import Path

from leaddb.erd import Model, stale_lines
from leaddb.erd.mermaid import mermaid
from leaddb.errors import SchemaDrift, file_errors

README_PATH = Path("README.md")
# the README embeds the diagram between these two lines (written by db.erd, checked by db.drift)
README_BEGIN = "<!-- erd:begin (written by `invoke db.erd`; do not edit) -->"
README_END = "<!-- erd:end -->"


def embedded(model: Model) -> str:
    """The diagram as the README embeds it: the Mermaid block alone."""
    return "```mermaid\n" + mermaid(model) + "```\n"


def embed(readme: str, model: Model) -> str | None:
    """``readme`` with the text between its erd markers replaced by the diagram; None when it
    has no such pair (a README without the block is left alone)."""
    begin = readme.find(README_BEGIN + "\n")
    end = readme.find("\n" + README_END, begin)
    if begin < 0 or end < 0:
        return None
    start = begin + len(README_BEGIN) + 1
    return readme[:start] + embedded(model) + readme[end + 1 :]


def check(project_dir: Path, model: Model) -> None:
    """The diagram embedded in the project's README is ``model``'s: ``SchemaDrift`` where it is
    stale (a README without the markers, or none, passes: nothing is embedded)."""
    readme = project_dir / README_PATH
    with file_errors("read", README_PATH.as_posix()):
        text = readme.read_bytes().decode("utf-8", errors="replace") if readme.is_file() else ""
    expected = embed(text, model)
    if expected is not None and expected != text:
        where = stale_lines(text, expected)
        raise SchemaDrift(
            f"the diagram in {README_PATH.as_posix()} is stale: {where}",
            hint="run `invoke db.erd` and commit README.md and docs/schema.md",
        )


def update(readme: Path, model: Model, shown: str) -> str | None:
    """Write ``model`` into ``readme``'s diagram block (``shown``: how messages name it); what
    happened, in one line to say, or None when there was nothing to change."""
    with file_errors("read", shown):
        data = readme.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"note: {shown} is not UTF-8: its diagram block was left alone"
    updated = embed(text, model)
    if updated is None or updated == text:
        return None
    with file_errors("write the diagram into", shown):
        readme.write_text(updated, encoding="utf-8", newline="\n")
    return f"updated the diagram in {shown}"
