"""Never a traceback: every input a user controls — flags, environment, .env, the compose file,
the spec, the migration files, DSNs, Ctrl-C — ends in one message and a documented exit code.

The tasks run in-process, as `invoke` runs them (``invoke.Program`` over the workspace's own
``tasks.py``), on a throwaway copy of the project; anything that needs a server uses the dsn
backend on a database of this module's own on the suite's cluster (no Docker). One real
Ctrl-C (SIGINT to the process group) runs as a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from invoke import Exit
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from server_choice import (
    other_tests_name,
    owned_elsewhere,
    skip_unless_superuser,
    tcp_address,
)
from workspace import load_tasks, run_task

from leaddb import catalog, compose, janitor, migrations, runner, tombstones
from leaddb.backends import NAMES
from leaddb.backends.local import LocalBackend, remove_everything, scratch_root
from leaddb.spec import Spec

PROJECT_DIR = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 130}
PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")
PROJECT_DIRS = ("api", "docs")  # the migrations and the schema dump; the committed ER diagram
SPEC = "Technical-Architecture-Specification.md"
MIGRATIONS = "api/db/migrations"


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def stat_tree(path: Path) -> list[tuple]:
    """``path`` and, for a directory, everything under it (links not followed): each entry's
    name, mode, size and modification time (None for an entry that is missing)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return [(".", None)]
    entries = [(".", info.st_mode, info.st_size, info.st_mtime_ns)]
    if path.is_dir() and not path.is_symlink():
        for top, dirs, files in os.walk(path):
            for name in sorted(dirs) + sorted(files):
                item = Path(top, name)
                info = item.lstat()
                entries.append(
                    (item.relative_to(path).as_posix(), info.st_mode, info.st_size, info.st_mtime_ns)
                )
    return entries


class Arena:
    """A copy of the project, its tasks run in-process, and a database of its own."""

    def __init__(
        self, root: Path, pristine: Path, state: Path, dsn: str, weak_dsn: str, maintenance: str, shared: bool
    ):
        self.root, self.pristine, self.state, self.shared = root, pristine, state, shared
        self.dsn, self.weak_dsn, self.maintenance = dsn, weak_dsn, maintenance
        self.dbname = conninfo_to_dict(dsn)["dbname"]
        self.roles = (conninfo_to_dict(dsn)["user"], conninfo_to_dict(weak_dsn)["user"])
        # the tasks run in-process: their bug reports (tempfile) go here, not into the machine's
        # shared temp directory, where another run's reports (or a planted link) would be read
        self.tmp = state.parent / f"{state.name}-tmp"
        self.tmp.mkdir(mode=0o700)
        spec = importlib.util.spec_from_file_location(
            f"leaddb_arena_tasks_{secrets.token_hex(4)}", root / "tasks.py"
        )
        self.tasks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.tasks)
        self._watch: psycopg.Connection | None = None
        self.repo_digest = self.repo_state()
        self.pristine_digest = tree_digest(pristine)
        self.server_digest = self.server_state()
        self.bug_reports = self.reports()
        self.base_env = {
            "INVOKE_DB_BACKEND": "dsn",
            "INVOKE_DB_DSN": dsn,
            "LEADDB_STATE_DIR": str(state),
            **{k: None for k in os.environ if k.startswith(("POSTGRES_", "COMPOSE_", "LEADDB_DOCKER"))},
        }

    @staticmethod
    def repo_state() -> str:
        digest = hashlib.sha256()
        for name in (*PROJECT_FILES, ".env"):
            path = PROJECT_DIR / name
            digest.update(path.read_bytes() if path.is_file() else b"-")
        for name in PROJECT_DIRS:
            digest.update(tree_digest(PROJECT_DIR / name).encode())
        return digest.hexdigest()

    def server_state(self) -> tuple:
        # one session for every check (a new one per example cost a connection and a server
        # process each time); made again if the server ended it
        try:
            return self._server_state()
        except psycopg.OperationalError:
            self.close()
            self._watch = None
            return self._server_state()

    def _server_state(self) -> tuple:
        if self._watch is None or self._watch.closed or self._watch.broken:
            self._watch = psycopg.connect(self.maintenance, autocommit=True)
        conn = self._watch
        databases = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        roles = conn.execute("SELECT rolname, rolcreatedb, rolsuper FROM pg_roles ORDER BY 1").fetchall()
        if self.shared:  # not those other tests make and drop meanwhile (xdist's workers on one --dsn server)
            ours = (self.dbname, *self.roles)
            databases = [row for row in databases if not other_tests_name(row[0], ours)]
            roles = [row for row in roles if not other_tests_name(row[0], ours)]
        # what our roles own in any other database (a task that wrote outside ours, e.g. into
        # 'postgres' through a DSN without dbname)
        elsewhere = owned_elsewhere(conn, list(self.roles), self.dbname)
        return databases, roles, elsewhere

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def reports(self) -> set[str]:
        return {p.name for p in self.tmp.glob("leaddb-bug-*")}

    def restore(self) -> None:
        """The copy as the pristine one: what is not in it removed, and each of its files and
        directories that differs (by its tree's names, kinds, sizes and times: copies keep the
        pristine's times, a write changes them) copied again; the rest is left as it is."""
        kept = ("tasks.py", "__pycache__", *PROJECT_FILES[1:], *PROJECT_DIRS)
        for path in self.root.iterdir():
            if path.name not in kept:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for name in (*PROJECT_DIRS, *PROJECT_FILES[1:]):
            target = self.root / name
            if stat_tree(target) == stat_tree(self.pristine / name):
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if name in PROJECT_DIRS:
                shutil.copytree(self.pristine / name, target)
            else:
                shutil.copy2(self.pristine / name, target)

    def write(self, relative: str, content: bytes | None) -> None:
        path = self.root / relative
        if content is None:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            return
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def __call__(self, *argv: str, env: dict[str, str | None] | None = None, patches=()) -> Outcome:
        changes = {**self.base_env, **(env or {})}
        return Outcome(*run_task(self.root, self.tasks, changes, self.tmp, *argv, patches=patches))

    def check_nothing_else_changed(self) -> None:
        assert self.repo_state() == self.repo_digest, "the repository's own files changed"
        assert tree_digest(self.pristine) == self.pristine_digest, "the pristine copy changed"
        assert self.server_state() == self.server_digest, "databases or roles outside ours changed"
        started = any(self.state.iterdir())
        if started:  # report it once, not again in every later test
            LocalBackend(self.root, state_dir=self.state).down()
            for path in self.state.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        assert not started, "a local cluster was created"
        reports = [self.tmp / name for name in self.reports() - self.bug_reports]
        texts = [path.read_text(encoding="utf-8", errors="replace") for path in reports]
        for path in reports:
            path.unlink()
        assert not texts, "bug reports written:\n" + "\n".join(texts)


@pytest.fixture(scope="module")
def arena(server, template_db, shared_server):
    """The workspace copy, a migrated database, a superuser with a password (the DSN users would
    pass, over TCP) and a role without rights, all of the module's own, on the suite's server
    (whichever backend it is: only its interface is used)."""
    skip_unless_superuser(server.conninfo("postgres"), in_ci=IN_CI, needed_for="roles of its own")
    base = Path(tempfile.mkdtemp(prefix="leaddb-inputs-"))
    root, pristine = base / "ws", base / "pristine"
    for target in (root, pristine):
        target.mkdir()
        for name in PROJECT_FILES:
            shutil.copy2(PROJECT_DIR / name, target / name)
        for name in PROJECT_DIRS:
            shutil.copytree(PROJECT_DIR / name, target / name)
    state = Path(tempfile.mkdtemp(prefix="leaddb-inputs-state-", dir=scratch_root()))
    tag = secrets.token_hex(4)
    name, admin, weak = f"inputs_{tag}", f"inputs_admin_{tag}", f"inputs_weak_{tag}"
    password = secrets.token_urlsafe(12)
    host, port = tcp_address(server.conninfo("postgres"))
    with janitor.maintenance(server.conninfo("postgres")) as conn:
        janitor.create_database(conn, name, template=template_db)
        for role, secret, attributes in ((admin, password, "SUPERUSER"), (weak, "weak-password", "")):
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + attributes).format(
                    sql.Identifier(role), sql.Literal(secret)
                )
            )
    tcp = {"host": host, "port": port, "dbname": name}
    arena = None
    try:
        arena = Arena(
            root,
            pristine,
            state,
            dsn=make_conninfo(user=admin, password=password, **tcp),
            weak_dsn=make_conninfo(user=weak, password="weak-password", **tcp),
            maintenance=server.conninfo("postgres"),
            shared=shared_server,
        )
        yield arena
    finally:
        try:
            if arena is not None:
                arena.close()
            with janitor.maintenance(server.conninfo("postgres")) as conn:
                janitor.drop_database(conn, name)
                for role in (admin, weak):  # each on its own: one failure must not keep the other
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        finally:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
            shutil.rmtree(state.parent / f"{state.name}-tmp", ignore_errors=True)


@pytest.fixture
def ws(arena):
    arena.restore()
    yield arena
    arena.check_nothing_else_changed()


def assert_one_message(outcome: Outcome, code: int, start: str) -> None:
    assert outcome.code == code, str(outcome)
    assert outcome.err.startswith(start), str(outcome)
    assert "Traceback" not in outcome.text and "internal error" not in outcome.text, str(outcome)


# -- the cases, one by one ---------------------------------------------------------


def test_dotenv_inline_comment_is_read_as_compose_reads_it(ws):
    ws.write(".env", b"POSTGRES_PORT=5433 # my override\n")
    outcome = ws("db.lint")
    assert outcome.code == 0, str(outcome)
    assert compose.load_service(ws.root, environ={}).ports[0].host_port == 5433


def as_printed(expected: str, root: Path) -> str:
    """An expected message: ``{root}`` as the user typed it; ``{path}/a/b`` as the tool prints
    a ``Path`` it made of what was typed, with the platform's separator (``\\`` on Windows)."""
    printed = re.sub(
        r"\{path\}((?:/[^\s:/]+)*)", lambda m: str(Path(root, *m.group(1).split("/")[1:])), expected
    )
    return printed.replace("{root}", str(root))


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["db.bench", "--runs", "abc"], "--runs 'abc' is not a whole number"),
        (["db.bench", "--runs", "1.5"], "--runs '1.5' is not a whole number"),
        (["db.bench", "--runs", "0"], "--runs '0': at least 1 run is needed"),
        (["db.bench", "--runs=-3"], "--runs '-3': at least 1 run is needed"),
        (["db.bench", "--scale=-5,0"], "--scale=-5,0: -5 is outside 1..100000"),
        (["db.bench", "--scale=-5"], "--scale=-5: -5 is outside 1..100000"),
        (["db.bench", "--scale=0"], "--scale=0: 0 is outside"),
        (["db.bench", "--scale=abc"], "--scale=abc: 'abc' is not a whole number"),
        (["db.bench", "--scale=10,,20"], "--scale=10,,20: an empty entry"),
        (["db.bench", "--runs", "100001"], "--runs '100001': at most 100000 runs"),
        (["db.bench", "--runs", "9" * 5000], f"--runs '{'9' * 20}': at most 100000 runs"),  # int() refuses
        (["db.bench", "--runs", "\u0663"], "--runs '\u0663' is not a whole number"),  # a digit, not ASCII
        (["db.bench", "--scale=" + "9" * 5000], f"--scale={'9' * 60}: {'9' * 20}… is outside 1..100000"),
        (["db.verify", "--bench-runs", "x"], "--bench-runs 'x' is not a whole number"),
        (["db.verify", "--bench-runs", "0"], "--bench-runs '0': at least 1 run"),
        (["db.bench", "--backend", "nonsense"], "--backend: unknown backend 'nonsense'"),
        (["db.apply", "--backend", "nonsense"], "--backend: unknown backend 'nonsense'"),
        (
            ["db.bench", "--json", "{root}/no/such/dir/out.json"],
            "--json: the directory {path}/no/such/dir does not",
        ),
        (["db.bench", "--json", "{root}/api"], "--json {root}/api: is a directory"),
        (["db.introspect", "--json", "{root}/tasks.py/x.json"], "--json: {path}/tasks.py is a file"),
        (
            ["db.status", "--json", "{root}/no/such/dir/s.json"],
            "--json: the directory {path}/no/such/dir does not",
        ),
        (["db.erd", "--out", "{root}/tasks.py/schema.md"], "--out: {path}/tasks.py is a file"),
        (["db.erd", "--svg", "{root}/api"], "--svg {root}/api: is a directory"),
        (["db.verify", "--report-dir", "{root}/tasks.py"], "--report-dir: {path}/tasks.py is a file"),
        (["db.verify", "--report-dir", "{root}/tasks.py/sub"], "--report-dir: {path}/tasks.py (in"),
        (["db.apply", "--backend", "dsn", "--dsn", "host=x password=s3kr1t junk"], "--dsn: not a connection"),
        (["db.apply", "--lock-timeout", "abc"], "--lock-timeout: 'abc' is not a number of seconds"),
        (["db.reset", "--statement-timeout=-1"], "--statement-timeout: '-1' is not a number of seconds"),
        (["db.verify", "--lock-timeout", "2d"], "--lock-timeout: '2d' is not a number of seconds"),
        (["db.reapply", "--lock-timeout", "1e3"], "--lock-timeout: '1e3' is not a number of seconds"),
        (["db.bench", "--lock-timeout", "\u0663"], "--lock-timeout: '\u0663' is not a number of seconds"),
        (["db.apply", "--lock-timeout", "90000"], "--lock-timeout: '90000' is more than a day (86400 s)"),
        (["db.apply", "--statement-timeout", "25h"], "--statement-timeout: '25h' is more than a day"),
        (["db.apply", "--lock-timeout", "9" * 5000], f"--lock-timeout: '{'9' * 20}' is more than a day"),
    ],
)
def test_every_flag_is_checked_before_any_work(ws, argv, start):
    root = str(ws.root)
    # INVOKE_DB_BACKEND=local: a flag that slipped through would start a local cluster (and fail the check)
    outcome = ws(*(a.replace("{root}", root) for a in argv), env={"INVOKE_DB_BACKEND": "local"})
    assert_one_message(outcome, 1, as_printed(start, ws.root))
    assert "s3kr1t" not in outcome.text


def test_bench_results_directory_is_checked_before_the_runs(ws):
    ws.write("benchmarks", b"a file where the results directory belongs\n")
    outcome = ws("db.bench", "--runs", "1", env={"INVOKE_DB_BACKEND": "local"})
    assert_one_message(outcome, 1, f"benchmarks/results: {ws.root / 'benchmarks'} (in ")


# the file's form is checked as tasks.py is imported, before invoke merges it: two cases as a
# user meets them (a child: in-process runs get the namespace directly and read no config
# file), one of them a value only invoke's merge brings to the task; the other forms below
CONFIG_FILES = {
    "not YAML": ("invoke.yaml", "db: {backend: [\n", "invoke.yaml:2:1: not valid YAML"),
    "a value, not a section": ("invoke.yaml", "db: 5\n", "invoke.yaml: db is int, not a mapping of settings"),
    "a list at the top": ("invoke.yml", "- db\n", "invoke.yml: the top level is list"),
    "not JSON": ("invoke.json", '{"db": 1', "invoke.json:1: not valid JSON"),
    "an unknown backend": (
        "invoke.yaml",
        "db:\n  backend: nonsense\n",
        "INVOKE_DB_BACKEND (or db.backend in invoke.yaml): unknown",
    ),
}
CONFIG_FILES_END_TO_END = ("not YAML", "an unknown backend")


@pytest.mark.parametrize("case", [c for c in CONFIG_FILES if c not in CONFIG_FILES_END_TO_END])
def test_an_invoke_config_file_of_the_wrong_form_stops_the_import_of_tasks_py(ws, case):
    name, content, start = CONFIG_FILES[case]
    ws.write(name, content.encode())
    with pytest.raises(Exit) as stopped:
        load_tasks(ws.root)
    assert stopped.value.code == 1
    assert str(stopped.value.message).startswith(start), stopped.value.message


@pytest.mark.parametrize("case", CONFIG_FILES_END_TO_END)
def test_invoke_config_file_is_one_message(ws, case):
    """invoke merges the project's config file itself (a subprocess: in-process runs get the
    namespace directly and read no config file)."""
    name, content, start = CONFIG_FILES[case]
    ws.write(name, content.encode())
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "db.apply"],
        cwd=ws.root,
        env={  # the workspace's settings, without INVOKE_DB_BACKEND, which would win over the file
            **{k: v for k, v in os.environ.items() if k not in ws.base_env},
            **{k: v for k, v in ws.base_env.items() if v is not None and k != "INVOKE_DB_BACKEND"},
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(start), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_boot_timeout_checked_up_front_is_the_one_the_docker_backend_reads():
    from leaddb import cli
    from leaddb.backends.docker import bootlog

    assert cli.BOOT_TIMEOUT_ENV == bootlog.BOOT_TIMEOUT_ENV


@pytest.mark.parametrize(
    ("variable", "value", "task", "start"),
    [
        (
            "INVOKE_DB_BACKEND",
            "nonsense",
            "db.apply",
            "INVOKE_DB_BACKEND (or db.backend in invoke.yaml): unknown",
        ),
        (
            "INVOKE_DB_DSN",
            "not a dsn",
            "db.drift",
            "INVOKE_DB_DSN (or db.dsn in invoke.yaml): not a connection",
        ),
        (
            "POSTGRES_PORT",
            "abc",
            "db.lint",
            "docker-compose.yml:{POSTGRES_PORT}: port entry '127.0.0.1:abc:5432'",
        ),
        (
            "POSTGRES_IMAGE",
            "Not An Image",
            "db.lint",
            "docker-compose.yml:{POSTGRES_IMAGE}: image 'Not An Image'",
        ),
        (
            "LEADDB_DOCKER_BOOT_TIMEOUT",
            "soon",
            "db.reset",
            "LEADDB_DOCKER_BOOT_TIMEOUT='soon' is not a number",
        ),
        (
            "INVOKE_DB_LOCK_TIMEOUT",
            "soon",
            "db.apply",
            "INVOKE_DB_LOCK_TIMEOUT (or db.lock_timeout in invoke.yaml): 'soon' is not a number of seconds",
        ),
        (
            "INVOKE_DB_STATEMENT_TIMEOUT",
            "-5",
            "db.introspect",
            "INVOKE_DB_STATEMENT_TIMEOUT (or db.statement_timeout in invoke.yaml): '-5' is not a number",
        ),
    ],
)
def test_environment_variables_are_checked_before_any_work(ws, variable, value, task, start):
    env = {variable: value}
    if variable == "LEADDB_DOCKER_BOOT_TIMEOUT":
        env["INVOKE_DB_BACKEND"] = "docker"
    if variable == "INVOKE_DB_DSN":
        env["INVOKE_DB_BACKEND"] = "auto"
    line = next((i for i, text in enumerate(COMPOSE_TEXT.splitlines(), 1) if variable in text), 0)
    assert_one_message(ws(task, env=env), 1, start.format(**{variable: line}))


@pytest.mark.parametrize(
    "task", ["db.lint", "db.apply", "db.reapply", "db.drift", "db.introspect", "db.bench"]
)
@pytest.mark.parametrize(
    ("content", "start"),
    [
        (b"# Spec\n\ncaf\xe9\n", f"{SPEC}:3: not valid UTF-8"),
        (None, f"{SPEC} is a directory"),
    ],
)
def test_spec_not_utf8_or_a_directory_is_one_message_on_every_task(ws, task, content, start):
    if content is None:
        ws.write(SPEC, None)
        (ws.root / SPEC).mkdir()
    else:
        ws.write(SPEC, content)
    assert_one_message(ws(task), 1, start)


@pytest.mark.parametrize("task", ["db.lint", "db.apply", "db.reapply", "db.bench"])
@pytest.mark.parametrize(
    ("content", "start"),
    [
        (b"services:\n  postgres:\n    image: caf\xe9\n", "docker-compose.yml:3: not valid UTF-8"),
        (None, "docker-compose.yml is a directory"),
        (b"- postgres\n- other\n", "docker-compose.yml:1: the top level is a list"),
        (
            b"services:\n  postgres:\n    image: postgres:15\n   volumes: []\n",
            "docker-compose.yml:4:4: not valid YAML",
        ),
    ],
)
def test_compose_file_unusable_is_one_message_naming_it(ws, task, content, start):
    if content is None:
        ws.write("docker-compose.yml", None)
        (ws.root / "docker-compose.yml").mkdir()
    else:
        ws.write("docker-compose.yml", content)
    outcome = ws(task)
    assert_one_message(outcome, 1, start)
    assert "MIGRATION_PATH_UNSPECIFIED" not in outcome.text


def unclose_last_fence(ws) -> int:
    path = ws.root / SPEC
    lines = path.read_text(encoding="utf-8").split("\n")
    closing = max(i for i, line in enumerate(lines) if line.strip() == "```")
    opening = max(i for i, line in enumerate(lines[:closing]) if line.strip() == "```sql")
    del lines[closing]
    path.write_text("\n".join(lines), encoding="utf-8", newline="\n")
    return opening + 1


def test_unclosed_fence_gives_the_same_verdict_on_every_task_that_reads_the_spec(ws):
    line = unclose_last_fence(ws)
    start = f'{SPEC}:{line} (section "Optional objects"): the ```sql fence opened here is never closed'
    before = catalog.snapshot_of(ws.dsn)
    for task in ("db.lint", "db.apply", "db.reapply", "db.drift", "db.introspect", "db.bench", "db.reset"):
        assert_one_message(ws(task), 1, start)
    assert catalog.snapshot_of(ws.dsn) == before  # refused at load: nothing applied


def test_migrations_path_that_is_a_file_is_not_a_directory(ws):
    ws.write(MIGRATIONS, b"SELECT 1;\n")
    assert_one_message(
        ws("db.apply"),
        2,
        "MIGRATION_PATH_UNSPECIFIED: the declared migrations directory `api/db/migrations` is not",
    )


def test_migration_with_nul_byte_is_one_message(ws):
    path = f"{MIGRATIONS}/0007_invoices.sql"
    ws.write(path, (ws.pristine / path).read_bytes().replace(b"COMMIT;", b"SELECT '\0';\nCOMMIT;"))
    for task in ("db.lint", "db.apply"):
        outcome = ws(task)
        assert outcome.code == 1, str(outcome)
        assert "Traceback" not in outcome.text and "internal error" not in outcome.text, str(outcome)


def test_schema_dump_with_a_merge_conflict_or_a_directory_is_one_message(ws):
    dump = "api/db/schema.snapshot.json"
    text = (ws.pristine / dump).read_bytes()
    ws.write(dump, b"<<<<<<< HEAD\n" + text + b"=======\n>>>>>>> branch\n")
    for task in ("db.drift", "db.status"):
        outcome = ws(task)
        assert_one_message(outcome, 1, f"{dump} cannot be read (JSONDecodeError")
        assert "`invoke db.dump`" in outcome.err
    ws.write(dump, b"[]\n")  # JSON, another shape
    assert_one_message(ws("db.status"), 1, f"{dump} cannot be read (TypeError")
    ws.write(dump, None)
    (ws.root / dump).mkdir()
    assert_one_message(ws("db.dump"), 1, f"{ws.root / dump}: cannot be written")


# -- files that cannot be read or written: the user's environment, not a bug ----------------------


@pytest.mark.posix_only("switches the effective user: POSIX credentials")
@contextlib.contextmanager
def as_user(name: str) -> Iterator[None]:
    """This process's effective user and groups are ``name``'s for the block (it runs as root):
    files are then opened as that user would open them. Back to root afterwards."""
    import pwd

    entry = pwd.getpwnam(name)
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.mark.posix_only("runs the task as another user (effective uid): POSIX credentials")
def non_root(ws: Arena, task: str) -> Outcome:
    """``task`` as the unprivileged ``nobody`` (as root) or as the user the suite runs as."""
    if os.name != "posix" or os.geteuid() != 0:
        return ws(task)
    ws(task)  # once as root first: the task's modules are loaded (root's installs nobody cannot read)
    # invoke reads ~/.invoke.yaml; the user switched inside the runner, once in the copy (the
    # directory the test runs in may be one nobody may enter)
    return ws(task, env={"HOME": str(ws.root)}, patches=(as_user("nobody"),))


@pytest.mark.posix_only("chmod makes a directory unreadable; on Windows it sets an attribute only")
@pytest.mark.parametrize("what", ["directory", "file"])
def test_an_unreadable_migrations_directory_or_file_is_one_message(ws, what):
    directory = ws.root / MIGRATIONS
    target = directory if what == "directory" else directory / MIGRATION_NAMES[2]
    for way in (ws.root.parent, ws.root):  # the way there is open; only the target is closed
        way.chmod(0o755)
    target.chmod(0o000)
    try:
        outcome = non_root(ws, "db.lint")
    finally:
        target.chmod(0o755 if what == "directory" else 0o644)
        ws.root.parent.chmod(0o700)
    shown = MIGRATIONS if what == "directory" else f"{MIGRATIONS}/{MIGRATION_NAMES[2]}"
    refused = f'{shown}: rule "naming": cannot be read: Permission denied\n  next step: '
    assert_one_message(outcome, 1, refused)
    assert "next step: check its permissions (and those of the directories above it)" in outcome.err


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (
            ["db.status", "--json", "/dev/full"],
            "cannot write the status to /dev/full: No space left on device",
        ),
        (["db.erd", "--out", "/dev/full"], "cannot write the diagram to /dev/full: No space left on device"),
        (["db.introspect", "--json", "/dev/full"], "/dev/full: cannot be written: No space left on device"),
    ],
)
def test_output_to_a_full_disk_is_one_message(ws, argv, start):
    outcome = ws(*argv)
    assert_one_message(outcome, 1, start)


@pytest.mark.linux_only("sysfs refuses a new file even to root, though access() says it may")
def test_output_where_nothing_may_be_written_is_one_message(ws):
    outcome = ws("db.status", "--json", "/sys/kernel/leaddb-status.json")
    assert_one_message(
        outcome, 1, "cannot write the status to /sys/kernel/leaddb-status.json: Permission denied"
    )


def test_a_reports_directory_that_cannot_be_made_is_one_message_after_the_step_s_own(ws):
    """verify's reports go into reports/: a dangling link in its place cannot be made a
    directory. The step's own failure is still the one reported (the arena's database was not
    made by this tool, so the reset refuses), the reports' after it."""
    (ws.root / "reports").symlink_to(ws.root / "no" / "such" / "place")
    outcome = ws("db.verify")
    assert_one_message(outcome, 1, f"database {ws.dbname!r} on ")
    assert "note: cannot write the reports to reports: File exists" in outcome.out


@pytest.mark.linux_only("a read-only bind mount")
def test_a_read_only_checkout_reads_and_says_what_it_cannot_write(arena, tmp_path):
    """A checkout on a read-only mount (as root: permissions would not stop root): the tasks that
    only read work; each that writes into the checkout is one message naming the file."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("a bind mount needs root (CI is set: this test must run)", pytrace=False)
        pytest.skip("a bind mount needs root")
    root = tmp_path / "read-only"
    root.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(PROJECT_DIR / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(PROJECT_DIR / name, root / name)
    shutil.copy(PROJECT_DIR / "README.md", root / "README.md")
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True, timeout=60)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True, timeout=60)
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_DIR),
            "INVOKE_DB_BACKEND": "dsn",
            "INVOKE_DB_DSN": arena.dsn,
            "PYTHONDONTWRITEBYTECODE": "1",
        }

        def run(*argv: str) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [sys.executable, "-m", "invoke", *argv],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert "Traceback" not in done.stdout + done.stderr and "internal error" not in done.stderr, done
            return done

        tasks = load_tasks(root)  # the others in this process (tests/workspace.py), on the same mount

        def here(*argv: str) -> Outcome:
            done = Outcome(*run_task(root, tasks, arena.base_env, arena.tmp, *argv))
            assert "Traceback" not in done.text and "internal error" not in done.err, done
            return done

        assert here("db.lint").code == 0
        assert here("db.status").code == 0
        dump = run("db.dump")  # one as a user runs it
        assert dump.returncode == 1
        assert "api/db/schema.snapshot.json: cannot be written: Read-only file system" in dump.stderr
        erd = here("db.erd")
        assert erd.code == 1
        assert erd.err.startswith("cannot write the diagram to docs/schema.md: Read-only file system")
        assert "next step: the file system is read-only" in erd.err
        verify = here("db.verify")
        assert verify.code == 1
        assert verify.err.startswith(
            f"--report-dir (default {root / 'reports'}): the directory {root} is not writable"
        ), verify.err
    finally:
        subprocess.run(["umount", str(root)], check=False, timeout=60)


# -- Ctrl-C ------------------------------------------------------------------------------------

INTERRUPT_POINTS = {
    # db.lint: the reading runs every time; the parser only when the cached verdict misses
    "db.lint": [(compose, "load_service"), (Spec, "load"), (migrations, "read")],
    "db.apply": [(compose, "load_service"), (runner, "apply"), (psycopg, "connect")],
    "db.introspect": [(catalog, "snapshot_of"), (psycopg, "connect")],
    "db.drift": [(catalog, "snapshot"), (Spec, "load")],
}


@pytest.mark.parametrize(
    ("task", "target", "name"),
    [(task, target, name) for task, points in INTERRUPT_POINTS.items() for target, name in points],
)
def test_ctrl_c_anywhere_in_a_task_is_interrupted_exit_130(ws, task, target, name):
    with mock.patch.object(target, name, side_effect=KeyboardInterrupt):
        outcome = ws(task)
    assert_one_message(outcome, 130, f"interrupted: {task} stopped; ")
    assert "next step: " in outcome.err


def test_an_unexpected_exception_is_reported_as_a_bug_with_the_traceback_in_a_file(ws):
    with mock.patch.object(compose, "load_service", side_effect=RuntimeError("boom")):
        outcome = ws("db.lint")
    assert outcome.code == 1
    assert outcome.err.startswith("internal error in db.lint: RuntimeError: boom")
    assert "this is a bug in leaddb" in outcome.err and "Traceback" not in outcome.text
    report = Path(re.search(r"the full traceback is in (\S+)", outcome.err).group(1))
    assert report.parent == ws.tmp  # the arena's private temp directory, not the shared one
    try:
        text = report.read_text(encoding="utf-8")
        assert "Traceback" in text and "RuntimeError: boom" in text
    finally:
        report.unlink()


@pytest.mark.needs_pg_binaries
@pytest.mark.posix_only("Ctrl-C as a POSIX terminal sends it: SIGINT to a process group (killpg)")
def test_real_sigint_during_reset_is_interrupted_exit_130_and_reset_recovers(tmp_path, project_dir):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group, here while initdb
    writes the pristine cluster of a first reset."""
    root = tmp_path / "ws"
    root.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(project_dir / name, root / name)
    shutil.copytree(project_dir / "api", root / "api")
    state = Path(tempfile.mkdtemp(prefix="leaddb-inputs-sigint-", dir=scratch_root()))  # 0700, ours
    for path in (tmp_path, root):
        path.chmod(0o755)
    # a user of its own, without a pristine yet: the reset runs initdb (into the user's shared directory)
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "LEADDB_STATE_DIR": str(state),
        "INVOKE_DB_BACKEND": "local",
        "LEADDB_CACHE_DIR": str(cache / "leaddb"),
    }
    command = [sys.executable, "-m", "invoke"]

    def initdb_has_begun() -> bool:
        try:
            shared = Path(
                json.loads((cache / "leaddb" / "shared.json").read_text(encoding="utf-8"))["state_dir"]
            )
        except (OSError, ValueError, KeyError):
            return False
        return any(shared.glob(f"{tombstones.TOMBSTONE_PREFIX}*/data"))

    try:
        with open(tmp_path / "out.txt", "w+b") as out, open(tmp_path / "err.txt", "w+b") as err:
            process = subprocess.Popen(
                [*command, "db.reset"],
                cwd=root,
                env=env,
                stdout=out,  # the server it starts keeps running: never a pipe
                stderr=err,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
            )
            deadline = time.monotonic() + 120
            # initdb has begun writing the pristine cluster, in a tombstone the next reset clears
            while not initdb_has_begun() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert process.poll() is None, (tmp_path / "err.txt").read_text(encoding="utf-8")
            os.killpg(process.pid, signal.SIGINT)
            code = process.wait(timeout=120)
            err.seek(0)
            message = err.read().decode()
        assert code == 130, message
        assert message.startswith("interrupted: db.reset stopped; the local cluster may be half-created"), (
            message
        )
        assert "`invoke db.reset` recreates it" in message and "Traceback" not in message
        with open(tmp_path / "again.txt", "w+b") as again_err:
            again = subprocess.run(
                [*command, "db.reset"],
                cwd=root,
                env=env,
                timeout=300,
                stdout=subprocess.DEVNULL,
                stderr=again_err,  # the server it starts keeps running: never a pipe
            )
        assert again.returncode == 0, (tmp_path / "again.txt").read_text(encoding="utf-8", errors="replace")
    finally:
        subprocess.run(
            [*command, "db.down"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        shutil.rmtree(state, ignore_errors=True)
        with pytest.MonkeyPatch.context() as patch:  # the shared pristine of that user
            patch.setenv("LEADDB_CACHE_DIR", str(cache / "leaddb"))
            remove_everything(lambda line: None)


# -- DSNs ------------------------------------------------------------------------------------


def _dsn(arena: Arena, **changes) -> str:
    params = {**conninfo_to_dict(arena.dsn), **changes}
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


@pytest.mark.parametrize(
    ("change", "task", "start", "hint"),
    [
        ({"password": "wrong-s3kr1t"}, "db.apply", "cannot connect to ", "check the user and password"),
        ({"port": "1"}, "db.apply", "cannot connect to ", "server runs and listens on that host and port"),
        ({"host": "nonexistent.invalid"}, "db.drift", "cannot connect to ", "check the host name"),
        (
            {"dbname": "inputs_no_such_db"},
            "db.apply",
            "cannot connect to ",
            "`invoke db.reset --backend dsn` creates",
        ),
        ({"dbname": "inputs_no_such_db"}, "db.introspect", "cannot connect to ", "creates database"),
        ({"port": "abc"}, "db.apply", "cannot connect to ", "the DSN is right"),
    ],
)
def test_dsn_that_cannot_connect_is_one_message_with_the_password_masked(ws, change, task, start, hint):
    outcome = ws(task, "--backend", "dsn", "--dsn", _dsn(ws, **change))
    assert_one_message(outcome, 1, start)
    assert hint in outcome.err
    assert "s3kr1t" not in outcome.text and ws.dsn.split("password=")[1].split()[0] not in outcome.text


def test_dsn_role_without_rights_is_one_message_per_task(ws):
    outcome = ws("db.apply", "--backend", "dsn", "--dsn", ws.weak_dsn)
    assert_one_message(outcome, 1, "api/db/migrations/")
    assert "[SQLSTATE 42501]" in outcome.err and "lacks this privilege" in outcome.err
    for dbname in (conninfo_to_dict(ws.dsn)["dbname"], "inputs_never_created"):
        outcome = ws(
            "db.reset", "--backend", "dsn", "--dsn", make_conninfo(ws.weak_dsn, dbname=dbname), "--force"
        )
        assert_one_message(outcome, 1, "role 'inputs_weak_")
        assert "may not create databases" in outcome.err and "nothing was changed" in outcome.err
        assert "ALTER ROLE" in outcome.err and "weak-password" not in outcome.text
    # drift reads only; it needs a scratch database (CREATEDB) unless the spec's schema is cached
    outcome = ws("db.drift", "--backend", "dsn", "--dsn", ws.weak_dsn)
    if outcome.code != 0:
        assert_one_message(outcome, 1, "cannot create a scratch database for the spec step")
    else:  # the spec's schema came from the cache: the check ran and found the database as the spec
        assert "Traceback" not in outcome.text and "SCHEMA_DRIFT" not in outcome.text, outcome


# -- the property: generated bad inputs of every kind ----------------------------------------

TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
junk = st.text(TEXT, max_size=12)
COMPOSE_TEXT = (PROJECT_DIR / "docker-compose.yml").read_text(encoding="utf-8")
SPEC_TEXT = (PROJECT_DIR / SPEC).read_text(encoding="utf-8")
MIGRATION_NAMES = sorted(p.name for p in (PROJECT_DIR / MIGRATIONS).glob("*.sql"))
TASKS_WITH_BACKEND = ["db.apply", "db.reapply", "db.drift", "db.introspect", "db.dump", "db.reset", "db.down"]


@dataclass
class Case:
    kind: str
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, bytes | None] = field(default_factory=dict)
    codes: set[int] = field(default_factory=lambda: set(DOCUMENTED_EXIT_CODES))
    starts: tuple[str, ...] = ()  # on failure, the message starts with one of these
    interrupt: tuple | None = None


WHOLE = re.compile(r"\s*[+-]?\d+\s*")  # what --runs and --scale accept, as int() reads it
MAX_SCALE = 100_000


def _valid_count(text: str) -> bool:
    return bool(WHOLE.fullmatch(text)) and int(text) >= 1


def _valid_sizes(text: str) -> bool:
    return all(WHOLE.fullmatch(e) and 1 <= int(e) <= MAX_SCALE for e in text.split(","))


bad_count = st.one_of(
    junk,
    st.integers(-(10**6), 0).map(str),
    st.floats().map(repr),
    st.sampled_from(["abc", "1.5", "0", "-3", "1e3"]),
).filter(lambda v: not _valid_count(v))
size_entry = st.one_of(st.integers(1, 10**6).map(str), st.integers(-100, 0).map(str), junk, st.just(""))
bad_sizes = st.lists(size_entry, min_size=1, max_size=4).map(",".join).filter(lambda v: not _valid_sizes(v))
SECONDS = re.compile(r"\s*[0-9]+(?:\.[0-9]+)?\s*(?:ms|s|min|h)?\s*", re.IGNORECASE)
bad_seconds = st.one_of(
    junk,
    st.integers(-(10**6), -1).map(str),
    st.integers(86_401, 10**9).map(str),
    st.sampled_from(["1e3", "nan", "inf", "2d", "1,5", "-0.5", "30 sec", "5m"]),
).filter(lambda v: v.strip() and not (SECONDS.fullmatch(v) and float(re.sub(r"[^0-9.]", "", v)) <= 86_400))
bad_backend = st.one_of(
    st.text(TEXT, min_size=1, max_size=12), st.sampled_from(["Nonsense", "postgres", "dockr", "dsn2"])
).filter(lambda v: v.strip().lower() not in (*NAMES, ""))


@st.composite
def flag_cases(draw) -> Case:
    task = draw(
        st.sampled_from(
            ["db.bench", "db.verify", "db.introspect", "db.status", "db.erd", *TASKS_WITH_BACKEND]
        )
    )
    bad = {"--backend": bad_backend}
    if task in ("db.apply", "db.reapply", "db.reset", "db.bench", "db.verify"):
        bad |= {"--lock-timeout": bad_seconds, "--statement-timeout": bad_seconds}
    if task == "db.bench":
        bad |= {"--runs": bad_count, "--scale": bad_sizes, "--json": BAD_JSON}
    if task == "db.verify":
        bad |= {"--bench-runs": bad_count, "--report-dir": BAD_DIR}
    if task in ("db.introspect", "db.status"):
        bad |= {"--json": BAD_JSON}
    if task == "db.erd":  # it creates missing directories: only a file in the way, or a directory, is bad
        bad |= {"--out": BAD_CREATED, "--svg": BAD_CREATED}
    flags = draw(st.lists(st.sampled_from(sorted(bad)), min_size=1, max_size=len(bad), unique=True))
    argv = [task]
    for flag in flags:
        argv.append(f"{flag}={draw(bad[flag])}")
    return Case("flags", argv, codes={1}, starts=tuple(flags))


# paths inside the workspace, filled in when the case runs: ROOT is the workspace copy
BAD_JSON = st.sampled_from(["ROOT/missing/out.json", "ROOT", "ROOT/tasks.py/out.json", "", "ROOT/api/"])
BAD_DIR = st.sampled_from(["ROOT/tasks.py", "ROOT/tasks.py/sub", ""])
BAD_CREATED = st.sampled_from(["ROOT/tasks.py/x.md", "ROOT/api", "ROOT/tasks.py/a/b.svg", ""])


@st.composite
def environment_cases(draw) -> Case:
    variable = draw(
        st.sampled_from(
            ["INVOKE_DB_BACKEND", "INVOKE_DB_DSN", "LEADDB_DOCKER_BOOT_TIMEOUT"]
            + ["POSTGRES_PORT", "POSTGRES_IMAGE", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"]
            + ["COMPOSE_PROJECT_NAME"]
        )
    )
    if variable == "INVOKE_DB_BACKEND":
        task = draw(st.sampled_from(TASKS_WITH_BACKEND))
        return Case("env", [task], {variable: draw(bad_backend)}, codes={1}, starts=(variable,))
    if variable == "INVOKE_DB_DSN":
        value = draw(junk.filter(_unparsable))
        return Case(
            "env", ["db.apply"], {variable: value, "INVOKE_DB_BACKEND": "auto"}, codes={1}, starts=(variable,)
        )
    if variable == "LEADDB_DOCKER_BOOT_TIMEOUT":
        value = draw(st.one_of(junk, st.sampled_from(["0", "-1", "nan", "inf"])).filter(_bad_timeout))
        return Case(
            "env",
            ["db.apply"],
            {variable: value, "INVOKE_DB_BACKEND": "docker"},
            codes={1},
            starts=(variable,),
        )
    value = draw(
        st.one_of(junk, st.sampled_from(["5433 # c", "${X}", "$", "${", "abc", "65536", "0", "x:y"]))
    )
    return Case("env", ["db.lint"], {variable: value}, codes={0, 1}, starts=("docker-compose.yml:",))


def _unparsable(text: str) -> bool:
    if not text.strip():
        return False
    try:
        conninfo_to_dict(text)
    except psycopg.Error:
        return True
    return False


def _bad_timeout(text: str) -> bool:
    if not text:
        return False
    try:
        return not 0 < float(text) < float("inf")
    except ValueError:
        return True


dotenv_piece = st.one_of(
    st.sampled_from(
        [
            "5433",
            "postgres:15",
            "x y",
            " # c",
            "#",
            "'",
            '"',
            "${",
            "}",
            "${POSTGRES_PORT}",
            "${X:-d}",
            "${X:?m}",
        ]
        + ["$$", "\\", "\\n", ":", "=", "\n", "\r\n", " ", "\t", "${X:+y}", "$X"]
    ),
    st.text(TEXT, max_size=5),
)
dotenv_key = st.one_of(
    st.sampled_from(
        ["POSTGRES_PORT", "POSTGRES_IMAGE", "POSTGRES_DB", "POSTGRES_PASSWORD", "COMPOSE_PROJECT_NAME"]
    ),
    st.text(TEXT, max_size=6),
)
dotenv_line = st.tuples(
    st.sampled_from(["", "export ", "  ", "#"]),
    dotenv_key,
    st.sampled_from(["=", " = ", "", "=="]),
    st.lists(dotenv_piece, max_size=4).map("".join),
).map("".join)


@st.composite
def dotenv_cases(draw) -> Case:
    if draw(st.booleans()):
        content = "\n".join(draw(st.lists(dotenv_line, min_size=1, max_size=4))).encode("utf-8")
    else:
        content = draw(st.binary(max_size=30))
    return Case(
        ".env", ["db.lint"], files={".env": content}, codes={0, 1, 2}, starts=(".env", "docker-compose.yml")
    )


def _mutate_lines(draw, text: str, pieces: list[str]) -> bytes:
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "indent", "truncate", "value", "bytes"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        piece = draw(st.one_of(st.sampled_from(pieces), st.text(TEXT, max_size=20)))
        if op == "delete" and lines:
            del lines[i]
        elif op == "insert":
            lines.insert(i, piece)
        elif op == "replace" and lines:
            lines[i] = piece
        elif op == "indent" and lines:
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
        elif op == "truncate":
            joined = "\n".join(lines)
            lines = joined[: draw(st.integers(0, len(joined)))].split("\n")
        elif op == "value" and lines and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + piece
    data = "\n".join(lines).encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]
    return data


COMPOSE_PIECES = [
    "- 5432",
    "ports: 5432",
    "  postgres: []",
    "services: []",
    "- a:b:c:d",
    "{",
    "[",
    "'",
    "&a",
    "*a",
    "<<: *a",
    "image: ${X:?need}",
    "${",
    "!!binary x",
    "- ./api/db/migrations:/docker-entrypoint-initdb.d:ro",
    "volumes: {pgdata: {name: [1]}}",
    "healthcheck: {interval: x}",
    "command: \"'",
    "\t",
    "---",
    "name: '!!'",
]


@st.composite
def compose_cases(draw) -> Case:
    if draw(st.integers(0, 4)) == 0:
        value = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | junk,
                lambda c: st.lists(c, max_size=3) | st.dictionaries(junk, c, max_size=3),
                max_leaves=8,
            )
        )
        content = yaml.safe_dump(value).encode("utf-8")
    else:
        content = _mutate_lines(draw, COMPOSE_TEXT, COMPOSE_PIECES)
    return Case(
        "compose",
        ["db.lint"],
        files={"docker-compose.yml": content},
        codes={0, 1, 2},
        starts=("docker-compose.yml", "MIGRATION_PATH_UNSPECIFIED", ".env", "api/db/migrations"),
    )


SPEC_PIECES = [
    "```",
    "```sql",
    "~~~",
    "````",
    "- Migrations directory: `api`",
    "- Migrations directory: `x`",
    "| p50 | x |",
    "| p95 | -1 |",
    "## Migrations: directory and tooling",
    "-- migration: x.sql",
    "> ```",
]


@st.composite
def spec_cases(draw) -> Case:
    content = _mutate_lines(draw, SPEC_TEXT, SPEC_PIECES)
    task = draw(st.sampled_from(["db.lint", "db.apply"]))
    return Case("spec", [task], files={SPEC: content}, codes={0, 1, 2})


SQL_PIECES = [
    "SELECT 1;",
    "CREATE TABLE IF NOT EXISTS inputs_t (a int);",
    "BEGIN;",
    "COMMIT;",
    "ROLLBACK;",
    "\\i x",
    "SELECT 'unterminated",
    "$$",
    "/*",
    "DROP TABLE IF EXISTS inputs_t;",
    "SELECT 1/0;",
    "SET search_path = nowhere;",
    "DO $$ BEGIN RAISE EXCEPTION 'x'; END $$;",
    "-- migration: other.sql",
    "SELECT E'\\\\x00';",
    "\ufeff",
]


@st.composite
def migration_cases(draw) -> Case:
    name = draw(st.sampled_from(MIGRATION_NAMES))
    path = f"{MIGRATIONS}/{name}"
    op = draw(st.sampled_from(["mutate", "mutate", "delete", "rename", "extra", "crlf", "bom", "binary"]))
    text = (PROJECT_DIR / path).read_text(encoding="utf-8")
    files: dict[str, bytes | None] = {}
    if op == "mutate":
        files[path] = _mutate_lines(draw, text, SQL_PIECES)
    elif op == "delete":
        files[path] = None
    elif op == "rename":
        files[path] = None
        files[f"{MIGRATIONS}/{draw(st.text(TEXT, min_size=1, max_size=12).filter(_file_name))}"] = (
            text.encode()
        )
    elif op == "extra":
        extra = draw(
            st.sampled_from([f"{len(MIGRATION_NAMES) + 1:04d}_extra.sql", "0099_gap.sql", "notes.txt"])
        )
        files[f"{MIGRATIONS}/{extra}"] = _mutate_lines(draw, "BEGIN;\nSELECT 1;\nCOMMIT;\n", SQL_PIECES)
    elif op == "crlf":
        files[path] = text.replace("\n", "\r\n").encode()
    elif op == "bom":
        files[path] = b"\xef\xbb\xbf" + text.encode()
    else:
        files[path] = draw(st.binary(max_size=40))
    task = draw(st.sampled_from(["db.lint", "db.apply"]))
    return Case("migrations", [task], files=files, codes={0, 1, 2, 4})


def _file_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and text not in (".", "..") and len(text.encode()) < 200


@st.composite
def dsn_cases(draw) -> Case:
    task = draw(st.sampled_from(["db.apply", "db.reapply", "db.drift"]))
    form = draw(st.sampled_from(["junk", "params"]))
    if form == "junk":
        return Case(
            "dsn",
            [task, "--backend", "dsn", "--dsn", draw(junk.filter(_unparsable))],
            codes={1},
            starts=("--dsn",),
        )
    change = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "host": st.sampled_from(["127.0.0.1", "localhost", "127.0.0.2"]),
                "port": st.sampled_from(["1", "0", "abc", "65536", "-1"]),
                "password": st.sampled_from(["wrong", "", "x y"]),
                "user": st.sampled_from(["ghost", "WEAK"]),
                "dbname": st.sampled_from(["inputs_no_such_db", ""]),
                "sslmode": st.sampled_from(["require", "bogus"]),
                "connect_timeout": st.sampled_from(["abc", "-5", "1.5"]),
                "target_session_attrs": st.sampled_from(["bogus", "read-only"]),
                "load_balance_hosts": st.sampled_from(["bogus", "random"]),
                "options": st.sampled_from(["-c statement_timeout=x", "-c search_path=nowhere"]),
            },
        ).filter(bool)  # never exactly our DSN: a valid run of db.drift costs seconds
    )
    return Case("dsn", [task, "--backend", "dsn", "--dsn", f"PARAMS:{change!r}"], codes={0, 1, 3, 4})


@st.composite
def interrupt_cases(draw) -> Case:
    task = draw(st.sampled_from(sorted(INTERRUPT_POINTS)))
    target = draw(st.sampled_from(INTERRUPT_POINTS[task]))
    return Case("ctrl-c", [task], codes={130}, starts=(f"interrupted: {task} stopped",), interrupt=target)


def _run(arena: Arena, case: Case) -> Outcome:
    argv = [arg.replace("ROOT", str(arena.root)) for arg in case.argv]
    for i, arg in enumerate(argv):
        if arg.startswith("PARAMS:"):
            change = eval(arg.removeprefix("PARAMS:"))  # noqa: S307 - our own repr of a dict of strings
            if change.get("user") == "WEAK":
                base = conninfo_to_dict(arena.weak_dsn)
                change = {
                    **change,
                    "user": base["user"],
                    "password": change.get("password", base["password"]),
                }
            argv[i] = _dsn(arena, **{k: (v or None) if k == "dbname" else v for k, v in change.items()})
    for relative, content in case.files.items():
        arena.write(relative, content)
    shown = [re.sub(r"password=\S+", "password=***", arg) for arg in argv]
    note(
        f"argv={shown!r} env={case.env!r} files={ {k: (v[:300] if v else v) for k, v in case.files.items()} }"
    )
    if case.interrupt:
        with mock.patch.object(*case.interrupt, side_effect=KeyboardInterrupt):
            return arena(*argv, env=case.env)
    return arena(*argv, env=case.env)


PROPERTY = settings(
    max_examples=int(os.environ.get("LEADDB_INPUT_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@PROPERTY
@given(
    case=st.one_of(
        flag_cases(),
        environment_cases(),
        dotenv_cases(),
        compose_cases(),
        spec_cases(),
        migration_cases(),
        dsn_cases(),
        interrupt_cases(),
    )
)
@example(case=Case("flags", ["db.bench", "--runs=abc"], codes={1}, starts=("--runs",)))
@example(case=Case(".env", ["db.lint"], files={".env": b"POSTGRES_PORT=5433 # my override\n"}, codes={0}))
def test_no_input_ends_in_a_traceback(arena, case):
    arena.restore()
    outcome = _run(arena, case)
    note(str(outcome))
    assert outcome.code in DOCUMENTED_EXIT_CODES
    assert "Traceback" not in outcome.text
    assert "internal error" not in outcome.text
    assert outcome.code in case.codes
    if outcome.code != 0 and case.starts:
        assert outcome.err.startswith(case.starts)
    if outcome.code != 0:
        assert outcome.err.strip(), "a failure says why"
    arena.check_nothing_else_changed()
