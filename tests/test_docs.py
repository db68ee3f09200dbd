"""docs/windows.md and the README give the same commands, so neither can drift: every project
command of the Windows checklist is one of the README's, the README's two newcomer commands and
its PowerShell acceptance sequence are in the checklist word for word, and the README's POSIX
acceptance sequence (the one CI runs) is its PowerShell one but for the shell's loop syntax."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WINDOWS = REPO / "docs" / "windows.md"
# what a line must start with to be one of the project's commands (the rest of the checklist is
# Windows setup: winget, git clone, Copy-Item, Get-NetTCPConnection, docker version, ...)
PROJECT_COMMANDS = ("docker compose ", "python -m ", "py -3.11 -m ", "invoke ", "Set-Content ")
CHECKLIST_ONLY = {"docker compose version"}  # step 1's check that Compose v2 is installed


@dataclass
class Block:
    marker: str | None  # the HTML comment right before the fence, e.g. "ci:acceptance"
    info: str
    lines: list[str]
    line: int  # where the fence opens (1-based)


def blocks(path: Path) -> list[Block]:
    found, marker = [], None
    for token in MarkdownIt().parse(path.read_text(encoding="utf-8")):
        if token.type == "html_block":
            matched = re.fullmatch(r"<!--\s*(\S+)\s*-->", token.content.strip())
            marker = matched.group(1) if matched else None
        elif token.type == "fence":
            found.append(Block(marker, token.info.strip(), token.content.splitlines(), token.map[0] + 1))
            marker = None
        else:  # a marker belongs to the fence right after it only
            marker = None
    return found


def inline_code(path: Path) -> list[str]:
    spans = []
    for token in MarkdownIt().parse(path.read_text(encoding="utf-8")):
        for child in token.children or []:
            if child.type == "code_inline":
                spans.append(child.content)
    return spans


def command(line: str) -> str | None:
    """The command on a line of a code block, without a trailing comment; None for comments,
    output and anything that is not one of the project's commands."""
    text = re.sub(r"\s+#\s.*$", "", line).strip()
    return text if text.startswith(PROJECT_COMMANDS) else None


def commands(path: Path) -> list[tuple[int, str]]:
    found = []
    for block in blocks(path):
        for offset, line in enumerate(block.lines, 1):
            if (cmd := command(line)) is not None:
                found.append((block.line + offset, cmd))
    return found


def marked(path: Path, marker: str) -> Block:
    matching = [b for b in blocks(path) if b.marker == marker]
    assert len(matching) == 1, f"{path.name}: {len(matching)} code blocks after <!-- {marker} -->"
    return matching[0]


def test_every_project_command_of_the_checklist_is_the_readmes():
    readme = {cmd for _, cmd in commands(README)} | {c for c in inline_code(README) if command(c)}
    missing = [
        f"docs/windows.md:{line}: {cmd}"
        for line, cmd in commands(WINDOWS)
        if cmd not in readme and cmd not in CHECKLIST_ONLY
    ]
    missing += [
        f"docs/windows.md (inline): {span}"
        for span in inline_code(WINDOWS)
        if command(span) and span not in readme and span not in CHECKLIST_ONLY
    ]
    assert not missing, "not in README.md:\n" + "\n".join(missing)


@pytest.mark.parametrize("marker", ["ci:main", "ci:tests"])
def test_the_readmes_newcomer_commands_are_in_the_checklist(marker):
    (readme_command,) = marked(README, marker).lines
    assert readme_command in {cmd for _, cmd in commands(WINDOWS)}


def test_the_powershell_acceptance_sequence_is_the_same_in_both():
    readme, windows = (
        marked(README, "sync:acceptance-powershell"),
        marked(WINDOWS, "sync:acceptance-powershell"),
    )
    assert readme.info == windows.info == "powershell"
    assert windows.lines == readme.lines


def _outside_the_loop(lines: list[str], opens: str, closes: str) -> tuple[list[str], list[str]]:
    outside, loop, inside = [], [], False
    for line in lines:
        if line.startswith(opens):
            inside = True
        (loop if inside else outside).append(line)
        if inside and line.rstrip() == closes:
            inside = False
    return outside, loop


def test_the_posix_sequence_ci_runs_is_the_powershell_one():
    posix = marked(README, "ci:acceptance")
    powershell = marked(README, "sync:acceptance-powershell")
    assert posix.info == "sh"
    posix_rest, posix_loop = _outside_the_loop(posix.lines, "for f in ", "done")
    powershell_rest, powershell_loop = _outside_the_loop(powershell.lines, "Get-ChildItem ", "}")
    assert posix_rest == powershell_rest  # every line but the loop, word for word
    # the loop runs the same psql on every file, in file-name order
    psql = "docker compose exec -T postgres psql -v ON_ERROR_STOP=1 -U postgres -d leadgen"
    assert " ".join(line.strip().rstrip("\\").strip() for line in posix_loop).count(psql + " -f ") == 1
    assert sum(line.strip().startswith(psql + " -f ") for line in powershell_loop) == 1
    assert "api/db/migrations/*.sql" in posix_loop[0] and "api/db/migrations/*.sql" in powershell_loop[0]
    # what the user's own acceptance lines say, with <DB_NAME> = leadgen
    for line in (
        "docker compose up -d postgres",
        "docker compose down -v && docker compose up -d postgres",
        'docker compose exec -T postgres psql -U postgres -d leadgen -c "\\dt"',
        'docker compose exec -T postgres psql -U postgres -d leadgen -c "\\d+ leads"',
        'docker compose exec -T postgres psql -U postgres -d leadgen -c "\\d+ sources"',
        'docker compose exec -T postgres psql -U postgres -d leadgen -c "\\d+ offers"',
    ):
        assert line in posix.lines


def test_the_check_finds_a_command_only_the_checklist_has(tmp_path, monkeypatch):
    changed = tmp_path / "windows.md"
    changed.write_text(
        WINDOWS.read_text(encoding="utf-8").replace("invoke db.down\n", "invoke db.down --force\n"),
        encoding="utf-8",
        newline="\n",
    )
    monkeypatch.setattr(sys.modules[__name__], "WINDOWS", changed)
    with pytest.raises(AssertionError, match="invoke db.down --force"):
        test_every_project_command_of_the_checklist_is_the_readmes()
