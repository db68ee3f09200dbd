"""Helpers shared by the fast tests (plain functions and constants; the fixtures are in conftest.py)."""

from __future__ import annotations

SPEC_HEAD = "# Spec\n\n## Migrations: directory and tooling\n\n"
DECLARATION = "- Migrations directory: `api/db/migrations`\n"
COMPOSE = """services:
  postgres:
    image: postgres:15
    volumes:
      - ./api/db/migrations:/docker-entrypoint-initdb.d:ro
"""


def compliant(name: str, body: str = "CREATE TABLE IF NOT EXISTS t (id int);\n") -> str:
    """A file that follows every rule: the header naming it, then one transaction."""
    return f"-- migration: api/db/migrations/{name}\nBEGIN;\n{body}COMMIT;\n"


def printed(files: dict[str, str | bytes], directory: str = "api/db/migrations") -> str:
    """The spec's section "Migrations" printing each file (by name order) as its block: what a
    project whose files follow the rule "printed in the spec" holds. A file that cannot be
    decoded, or holds nothing, is left out (its own rule refuses it); a block always names its
    file on its first line (a file without that header differs from it there), and ends in a
    newline (a file without one differs from it on its last line)."""
    blocks = []
    for name, content in sorted(files.items()):
        try:
            text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
        except UnicodeDecodeError:
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        header = f"-- migration: {directory}/{name}"
        if text.strip() and text.partition("\n")[0] != header:  # the block names its file all the same
            text = header + "\n" + text.partition("\n")[2]
        if text.strip():
            blocks.append(f"`{name}`:\n\n```sql\n{text}{'' if text.endswith(chr(10)) else chr(10)}```\n")
    return "\n## Migrations\n\n" + "\n".join(blocks) if blocks else ""
