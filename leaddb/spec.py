"""Read `Technical-Architecture-Specification.md` with a Markdown parser.

What the tasks read of the spec (its sections, SQL blocks, declarations and targets) depends
on its bytes and this code only: it is cached per user (``leaddb.cache``) under a key of both,
so a command on an unchanged spec does not load markdown-it. A spec that fails its check is
never cached: it is read anew every time, and says where it is wrong.

The spec is the source of truth: it declares the migrations directory, prints the
SQL of every migration (a fenced ``sql`` block whose first line is
``-- migration: <file>``), the queries the indexes serve (``-- query: <name>``),
the optional objects that are skipped on purpose (``-- optional: <name>``) and the
performance targets (a ``percentile | target (seconds)`` table).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from leaddb import cache as _cache
from leaddb.errors import SpecError, excerpt

SPEC_FILENAME = "Technical-Architecture-Specification.md"
MIGRATIONS_HEADING = "Migrations: directory and tooling"
DECLARATION_LABEL = "Migrations directory:"

_BLOCK_MARKER = re.compile(r"^--\s*(migration|query|optional):\s*(\S.*?)\s*$")
_PERCENTILE = re.compile(r"^p(\d{1,2})$")
_NEWLINES = re.compile(r"\r\n|\r|\n")


# the most the spec may hold: room for a schema of 9,999 migration files, each printed (1.7 MB
# with one CREATE TABLE each), and a bound on the work of markdown-it, which is linear but slow on
# its worst input (200,000 `[` take 2-4 s here: 4 MiB of them, about a minute, once: the parse is
# cached by the spec's bytes)
MAX_SPEC_BYTES = 4 * 1024 * 1024


def _read_bytes(path: Path, limit: int) -> bytes | None:
    """Up to ``limit`` + 1 bytes of a regular file (a link is followed); None for anything else
    (a FIFO would block the read forever, a device never end it)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


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


# what a cached reading of the spec holds, and which version of that shape
_FACTS = ("sections", "blocks", "declarations", "targets")
CACHE_PREFIX = "spec"
CACHE_FORMAT = 1
CACHE_KEEP = 8


class Spec:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    @cached_property
    def _tokens(self):
        from markdown_it import MarkdownIt  # only a spec read anew loads the parser

        return MarkdownIt("commonmark").enable("table").parse(self.text)

    @classmethod
    def load(cls, path: Path) -> Spec:
        """Read and check the spec: a malformed spec fails every task that reads it, here,
        rather than some tasks later and others never."""
        restore = f"restore {SPEC_FILENAME} at the project root (git checkout -- {SPEC_FILENAME})"
        try:
            data = _read_bytes(path, MAX_SPEC_BYTES)
        except FileNotFoundError:
            raise SpecError(f"{path}: the spec is missing", hint=restore) from None
        except IsADirectoryError:
            raise SpecError(f"{SPEC_FILENAME} is a directory, not the spec", hint=restore) from None
        except OSError as exc:
            raise SpecError(f"{SPEC_FILENAME} cannot be read: {exc.strerror or exc}", hint=restore) from None
        if data is None:
            raise SpecError(f"{SPEC_FILENAME} is not a regular file (a FIFO, socket or device)", hint=restore)
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError(
                f"{SPEC_FILENAME} is larger than {MAX_SPEC_BYTES // 1024} KiB: not the spec", hint=restore
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SpecError(
                f"{SPEC_FILENAME}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                hint="save the spec as UTF-8",
            ) from None
        text = text.removeprefix("\ufeff")
        key = _cache_key(data)
        facts = _cache.lookup(CACHE_PREFIX, key) if key else None
        spec = _from_facts(path, text, facts) if facts is not None else None
        if spec is not None:
            return spec  # the same bytes read by the same code: what checking them found then
        spec = cls(path, text)
        spec.check()
        if key:
            _cache.store(CACHE_PREFIX, key, _facts_of(spec), CACHE_KEEP)
        return spec

    def check(self) -> None:
        """Everything the tasks read from the spec parses: every fence is closed, every
        target is a number. Raises SpecError naming the line otherwise."""
        self.blocks  # noqa: B018 - reading them checks them
        self.targets  # noqa: B018

    @cached_property
    def sections(self) -> list[Section]:
        found = []
        for i, tok in enumerate(self._tokens):
            if tok.type == "heading_open":
                found.append(Section(self._tokens[i + 1].content.strip(), int(tok.tag[1]), tok.map[0] + 1))
        return found

    def section_at(self, line: int) -> Section | None:
        """The section ``line`` is in (a binary search: every block and declaration asks)."""
        at = bisect_right(self._section_lines, line)
        return self.sections[at - 1] if at else None

    @cached_property
    def _section_lines(self) -> list[int]:
        return [section.line for section in self.sections]

    @cached_property
    def blocks(self) -> list[SqlBlock]:
        # the line numbers markdown-it counts: it splits on \n, \r\n and \r only
        lines = _NEWLINES.split(self.text)
        blocks = []
        for tok in self._tokens:
            if tok.type != "fence":
                continue
            start, end = tok.map
            closing = lines[end - 1].lstrip(" \t>") if end - 1 < len(lines) else ""
            if end - start < 2 or not closing.startswith(tok.markup):
                # an unclosed fence swallows the rest of the document, blocks and declarations included
                section = self.section_at(start + 1)
                heading = f' (section "{section.heading}")' if section else ""
                raise SpecError(
                    f"{SPEC_FILENAME}:{start + 1}{heading}: the {tok.markup}{excerpt(tok.info, 20)} fence "
                    "opened here is never closed",
                    hint=f"close the code block with {tok.markup} on a line of its own",
                )
            if tok.info.split()[:1] != ["sql"]:
                continue
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
        for line, row in self._table_rows():
            if len(row) < 2 or not _PERCENTILE.match(row[0]):
                continue
            try:
                value = float(row[1].split()[0])
            except (ValueError, IndexError):
                value = math.nan
            if not (math.isfinite(value) and value > 0):
                shown = excerpt(row[1], 40)
                raise SpecError(
                    f"{SPEC_FILENAME}:{line}: target {row[0]} is {shown!r}, not a number of seconds",
                    hint="write the target as a plain number of seconds, e.g. | p50 | 3 |",
                )
            targets[row[0]] = value
        return targets

    def _table_rows(self):
        """(line, cells) of every table row."""
        row: list[str] | None = None
        for tok in self._tokens:
            if tok.type == "tr_open":
                row, line = [], tok.map[0] + 1
            elif tok.type == "tr_close" and row is not None:
                yield line, row
                row = None
            elif tok.type == "inline" and row is not None:
                row.append(tok.content.strip())


# -- the cached reading --------------------------------------------------------------------------


def _cache_key(data: bytes) -> dict | None:
    code = _cache.code_version()
    if code is None:
        return None
    return {"format": CACHE_FORMAT, "code": code, "spec": hashlib.sha256(data).hexdigest()}


def _facts_of(spec: Spec) -> dict:
    index = {id(section): n for n, section in enumerate(spec.sections)}

    def at(section: Section | None) -> int:
        return -1 if section is None else index[id(section)]

    return {
        "sections": [[s.heading, s.level, s.line] for s in spec.sections],
        "blocks": [[b.kind, b.name, b.sql, b.line, at(b.section)] for b in spec.blocks],
        "declarations": [[d.path.as_posix(), d.line, at(d.section)] for d in spec.declarations],
        "targets": spec.targets,
    }


def _from_facts(path: Path, text: str, facts) -> Spec | None:
    """A spec whose readings are ``facts`` (a cache entry's value); None when they are not of
    the shape :func:`_facts_of` writes: a miss, read anew."""
    try:
        sections = [Section(_str(h), _int(lv), _int(ln)) for h, lv, ln in facts["sections"]]

        def section(n) -> Section | None:
            if _int(n) == -1:
                return None
            if not 0 <= n < len(sections):
                raise ValueError(n)
            return sections[n]

        blocks = [
            SqlBlock(_opt(k), _opt(name), _str(sql), _int(ln), section(n))
            for k, name, sql, ln, n in facts["blocks"]
        ]
        declarations = [
            Declaration(PurePosixPath(_str(p)), _int(ln), section(n)) for p, ln, n in facts["declarations"]
        ]
        targets = {_str(k): _number(v) for k, v in facts["targets"].items()}
        if set(facts) != set(_FACTS):
            return None
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    spec = Spec(path, text)
    spec.__dict__.update(sections=sections, blocks=blocks, declarations=declarations, targets=targets)
    return spec


def _str(value) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _opt(value) -> str | None:
    return None if value is None else _str(value)


def _number(value) -> float:
    if type(value) not in (int, float):
        raise TypeError
    return float(value)


def _int(value) -> int:
    if type(value) is not int:
        raise TypeError
    return value
