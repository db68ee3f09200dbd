"""Drift: any single change of an object in a migration is caught and named, and nothing else is."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from leaddb import catalog, drift, permissions, rules, runner, statedir
from leaddb.catalog import Snapshot
from leaddb.migrations import Migration
from leaddb.spec import SPEC_FILENAME, Spec


@pytest.fixture(scope="session")
def spec(project_dir) -> Spec:
    return Spec.load(project_dir / SPEC_FILENAME)


@pytest.fixture(scope="session")
def expected(server, spec) -> Snapshot:
    return drift.expected_snapshot(spec, server)


@pytest.fixture
def applied(fresh_db, migration_files):
    """Apply the repo's migrations with one textual change to one file; return the live snapshot."""

    def apply(filename: str, old: str, new: str) -> Snapshot:
        files = []
        for m in migration_files:
            text = m.text
            if m.name == filename:
                assert old in text, f"mutation target not found in {filename}: {old!r}"
                text = text.replace(old, new)
            files.append(Migration(m.path, m.number, text))
        db = fresh_db(None)
        runner.apply(db, files)
        return catalog.snapshot_of(db)

    return apply


def changes(live: Snapshot, expected: Snapshot) -> list[tuple[str, str, str]]:
    return [(d.kind, d.name, d.change) for d in drift.diff(live, expected)]


def test_clean_schema_has_no_drift(applied, expected):
    assert changes(applied("0001_extensions.sql", "", ""), expected) == []


MUTATIONS = [
    pytest.param(
        "0006_leads.sql",
        "CREATE INDEX IF NOT EXISTS leads_status_received_at_idx\n    ON leads (status, received_at);",
        "",
        ("index", "leads_status_received_at_idx", "missing"),
        id="index dropped",
    ),
    pytest.param(
        "0006_leads.sql",
        "COMMIT;",
        "CREATE INDEX leads_email_idx ON leads (email);\nCOMMIT;",
        ("index", "leads_email_idx", "extra"),
        id="index added",
    ),
    pytest.param(
        "0006_leads.sql",
        "WHERE billing_status = 'billable'",
        "WHERE billing_status = 'invoiced'",
        ("index", "leads_billable_buyer_idx", "changed"),
        id="index predicate",
    ),
    pytest.param(
        "0002_enums.sql",
        "'received', 'validated', 'rejected', 'duplicate'",
        "'received', 'validated', 'duplicate', 'rejected'",
        ("enum", "lead_status", "changed"),
        id="enum label order",
    ),
    pytest.param(
        "0006_leads.sql",
        "first_name           text,",
        "first_name           varchar(100),",
        ("column", "leads.first_name", "changed"),
        id="column type",
    ),
    pytest.param(
        "0006_leads.sql",
        "first_name           text,",
        "first_name           text, middle_name text,",
        ("column", "leads.middle_name", "extra"),
        id="column added",
    ),
    pytest.param(
        "0007_invoices.sql",
        "CHECK (quantity > 0)",
        "CHECK (quantity >= 0)",
        ("constraint", "invoice_line_items.invoice_line_items_quantity_check", "changed"),
        id="check definition",
    ),
    pytest.param(
        "0007_invoices.sql",
        "REFERENCES invoices (id, buyer_id, currency) ON DELETE CASCADE",
        "REFERENCES invoices (id, buyer_id, currency) ON DELETE RESTRICT",
        ("constraint", "invoice_line_items.invoice_line_items_invoice_fkey", "changed"),
        id="on delete action",
    ),
]


@pytest.mark.parametrize(("filename", "old", "new", "expected_change"), MUTATIONS)
def test_single_change_is_named_and_nothing_else(applied, expected, filename, old, new, expected_change):
    assert changes(applied(filename, old, new), expected) == [expected_change]


def test_missing_table_is_named_once_not_with_every_column(applied, expected, migration_files):
    text = next(m.text for m in migration_files if m.name == "0007_invoices.sql")
    table = text[text.index("CREATE TABLE IF NOT EXISTS invoice_line_items") : text.index("COMMIT;")]
    assert changes(applied("0007_invoices.sql", table, ""), expected) == [
        ("table", "invoice_line_items", "missing")
    ]


def test_changed_object_shows_both_definitions(applied, expected):
    live = applied("0007_invoices.sql", "CHECK (quantity > 0)", "CHECK (quantity >= 0)")
    (difference,) = drift.diff(live, expected)
    text = difference.describe()
    assert "definition differs" in text
    assert "live: CHECK (quantity >= 0)" in text and "spec: CHECK (quantity > 0)" in text


def test_column_change_names_the_property(applied, expected):
    (difference,) = drift.diff(
        applied("0006_leads.sql", "first_name           text,", "first_name           varchar(100),"),
        expected,
    )
    assert difference.describe() == "column leads.first_name: type character varying(100), spec text"


def test_spec_alone_changed_is_reported_by_the_verbatim_check(spec, project_dir, migration_files):
    """The rule "printed in the spec" (tests/unit/test_printed.py), on the repository's files."""
    block = spec.blocks_of("migration")[2]
    edited = Spec(spec.path, spec.text.replace(block.sql, block.sql.replace("BEGIN;", "BEGIN; -- edited"), 1))

    def printed(spec: Spec) -> list[str]:
        violations = rules.check_printed(
            migration_files, spec.blocks_of("migration"), "api/db/migrations", lambda name: True
        )
        return [v.describe() for v in violations]

    (problem,) = printed(edited)
    assert problem.startswith(f"{block.name}:") and "differs from its block in the spec" in problem
    assert printed(spec) == []


def test_snapshot_json_round_trip(expected, tmp_path):
    path = tmp_path / "snapshot.json"
    expected.save(path)
    assert Snapshot.load(path) == expected


def test_coverage_is_complete_on_the_clean_schema(applied, expected):
    cover = drift.coverage(applied("0001_extensions.sql", "", ""), expected)
    assert cover["table"] == (13, 13) and cover["enum"] == (4, 4) and cover["extension"] == (1, 1)
    assert all(present == specified for present, specified in cover.values())


# -- the cached expected schema --------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A per-user directory of the test's own, made and checked as the real one is."""
    path = tmp_path / "leaddb"
    monkeypatch.setattr(statedir, "user_dir", lambda: permissions.ensure(path, hint="fix it"))
    return path


@pytest.fixture
def no_build(monkeypatch):
    """Make building the expected schema fail: what is returned then came from the cache."""

    def forbid():
        monkeypatch.setattr(drift, "expected_snapshot", lambda *a: pytest.fail("built instead of read"))

    return forbid


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob(drift.CACHE_ENTRIES))


def test_the_expected_schema_is_cached_and_read_back_equal(server, spec, expected, cache_dir, no_build):
    first = drift.cached_expected_snapshot(spec, server)
    assert (first.source, first.snapshot) == ("built and cached", expected)
    assert len(entries(cache_dir)) == 1
    no_build()
    second = drift.cached_expected_snapshot(spec, server)
    assert (second.source, second.snapshot) == ("from the cache", expected)


@pytest.mark.posix_only("mode bits: Windows reports 0o777/0o666 (its per-user directory is private by ACL)")
def test_the_cache_is_private_to_the_user(server, spec, cache_dir):
    drift.cached_expected_snapshot(spec, server)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    (entry,) = entries(cache_dir)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


SPEC_EDITS = [
    pytest.param(
        "    priority    integer     NOT NULL DEFAULT 100,",
        "    priority    integer     NOT NULL DEFAULT 50,",
        ("column", "buyer_offers.priority"),
        id="a default",
    ),
    pytest.param(
        "    first_name           text,",
        "    first_name           text,\n    middle_name          text,",
        ("column", "leads.middle_name"),
        id="a column",
    ),
]


@pytest.mark.parametrize(("old", "new", "changed"), SPEC_EDITS)
def test_changing_the_specs_sql_rebuilds_the_expected_schema(
    server, spec, expected, cache_dir, old, new, changed
):
    drift.cached_expected_snapshot(spec, server)
    assert spec.text.count(old) == 1
    edited = Spec(spec.path, spec.text.replace(old, new))
    rebuilt = drift.cached_expected_snapshot(edited, server)
    assert rebuilt.source == "built and cached"
    assert rebuilt.snapshot.objects.get(changed) != expected.objects.get(changed)
    assert [(d.kind, d.name) for d in drift.diff(expected, rebuilt.snapshot)] == [changed]
    assert len(entries(cache_dir)) == 2  # the old spec keeps its own entry
    assert drift.cached_expected_snapshot(spec, server).source == "from the cache"


@pytest.mark.parametrize(
    "what",
    ["server_version_num", "version", "timezone", "template0"],
)
def test_another_server_or_setting_rebuilds_the_expected_schema(
    server, spec, expected, cache_dir, monkeypatch, what
):
    drift.cached_expected_snapshot(spec, server)
    real = drift.server_key
    monkeypatch.setattr(drift, "server_key", lambda conninfo: {**real(conninfo), what: "something else"})
    again = drift.cached_expected_snapshot(spec, server)
    assert (again.source, again.snapshot) == ("built and cached", expected)
    assert len(entries(cache_dir)) == 2


def test_changed_catalog_code_rebuilds_the_expected_schema(server, spec, cache_dir, monkeypatch):
    drift.cached_expected_snapshot(spec, server)
    monkeypatch.setattr(catalog, "fingerprint", lambda: "another version of the catalog queries")
    assert drift.cached_expected_snapshot(spec, server).source == "built and cached"


def test_the_server_key_is_read_from_the_server(server):
    key = drift.server_key(server.conninfo("postgres"))
    assert key["server_version_num"].startswith("15") and key["version"].startswith("PostgreSQL 15")
    assert set(key) == {
        "version", "server_version_num", "template0", "search_path", "timezone", "datestyle",
        "intervalstyle", "extra_float_digits", "lc_monetary", "lc_numeric", "standard_conforming_strings",
    }  # fmt: skip


def _break_entry(path: Path, how: str) -> None:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if how == "directory":
        path.unlink()
        path.mkdir()
        return
    if how == "fifo":
        _plant_fifo(path)
        return
    broken = {
        "garbage": b"\x00\xffnot json at all",
        "not UTF-8": text.encode("utf-8").replace(b"{", b"\xff{", 1),
        "truncated": text.encode("utf-8")[: len(text) // 2],
        "a JSON list": b"[1, 2, 3]",
        "no snapshot": json.dumps({"key": data["key"]}).encode(),
        "a snapshot of the wrong shape": json.dumps(
            {"key": data["key"], "snapshot": {"objects": 5}}
        ).encode(),
        "another key": json.dumps({**data, "key": {**data["key"], "spec": "0" * 64}}).encode(),
        "empty": b"",
    }[how]
    path.write_bytes(broken)


@pytest.mark.posix_only("a FIFO: Windows has none")
def _plant_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


BROKEN = ["garbage", "not UTF-8", "truncated", "a JSON list", "no snapshot", "a snapshot of the wrong shape"]
BROKEN += ["another key", "empty", "directory", pytest.param("fifo", marks=pytest.mark.posix_only("a FIFO"))]


class StandIn:
    """A backend whose server is stood in for (the build and the server key, stubbed below)."""

    def conninfo(self, dbname: str | None = None) -> str:
        return f"dbname={dbname}"


@pytest.fixture
def stood_in(monkeypatch, expected) -> list[str]:
    """The expected schema "built" from the real one, each build counted; a fixed server key."""
    builds = []
    key = {"server_version_num": "150000", "version": "PostgreSQL 15"}

    def build(spec, backend):
        builds.append(backend.conninfo("postgres"))
        return expected

    monkeypatch.setattr(drift, "server_key", lambda conninfo: dict(key))
    monkeypatch.setattr(drift, "expected_snapshot", build)
    return builds


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_cache_entry_is_rebuilt_never_an_error(spec, expected, cache_dir, stood_in, how):
    """Every broken form of an entry is read as a miss, built again and replaced (the server stood
    in for: what is proved is the reading of the entry; tests/unit/test_drift_cache.py has the
    parser's shapes, the end-to-end case below a real server)."""
    backend = StandIn()
    drift.cached_expected_snapshot(spec, backend)
    (entry,) = entries(cache_dir)
    _break_entry(entry, how)
    again = drift.cached_expected_snapshot(spec, backend)
    assert again.snapshot == expected and len(stood_in) == 2
    if how == "directory":  # cannot be replaced by a file: used uncached
        assert again.source.startswith("built; not cached: cannot write in")
    else:
        assert again.source == "built and cached"
        assert drift.cached_expected_snapshot(spec, backend).source == "from the cache"
        assert len(stood_in) == 2


def test_a_broken_cache_entry_is_rebuilt_on_the_server(server, spec, expected, cache_dir):
    drift.cached_expected_snapshot(spec, server)
    (entry,) = entries(cache_dir)
    _break_entry(entry, "truncated")
    again = drift.cached_expected_snapshot(spec, server)
    assert (again.source, again.snapshot) == ("built and cached", expected)
    assert drift.cached_expected_snapshot(spec, server).source == "from the cache"


@pytest.mark.posix_only("symbolic links need a privilege on Windows, and O_NOFOLLOW is POSIX")
def test_a_symbolic_link_in_place_of_an_entry_is_never_followed(server, spec, expected, cache_dir, tmp_path):
    drift.cached_expected_snapshot(spec, server)
    (entry,) = entries(cache_dir)
    planted = tmp_path / "planted.json"
    data = json.loads(entry.read_text(encoding="utf-8"))
    data["snapshot"]["objects"] = {}  # a valid entry for this key that hides every object
    planted.write_text(json.dumps(data), encoding="utf-8", newline="\n")
    entry.unlink()
    entry.symlink_to(planted)
    again = drift.cached_expected_snapshot(spec, server)
    assert (again.source, again.snapshot) == ("built and cached", expected)
    assert (
        not entry.is_symlink()
        and json.loads(planted.read_text(encoding="utf-8"))["snapshot"]["objects"] == {}
    )


@pytest.mark.posix_only("owner and mode checks, and symbolic links")
def test_a_cache_directory_that_is_not_private_is_not_used(server, spec, expected, cache_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache_dir.symlink_to(elsewhere)
    result = drift.cached_expected_snapshot(spec, server)
    assert result.snapshot == expected
    link = "is a symbolic link (it is never followed); fix it"
    assert result.source == f"built; not cached: the private directory {cache_dir} {link}"
    assert list(elsewhere.iterdir()) == []
    cache_dir.unlink()
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    result = drift.cached_expected_snapshot(spec, server)
    assert result.source.startswith(f"built; not cached: the private directory {cache_dir} has mode 0777")
    assert list(cache_dir.iterdir()) == []
    os.chmod(cache_dir, 0o700)
    assert drift.cached_expected_snapshot(spec, server).source == "built and cached"
    if os.geteuid() == 0:  # another user's directory
        os.chown(cache_dir, 65534, 65534)
        result = drift.cached_expected_snapshot(spec, server)
        assert result.source.startswith(f"built; not cached: the private directory {cache_dir} belongs to ")


def test_a_warm_cache_never_hides_drift(server, spec, applied, cache_dir, no_build):
    drift.cached_expected_snapshot(spec, server)
    no_build()
    cached = drift.cached_expected_snapshot(spec, server)
    assert cached.source == "from the cache"
    live = applied("0005_buyer_relations.sql", "NOT NULL DEFAULT 100", "NOT NULL DEFAULT 50")
    assert changes(live, cached.snapshot) == [("column", "buyer_offers.priority", "changed")]
