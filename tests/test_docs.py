"""docs/windows.md and the README give the same commands, so neither can drift: every project
command of the Windows checklist is one of the README's, the README's two newcomer commands and
its PowerShell acceptance sequence are in the checklist word for word, and the README's POSIX
acceptance sequence (the one CI runs) is its PowerShell one but for the shell's loop syntax.

ARCHITECTURE.md, the newcomer's map, stays true the same way: it names every module and package
under leaddb/, and every path it names exists."""

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


# -- ARCHITECTURE.md: the map names every room, and every room it names exists ----------------

ARCHITECTURE = REPO / "ARCHITECTURE.md"
# a path as the map writes it: repo-relative, with a "/" or a file extension; "*" for a glob.
# A placeholder (`api/db/migrations/<NNNN_name>.sql`) touches "<" or ">" and is no path.
_PATH_CHARS = r"[\w.*-]"
PATH_TOKEN = re.compile(
    rf"(?<![\w./<>*-])((?:{_PATH_CHARS}+/)+{_PATH_CHARS}*|[\w*-]+(?:\.[\w-]+)*\.(?:py|sql|md|yml|yaml|json|toml|sh))"
    r"(?![\w./<>*-])"
)


def named_paths(text: str) -> set[str]:
    """Every path the document names: in inline code, in code blocks (the diagram) and as link
    targets. Prose is not read: the map writes paths in backticks."""
    pieces = []
    for token in MarkdownIt().parse(text):
        if token.type == "fence":
            pieces.append(token.content)
        for child in token.children or []:
            if child.type == "code_inline":
                pieces.append(child.content)
            elif child.type == "link_open":
                href = str(child.attrs.get("href", ""))
                if not re.match(r"[a-z]+:|#", href):
                    pieces.append(href.split("#")[0])
    return {match.group(1) for piece in pieces for match in PATH_TOKEN.finditer(piece)}


def generated_directories(root: Path) -> list[str]:
    """Directories the tools write into and git ignores (`reports/`, `benchmarks/results/`): a
    path there is output the map may name before any run made it."""
    ignore = root / ".gitignore"
    if not ignore.is_file():
        return []
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if re.fullmatch(r"[\w.-]+(/[\w.-]+)*/", line.strip())]


def missing_rooms(text: str, root: Path) -> list[str]:
    """Modules and packages under leaddb/ the map does not name; a package is named by its folder
    (`leaddb/catalog/`), which stands for its __init__.py too."""
    named = named_paths(text)
    rooms = set()
    for module in (root / "leaddb").rglob("*.py"):
        room = module.parent if module.name == "__init__.py" else module
        rooms.add(room.relative_to(root).as_posix() + ("/" if room.is_dir() else ""))
    return sorted(rooms - named)


def paths_that_do_not_exist(text: str, root: Path) -> list[str]:
    generated = generated_directories(root)
    gone = []
    for path in sorted(named_paths(text)):
        if any(path.startswith(directory) for directory in generated):
            continue
        found = any(root.glob(path.rstrip("/"))) if "*" in path else (root / path).exists()
        if not found:
            gone.append(path)
    return gone


def test_the_map_names_every_module_and_subpackage():
    missing = missing_rooms(ARCHITECTURE.read_text(encoding="utf-8"), REPO)
    assert not missing, "ARCHITECTURE.md does not name (in backticks, from the repo root):\n" + "\n".join(
        missing
    )


def test_every_path_the_map_names_exists():
    gone = paths_that_do_not_exist(ARCHITECTURE.read_text(encoding="utf-8"), REPO)
    assert not gone, "ARCHITECTURE.md names paths that do not exist:\n" + "\n".join(gone)


def test_the_map_checks_catch_a_new_module_and_a_path_that_went_away(tmp_path):
    (tmp_path / "leaddb" / "backends" / "cloud").mkdir(parents=True)
    for name in ("__init__.py", "cli.py", "backends/__init__.py", "backends/cloud/__init__.py"):
        (tmp_path / "leaddb" / name).write_bytes(b"")
    (tmp_path / "leaddb" / "queries").mkdir()
    (tmp_path / "leaddb" / "queries" / "tables.sql").write_bytes(b"")
    (tmp_path / ".gitignore").write_text("reports/\n*.pyc\n", encoding="utf-8", newline="\n")
    text = (
        "`leaddb/`, `leaddb/cli.py` (`db.reset`, `backend.apply`) and `leaddb/backends/`.\n\n"
        "```text\nleaddb/queries/*.sql ──▶ reports/verify.json, api/db/migrations/<NNNN_name>.sql\n```\n"
    )
    assert missing_rooms(text, tmp_path) == ["leaddb/backends/cloud/"]
    assert paths_that_do_not_exist(text, tmp_path) == []
    assert missing_rooms(text + "`leaddb/backends/cloud/`\n", tmp_path) == []
    # a room renamed or removed, a glob that matches nothing, a link to nowhere
    text += (
        "`leaddb/runner.py`, `leaddb/queries/*.json`, [a](docs/gone.md#top), [b](https://example.org/x.py)\n"
    )
    gone = ["docs/gone.md", "leaddb/queries/*.json", "leaddb/runner.py"]
    assert paths_that_do_not_exist(text, tmp_path) == gone


# -- the README's backends: one per registered backend --------------------------------------------


def readme_backends(text: str) -> list[str]:
    """The names the README's "## Backends" section gives a bullet of its own (``- **name**:``)."""
    section = text.split("\n## Backends\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- \*\*([a-z_]+)\*\*:", section, re.M)


def test_the_readme_describes_every_registered_backend_and_no_other():
    """Adding a backend is its package plus its ``REGISTERED`` line; the one thing a person must
    still write is what users read about it, and this says so, naming the section."""
    from leaddb import backends

    described = readme_backends(README.read_text(encoding="utf-8"))
    assert sorted(described) == sorted(backends.REGISTERED), (
        f'README.md "## Backends" has a bullet for {sorted(described)}; the registered backends are '
        f"{sorted(backends.REGISTERED)} (leaddb/backends/__init__.py): give each a `- **name**:` bullet"
    )


def test_the_backends_check_sees_a_missing_and_an_extra_bullet():
    text = README.read_text(encoding="utf-8")
    assert "local" in readme_backends(text)
    assert "local" not in readme_backends(text.replace("- **local**:", "- local:", 1))
    extra = text.replace("\n## Backends\n", "\n## Backends\n\n- **ftp**: a server over FTP.\n", 1)
    assert "ftp" in readme_backends(extra)


# -- the ground imports nothing above it -----------------------------------------------------------


def ground_modules(text: str) -> set[str]:
    """The modules the map's "The ground" list names (``leaddb.errors``, ...)."""
    section = text.split("**The ground**", 1)[1].split("\n## ", 1)[0]
    return {m.replace("/", ".") for m in re.findall(r"`(leaddb/[a-z_]+)\.py`", section)}


def leaddb_imports(source: str) -> set[str]:
    """Every leaddb module ``source`` imports, anywhere (a function's, a type hint's too)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("leaddb.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "leaddb":
            if node.module == "leaddb":
                found |= {f"leaddb.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return found


def test_the_ground_imports_nothing_above_it():
    """The map's claim, type hints included: the rooms every floor stands on know no room above."""
    ground = ground_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    assert {"leaddb.errors", "leaddb.console", "leaddb.statedir"} <= ground
    above = {
        module: sorted(
            leaddb_imports((REPO / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8")) - ground
        )
        for module in sorted(ground)
    }
    assert not any(above.values()), {module: found for module, found in above.items() if found}


def test_the_ground_check_sees_a_type_hint_from_above():
    planted = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from leaddb.bench import BenchResult\n"
    )
    assert leaddb_imports(planted) == {"leaddb.bench"}
    assert leaddb_imports("from leaddb import locks, platforms\n") == {"leaddb.locks", "leaddb.platforms"}
