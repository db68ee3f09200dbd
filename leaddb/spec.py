"""Read `Technical-Architecture-Specification.md` with a Markdown parser.

The spec is the source of truth: it declares the migrations directory, prints the
SQL of every migration (a fenced ``sql`` block whose first line is
``-- migration: <file>``), the queries the indexes serve (``-- query: <name>``),
the optional objects that are skipped on purpose (``-- optional: <name>``) and the
performance targets (a ``percentile | target (seconds)`` table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from markdown_it import MarkdownIt

from leaddb.errors import SpecError

SPEC_FILENAME = "Technical-Architecture-Specification.md"
MIGRATIONS_HEADING = "Migrations: directory and tooling"
DECLARATION_LABEL = "Migrations directory:"

_BLOCK_MARKER = re.compile(r"^--\s*(migration|query|optional):\s*(\S.*?)\s*$")
_PERCENTILE = re.compile(r"^p(\d{1,2})$")


@dataclass(frozen=True)
class Section:
    heading: str
    level: int
    line: int  # 1-based line of the heading


@dataclass(frozen=True)
class SqlBlock:
    """One fenced ``sql`` block; ``kind`` is migration, query, optional or None."""

    kind: str | None
    name: str | None  # the target file (posix, repo-relative) or the query/object name
    sql: str
    line: int  # 1-based line of the first SQL line (the one after the fence)
    section: Section | None

    @property
    def where(self) -> str:
        heading = f' (section "{self.section.heading}")' if self.section else ""
        return f"{SPEC_FILENAME}:{self.line}{heading}"


@dataclass(frozen=True)
class Declaration:
    path: PurePosixPath
    line: int
    section: Section | None


class Spec:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._tokens = MarkdownIt("commonmark").enable("table").parse(text)

    @classmethod
    def load(cls, path: Path) -> Spec:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(
                f"{path}: the spec is missing",
                hint=f"restore {SPEC_FILENAME} at the project root (git checkout -- {SPEC_FILENAME})",
            ) from None
        return cls(path, text)

    @cached_property
    def sections(self) -> list[Section]:
        found = []
        for i, tok in enumerate(self._tokens):
            if tok.type == "heading_open":
                found.append(Section(self._tokens[i + 1].content.strip(), int(tok.tag[1]), tok.map[0] + 1))
        return found

    def section_at(self, line: int) -> Section | None:
        current = None
        for section in self.sections:
            if section.line > line:
                break
            current = section
        return current

    @cached_property
    def blocks(self) -> list[SqlBlock]:
        lines = self.text.splitlines()
        blocks = []
        for tok in self._tokens:
            if tok.type != "fence" or tok.info.split()[:1] != ["sql"]:
                continue
            start, end = tok.map
            closing = lines[end - 1].strip() if end - 1 < len(lines) else ""
            if end - start < 2 or not closing.startswith(tok.markup):
                section = self.section_at(start + 1)
                heading = f' (section "{section.heading}")' if section else ""
                raise SpecError(
                    f"{SPEC_FILENAME}:{start + 1}{heading}: the ```sql fence opened here is never closed",
                    hint="close the code block with ``` on a line of its own",
                )
            first = tok.content.split("\n", 1)[0]
            marker = _BLOCK_MARKER.match(first)
            kind, name = (marker.group(1), marker.group(2)) if marker else (None, None)
            blocks.append(SqlBlock(kind, name, tok.content, start + 2, self.section_at(start + 1)))
        return blocks

    def blocks_of(self, kind: str) -> list[SqlBlock]:
        return [b for b in self.blocks if b.kind == kind]

    @cached_property
    def declarations(self) -> list[Declaration]:
        """Every ``Migrations directory: `path``` line, wherever it stands."""
        found = []
        for tok in self._tokens:
            if tok.type != "inline" or not tok.content.strip().startswith(DECLARATION_LABEL):
                continue
            codes = [c.content for c in tok.children or [] if c.type == "code_inline"]
            if codes:
                line = tok.map[0] + 1
                found.append(Declaration(PurePosixPath(codes[0]), line, self.section_at(line)))
        return found

    @cached_property
    def targets(self) -> dict[str, float]:
        """The performance targets, ``{"p50": 3.0, ...}``, from the targets table."""
        targets: dict[str, float] = {}
        for row in self._table_rows():
            if len(row) < 2 or not _PERCENTILE.match(row[0]):
                continue
            try:
                targets[row[0]] = float(row[1].split()[0])
            except (ValueError, IndexError):
                raise SpecError(
                    f"{SPEC_FILENAME}: target {row[0]} is {row[1]!r}, not a number of seconds",
                    hint="write the target as a plain number of seconds, e.g. | p50 | 3 |",
                ) from None
        return targets

    def _table_rows(self):
        row: list[str] | None = None
        for tok in self._tokens:
            if tok.type == "tr_open":
                row = []
            elif tok.type == "tr_close" and row is not None:
                yield row
                row = None
            elif tok.type == "inline" and row is not None:
                row.append(tok.content.strip())
