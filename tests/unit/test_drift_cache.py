"""The per-user cache of drift's expected snapshot, without a server: what keys an entry, when
an entry is read back, and what ``cached_expected_snapshot`` says it did. The server's own
part (``drift.server_key``, ``drift.expected_snapshot``) is stood in for; tests/test_drift.py
holds them against a live server. What those two do with the server's answers (which database
gets the spec's SQL, what a failure says, the key's names) is held here at their seams."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from leaddb import cache, catalog, drift, janitor
from leaddb.catalog import CatalogObject, Snapshot
from leaddb.errors import MigrationError, SpecError
from leaddb.spec import Spec

PROJECT = Path(__file__).resolve().parents[2]
SPEC = "Technical-Architecture-Specification.md"
SERVER = {"version": "PostgreSQL 15.0", "timezone": "UTC"}


def spec_with(tmp_path: Path, change=lambda text: text) -> Spec:
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.md"
    path.write_text(change((PROJECT / SPEC).read_text(encoding="utf-8")), encoding="utf-8", newline="\n")
    return Spec.load(path)


def snapshot(value: str = "v1") -> Snapshot:
    return Snapshot({("table", "t"): CatalogObject("table", "t", (("definition", value),))})


# -- keys -------------------------------------------------------------------------------------


def test_the_spec_key_is_the_migration_blocks_names_and_sql(tmp_path):
    spec = spec_with(tmp_path)
    blocks = spec.blocks_of("migration")
    assert len(blocks) == 7
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(f"{block.name}\0{block.sql}\0".encode())
    assert drift.spec_key(spec) == digest.hexdigest()


def test_the_spec_key_follows_the_migration_sql_only(tmp_path):
    key = drift.spec_key(spec_with(tmp_path))
    assert drift.spec_key(spec_with(tmp_path)) == key  # the same spec, the same key
    prose = spec_with(tmp_path, lambda t: t.replace("## ", "## The ", 1))
    assert drift.spec_key(prose) == key  # prose is not what the scratch database gets
    sql = spec_with(
        tmp_path,
        lambda t: t.replace(
            "CREATE TABLE IF NOT EXISTS markets (", "CREATE TABLE IF NOT EXISTS markets  (", 1
        ),
    )
    assert drift.spec_key(sql) != key
    renamed = spec_with(
        tmp_path,
        lambda t: t.replace(
            "-- migration: api/db/migrations/0002_enums.sql",
            "-- migration: api/db/migrations/0002_types.sql",
            1,
        ),
    )
    assert drift.spec_key(renamed) != key


def test_a_cache_key_holds_format_spec_catalog_code_and_server(tmp_path):
    spec = spec_with(tmp_path)
    assert drift.cache_key(spec, SERVER) == {
        "format": drift.CACHE_FORMAT,
        "spec": drift.spec_key(spec),
        "catalog": catalog.fingerprint(),
        "server": SERVER,
    }
    assert drift.CACHE_FORMAT == 1


def test_no_cache_key_when_the_catalog_code_cannot_be_read(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "fingerprint", lambda: None)
    assert drift.cache_key(spec_with(tmp_path), SERVER) is None


# -- an entry read back ---------------------------------------------------------------------

KEY = {"format": 1, "spec": "s", "catalog": "c", "server": SERVER}


def test_an_entry_is_read_back_only_under_its_own_key():
    text = json.dumps({"key": KEY, "snapshot": snapshot().to_data()})
    assert drift._cached(text, KEY) == snapshot()
    assert drift._cached(text, {**KEY, "spec": "other"}) is None


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        "null",
        json.dumps({"snapshot": {}}),
        json.dumps({"key": KEY}),
        json.dumps({"key": KEY, "snapshot": []}),
        json.dumps({"key": KEY, "snapshot": {"objects": None}}),
    ],
)
def test_an_entry_of_another_shape_is_a_miss(text):
    assert drift._cached(text, KEY) is None


# -- cached_expected_snapshot -----------------------------------------------------------------


class Backend:
    """Only what the cache asks of a backend: where its maintenance database is."""

    def conninfo(self, dbname: str | None = None) -> str:
        return f"dbname={dbname}"


class Built(list):
    """Each build of the expected snapshot (the backend's maintenance conninfo), and what the
    server says its key is (a test may change it)."""

    server: dict[str, str]


@pytest.fixture
def built(monkeypatch, tmp_path) -> Built:
    """The server stood in for: its key, and the expected snapshot built on it (counted)."""
    monkeypatch.setenv("LEADDB_CACHE_DIR", str(tmp_path / "cache"))
    calls = Built()
    calls.server = dict(SERVER)

    def expected(spec, backend):
        calls.append((spec, backend.conninfo("postgres")))
        return snapshot()

    def server_key(conninfo):
        assert conninfo == "dbname=postgres"  # asked of the maintenance database
        return dict(calls.server)

    monkeypatch.setattr(drift, "server_key", server_key)
    monkeypatch.setattr(drift, "expected_snapshot", expected)
    return calls


def entries() -> list[Path]:
    return sorted(cache.directory().glob(drift.CACHE_ENTRIES))


def test_built_once_then_read_from_the_cache(built, tmp_path):
    spec = spec_with(tmp_path)
    first = drift.cached_expected_snapshot(spec, Backend())
    assert (first.snapshot, first.source) == (snapshot(), "built and cached")
    assert built == [(spec, "dbname=postgres")]
    (entry,) = entries()
    key = drift.cache_key(spec, SERVER)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    assert entry.name == f"drift-expected-{name}.json"
    written = entry.read_text(encoding="utf-8")
    assert written.endswith("}\n") and json.loads(written) == {"key": key, "snapshot": snapshot().to_data()}
    assert written.startswith('{\n "key"')  # indented by one, keys sorted
    assert list(json.loads(written)["key"]) == ["catalog", "format", "server", "spec"]
    second = drift.cached_expected_snapshot(spec, Backend())
    assert (second.snapshot, second.source) == (snapshot(), "from the cache")
    assert len(built) == 1  # not built again


def test_another_server_or_spec_builds_again(built, tmp_path):
    spec = spec_with(tmp_path)
    drift.cached_expected_snapshot(spec, Backend())
    built.server["version"] = "PostgreSQL 15.1"
    assert drift.cached_expected_snapshot(spec, Backend()).source == "built and cached"
    other = spec_with(
        tmp_path,
        lambda t: t.replace(
            "CREATE TABLE IF NOT EXISTS markets (", "CREATE TABLE IF NOT EXISTS markets  (", 1
        ),
    )
    assert drift.cached_expected_snapshot(other, Backend()).source == "built and cached"
    assert len(built) == 3 and len(entries()) == 3


def test_a_broken_entry_is_built_again_and_replaced(built, tmp_path):
    spec = spec_with(tmp_path)
    drift.cached_expected_snapshot(spec, Backend())
    (entry,) = entries()
    entry.write_text("{broken", encoding="utf-8", newline="\n")
    assert drift.cached_expected_snapshot(spec, Backend()).source == "built and cached"
    assert drift._cached(entry.read_text(encoding="utf-8"), drift.cache_key(spec, SERVER)) == snapshot()


def test_the_newest_entries_are_kept(built, tmp_path):
    spec = spec_with(tmp_path)
    for number in range(drift.CACHE_KEEP + 3):
        built.server["version"] = f"PostgreSQL 15.{number}"
        drift.cached_expected_snapshot(spec, Backend())
        newest = max(entries(), key=lambda p: os.lstat(p).st_mtime_ns)
        os.utime(newest, ns=(number * 10**9, number * 10**9))  # written in this order
    assert len(entries()) == drift.CACHE_KEEP == 16
    kept = {json.loads(p.read_text(encoding="utf-8"))["key"]["server"]["version"] for p in entries()}
    assert kept == {f"PostgreSQL 15.{n}" for n in range(3, drift.CACHE_KEEP + 3)}


def test_without_a_cache_directory_it_is_built_and_said_why(built, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file", encoding="utf-8", newline="\n")
    monkeypatch.setenv("LEADDB_CACHE_DIR", str(blocker / "leaddb"))
    spec = spec_with(tmp_path)
    found = drift.cached_expected_snapshot(spec, Backend())
    assert found.snapshot == snapshot()
    assert found.source.startswith(
        f"built; not cached: cannot create the private directory {blocker / 'leaddb'}"
    )
    assert built == [(spec, "dbname=postgres")]


def test_a_server_that_cannot_say_its_key_is_built_on_and_not_cached(built, tmp_path, monkeypatch):
    def unreachable(conninfo):
        raise psycopg.OperationalError("no server")

    monkeypatch.setattr(drift, "server_key", unreachable)
    spec = spec_with(tmp_path)
    found = drift.cached_expected_snapshot(spec, Backend())
    assert (found.snapshot, found.source) == (snapshot(), "built")
    assert built == [(spec, "dbname=postgres")]
    assert entries() == []


def test_unreadable_catalog_code_is_built_and_said(built, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "fingerprint", lambda: None)
    spec = spec_with(tmp_path)
    found = drift.cached_expected_snapshot(spec, Backend())
    assert (found.snapshot, found.source) == (snapshot(), "built; not cached: the catalog code is unreadable")
    assert built == [(spec, "dbname=postgres")]
    assert entries() == []


def test_a_snapshot_json_cannot_carry_is_never_cached(built, tmp_path, monkeypatch):
    odd = Snapshot({("table", "t"): CatalogObject("table", "t", (("definition", frozenset({1})),))})
    monkeypatch.setattr(drift, "expected_snapshot", lambda spec, backend: odd)
    found = drift.cached_expected_snapshot(spec_with(tmp_path), Backend())
    assert (found.snapshot, found.source) == (odd, "built; not cached: the snapshot does not survive JSON")
    assert entries() == []


def test_an_entry_that_cannot_be_written_is_said(built, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "write", lambda path, text: False)
    found = drift.cached_expected_snapshot(spec_with(tmp_path), Backend())
    assert found.source == f"built; not cached: cannot write in {cache.directory()}"


# -- the server's part, at its seams ----------------------------------------------------------


@pytest.fixture
def seams(monkeypatch) -> list:
    """The scratch database janitor makes, and the catalog's snapshot of a database: recorded."""
    calls = []

    @contextmanager
    def scratch_database(conninfo, *, purpose, template=None):
        calls.append(("made", conninfo, purpose, template))
        try:
            yield "leaddb_scratch_1"
        finally:  # as janitor's: dropped however the block ends
            calls.append(("dropped", "leaddb_scratch_1"))

    def snapshot_of(conninfo):
        calls.append(("snapshot", conninfo))
        return snapshot("expected")

    monkeypatch.setattr(janitor, "scratch_database", scratch_database)
    monkeypatch.setattr(catalog, "snapshot_of", snapshot_of)
    return calls


class Applying(Backend):
    def __init__(self, calls: list, error: Exception | None = None) -> None:
        self.calls, self.error = calls, error

    def apply(self, migrations, *, dbname=None):
        self.calls.append(("applied", list(migrations), dbname))
        if self.error:
            raise self.error


def test_the_expected_snapshot_is_the_specs_sql_applied_to_a_scratch_database(seams, tmp_path):
    spec = spec_with(tmp_path)
    assert drift.expected_snapshot(spec, Applying(seams)) == snapshot("expected")
    assert seams == [
        ("made", "dbname=postgres", "spec", None),  # from template0, on the maintenance database
        ("applied", drift.spec_migrations(spec), "leaddb_scratch_1"),
        ("snapshot", "dbname=leaddb_scratch_1"),  # taken before the scratch database is dropped
        ("dropped", "leaddb_scratch_1"),
    ]


def test_a_spec_whose_own_sql_fails_is_a_spec_error_saying_why(seams, tmp_path):
    failure = MigrationError('0001_core.sql line 3: relation "nowhere" does not exist')
    with pytest.raises(SpecError) as caught:
        drift.expected_snapshot(spec_with(tmp_path), Applying(seams, failure))
    assert caught.value.detail == f"the spec's own SQL does not apply: {failure.detail}"
    assert caught.value.hint == "fix the spec block"
    assert caught.value.__suppress_context__  # one message, not the runner's traceback beneath it
    assert [c[0] for c in seams] == ["made", "applied", "dropped"]  # nothing snapshotted


def test_the_server_key_is_the_servers_answer_by_column(monkeypatch):
    asked = []

    class Column:
        def __init__(self, name: str) -> None:
            self.name = name

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            asked.append("closed")

        def execute(self, query):
            asked.append(query)
            self.description = [Column("version"), Column("timezone")]
            return self

        def fetchone(self):
            return ("PostgreSQL 15.0", "UTC")

    def maintenance(conninfo):
        asked.append(conninfo)
        return Connection()

    monkeypatch.setattr(janitor, "maintenance", maintenance)
    assert drift.server_key("dbname=postgres") == SERVER
    assert asked == ["dbname=postgres", drift.SERVER_KEY, "closed"]
