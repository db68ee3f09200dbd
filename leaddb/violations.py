"""A broken rule of the spec's "Migrations: directory and tooling", as every message shows it.

What breaks a rule is found in two rooms: ``leaddb.migrations`` reads the directory and its
files (naming, text), ``leaddb.rules`` judges what was read (the rest). Both report here, in one
shape: ``<file>:<line>: rule "<rule>": <what>``, with the next step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from leaddb.errors import MigrationError, excerpt
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME

NAMING = "naming"
TEXT = "text"
HEADER = "header"
ONE_TRANSACTION = "one transaction"
NOT_DESTRUCTIVE = "not destructive"
NO_LOGIC = "no logic"
PLAIN_SQL = "plain SQL"
SCHEMA_ONLY = "schema only"
PRINTED = "printed in the spec"

# the longest description a violation prints (a few names, a short excerpt)
MAX_WHAT = 400

# the next step for each rule, when a violation carries no more precise one
FIXES = {
    NAMING: "name each file NNNN_snake_name.sql, numbered contiguously from 0001 in apply order, "
    "and keep nothing else in the migrations directory: the container executes every file there",
    TEXT: "save the file as UTF-8 without BOM, with LF line endings, no tabs, no trailing whitespace "
    "and one newline at the end",
    HEADER: "make the first line `-- migration: <migrations directory>/<file name>`, the file's own path",
    ONE_TRANSACTION: "wrap everything after the header in one BEGIN; … COMMIT; and nothing else "
    "that starts or ends a transaction",
    NOT_DESTRUCTIVE: "migrations only add; if the spec really means it, say so there with "
    "'Destructive change allowed: `object`'",
    NO_LOGIC: "migrations hold schema only: no functions, procedures, triggers, rules or data "
    "(a guard belongs in an anonymous DO block)",
    PLAIN_SQL: "migrations are plain SQL, applied the same way by psql and by the runner; fix the file",
    SCHEMA_ONLY: "migrations hold this schema's objects only: no roles or grants, no commands on the "
    "database, the server or the session, no server functions, no locks, no dynamic SQL",
    PRINTED: "print the file's SQL in the spec's section \"Migrations\" first (a ```sql block whose first "
    "line is `-- migration: <file>`), then copy it byte for byte into the file",
}


@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int  # 1-based; 0 when the file as a whole breaks the rule (its name, its number)
    rule: str
    what: str
    fix: str = field(default="", compare=False)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        # every rule quotes what it needs only; this bounds it all the same
        return f'{excerpt(where, 300)}: rule "{self.rule}": {excerpt(self.what, MAX_WHAT)}'

    @property
    def next_step(self) -> str:
        return self.fix or FIXES[self.rule]


class RulesBroken(MigrationError):
    """One or more migration files break the spec's rules; nothing was applied."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = sorted(violations)
        rules = f'the rules are in {SPEC_FILENAME}, section "{MIGRATIONS_HEADING}"'
        if len(self.violations) == 1:
            (only,) = self.violations
            super().__init__(only.describe(), hint=f"{only.next_step}; nothing was applied ({rules})")
            return
        listing = "\n".join(f"  - {v.describe()}" for v in self.violations)
        steps = "".join(dict.fromkeys(f"\n    - {v.rule}: {FIXES[v.rule]}" for v in self.violations))
        super().__init__(
            f"{len(self.violations)} violations of the migration rules; nothing was applied:\n{listing}",
            hint=f"fix each file above ({rules}):{steps}",
        )


def refuse(violations: Sequence[Violation]) -> None:
    if violations:
        raise RulesBroken(violations)
