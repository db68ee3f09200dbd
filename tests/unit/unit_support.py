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
