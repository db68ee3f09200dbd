"""db.status: which migration files a database holds, read from the catalog alone."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from psycopg import sql

from leaddb import catalog, objects, runner, verdict, workflow
from leaddb import status as schema_status
from leaddb.catalog import Snapshot
from leaddb.errors import (
    EXIT_MIGRATIONS_PENDING,
    EXIT_SCHEMA_DRIFT,
    LeadDbError,
    MigrationsPending,
    SchemaDrift,
)
from leaddb.migrations import Migration, split_statements

REFERENCE = Path("api/db/schema.snapshot.json")


@pytest.fixture(scope="session")
def reference(project_dir) -> Snapshot:
    return Snapshot.load(project_dir / REFERENCE)


@pytest.fixture
def status_of(migration_files, reference):
    def check(conninfo: str) -> schema_status.Report:
        return schema_status.check(
            migration_files, catalog.snapshot_of(conninfo), reference, reference_name=REFERENCE.as_posix()
        )

    return check


def states(report: schema_status.Report) -> dict[str, str]:
    return {f.file: f.state for f in report.files}


def execute(conninfo: str, *statements: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_every_object_the_files_create_is_in_the_reference_and_back(migration_files, reference):
    """The parser accounts for every object of the real schema, implicit ones included."""
    created = {e.key for f in objects.read(migration_files) for e in f.effects if e.action == "create"}
    assert created == set(reference.objects)
    assert all(not f.notes for f in objects.read(migration_files))


def test_fresh_database_shows_every_file_pending(fresh_db, status_of, migration_files):
    report = status_of(fresh_db(None))
    assert states(report) == {m.name: "pending" for m in migration_files}
    assert report.extra == [] and report.notes == []
    assert all(f.found == 0 and f.expected > 0 for f in report.files)
    assert report.exit_code == EXIT_MIGRATIONS_PENDING == 6
    with pytest.raises(MigrationsPending) as caught:
        report.raise_for_state()
    assert str(caught.value).startswith("MIGRATIONS_PENDING: not every migration is on this database:")
    assert "invoke db.apply" in str(caught.value)


def test_migrated_database_shows_every_file_applied(fresh_db, status_of, migration_files):
    report = status_of(fresh_db())
    assert states(report) == {m.name: "applied" for m in migration_files}
    assert all(f.found == f.expected and not f.missing and not f.differs for f in report.files)
    assert report.extra == [] and report.exit_code == 0
    report.raise_for_state()


def test_files_applied_in_part_of_the_sequence(fresh_db, status_of, migration_files):
    db = fresh_db(None)
    runner.apply(db, migration_files[:3])
    report = status_of(db)
    expected = ["applied"] * 3 + ["pending"] * (len(migration_files) - 3)
    assert [f.state for f in report.files] == expected
    assert report.extra == []


def _second_tables(migration_files):
    for m in migration_files:
        tables = [e.name for e in objects.read([m])[0].effects if e.action == "create" and e.kind == "table"]
        if len(tables) >= 2:
            yield pytest.param(m.name, tables[1], id=f"{m.name}:{tables[1]}")


@pytest.mark.parametrize(
    "filename, table", list(_second_tables(verdict.load(Path(__file__).resolve().parent.parent)))
)
def test_a_dropped_second_table_makes_its_file_partial_naming_it(fresh_db, status_of, filename, table):
    db = fresh_db()
    execute(db, f"DROP TABLE {table} CASCADE")
    report = status_of(db)
    row = next(f for f in report.files if f.file == filename)
    assert row.state == "partial"
    assert f"table {table}" in row.missing
    # the table's columns and constraints are not listed one by one
    assert not [m for m in row.missing if m.startswith(("column", "index", "sequence")) and table in m]
    # a file is only partial because of this table or a foreign key the CASCADE removed
    for other in report.files:
        if other.file != filename:
            assert other.state in ("applied", "partial"), other
            assert all(m.startswith("constraint ") and m.endswith("_fkey") for m in other.missing), other
    assert report.extra == []
    assert report.exit_code == EXIT_MIGRATIONS_PENDING


def test_buyer_service_areas_dropped_names_only_that_table(fresh_db, status_of):
    db = fresh_db()
    execute(db, "DROP TABLE buyer_service_areas")
    report = status_of(db)
    assert {f: s for f, s in states(report).items() if s != "applied"} == {
        "0005_buyer_relations.sql": "partial"
    }
    row = next(f for f in report.files if f.file == "0005_buyer_relations.sql")
    assert row.missing == ["table buyer_service_areas"]
    # the table, its 5 columns, 5 constraints, 3 indexes and its identity sequence
    assert row.expected - row.found == 15


def test_a_changed_default_shows_the_file_drifted_saying_how(fresh_db, status_of):
    db = fresh_db()
    execute(db, "ALTER TABLE buyers ALTER COLUMN credit_limit_cents SET DEFAULT 5")
    report = status_of(db)
    assert {f: s for f, s in states(report).items() if s != "applied"} == {
        "0004_offers_sources_buyers.sql": "drifted"
    }
    row = next(f for f in report.files if f.file == "0004_offers_sources_buyers.sql")
    assert row.differs == ["column buyers.credit_limit_cents: default 5, expected 0"]
    assert report.exit_code == EXIT_SCHEMA_DRIFT == 3
    with pytest.raises(SchemaDrift) as caught:
        report.raise_for_state()
    assert "0004_offers_sources_buyers.sql drifted" in str(caught.value)


def test_changed_enum_index_and_check_are_each_named(fresh_db, status_of):
    db = fresh_db()
    execute(
        db,
        "ALTER TYPE payment_method ADD VALUE 'crypto'",
        "DROP INDEX leads_status_received_at_idx",
        "CREATE INDEX leads_status_received_at_idx ON leads (status)",
        "ALTER TABLE offers DROP CONSTRAINT offers_base_price_cents_check",
        "ALTER TABLE offers ADD CONSTRAINT offers_base_price_cents_check CHECK (base_price_cents > 0)",
    )
    report = status_of(db)
    rows = {f.file: f for f in report.files}
    assert rows["0002_enums.sql"].state == "drifted"
    assert (
        rows["0002_enums.sql"]
        .differs[0]
        .startswith("enum payment_method: labels (ach, card, wire, check, crypto)")
    )
    assert rows["0006_leads.sql"].state == "drifted"
    assert (
        rows["0006_leads.sql"].differs[0].startswith("index leads_status_received_at_idx: definition differs")
    )
    assert rows["0004_offers_sources_buyers.sql"].state == "drifted"
    assert (
        "constraint offers.offers_base_price_cents_check" in rows["0004_offers_sources_buyers.sql"].differs[0]
    )


def test_extra_objects_are_listed_and_a_table_once(fresh_db, status_of):
    db = fresh_db()
    execute(
        db,
        "CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text UNIQUE)",
        "CREATE INDEX leads_email_idx ON leads (email)",
        "ALTER TABLE buyers ADD COLUMN nickname text",
    )
    report = status_of(db)
    assert [(e.kind, e.name) for e in report.extra] == [
        ("column", "buyers.nickname"),
        ("index", "leads_email_idx"),
        ("table", "audit_log"),
    ]
    assert report.extra[1].definition == "CREATE INDEX leads_email_idx ON public.leads USING btree (email)"
    assert all(s == "applied" for s in states(report).values())
    assert report.exit_code == EXIT_SCHEMA_DRIFT
    with pytest.raises(SchemaDrift) as caught:
        report.raise_for_state()
    assert "table audit_log (extra)" in str(caught.value)


def test_drift_outranks_pending_in_the_exit_code(fresh_db, status_of):
    db = fresh_db()
    execute(db, "DROP TABLE invoice_line_items", "CREATE TABLE scratch (x int)")
    report = status_of(db)
    assert states(report)["0007_invoices.sql"] == "partial"
    assert report.exit_code == EXIT_SCHEMA_DRIFT


@pytest.fixture
def read_only_role(server):
    """A role that can only connect and read: CONNECT plus pg_read_all_data, read-only by default.

    It has a password: a Docker test server (or one named by LEADDB_TEST_DSN) asks for one over TCP."""
    name = f"ro_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(name))
        )
    yield name, password
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_read_only_role_gets_the_same_answer_and_changes_nothing(
    fresh_db, status_of, read_only_role, project_dir, tmp_path
):
    role, password = read_only_role
    db = fresh_db()
    execute(
        db,
        "DROP TABLE buyer_service_areas",
        "ALTER TABLE buyers ALTER COLUMN credit_limit_cents SET DEFAULT 5",
        "CREATE TABLE audit_log (id int)",
    )
    dbname = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(role))
        )
    read_only = psycopg.conninfo.make_conninfo(db, user=role, password=password)
    with psycopg.connect(read_only) as conn:  # the role really is read-only
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE should_fail (x int)")
    before = catalog.snapshot_of(db)
    as_owner = status_of(db)
    # the task's own path, over the dsn backend, as the read-only role
    json_path = tmp_path / "status.json"
    with pytest.raises(SchemaDrift):
        workflow.status(workflow.Options("dsn", read_only, project_dir=project_dir), json_path=json_path)
    written = json.loads(json_path.read_text(encoding="utf-8"))
    assert written == json.loads(as_owner.to_json())
    assert written["exit_code"] == 3
    assert {f["file"]: f["state"] for f in written["files"]}["0005_buyer_relations.sql"] == "partial"
    assert catalog.snapshot_of(db) == before


def test_detail_holds_definitions_against_a_scratch_database(fresh_db, server, project_dir, tmp_path):
    db = fresh_db()
    execute(db, "ALTER TABLE buyers ALTER COLUMN credit_limit_cents SET DEFAULT 5")
    json_path = tmp_path / "status.json"
    with pytest.raises(SchemaDrift):
        workflow.status(
            workflow.Options("dsn", db, project_dir=project_dir), json_path=json_path, detail=True
        )
    written = json.loads(json_path.read_text(encoding="utf-8"))
    assert written["reference"] == "the migrations applied to a scratch database"
    row = next(f for f in written["files"] if f["file"] == "0004_offers_sources_buyers.sql")
    assert row["differs"] == ["column buyers.credit_limit_cents: default 5, expected 0"]
    assert written["notes"] == []


def test_a_stale_reference_is_said_and_presence_still_checked(fresh_db, migration_files, reference):
    stale = Snapshot({k: v for k, v in reference.objects.items() if k != ("table", "leads")})
    report = schema_status.check(
        migration_files, catalog.snapshot_of(fresh_db()), stale, reference_name="ref.json"
    )
    assert all(s == "applied" for s in states(report).values())
    assert len(report.notes) == 1 and report.notes[0].startswith(
        "ref.json does not match the migration files"
    )
    assert "invoke db.dump" in report.notes[0]


# -- files that alter, drop and create in DO blocks ---------------------------------------


def migration(number: int, text: str) -> Migration:
    return Migration(Path(f"{number:04d}_m{number}.sql"), number, text)


def test_alters_drops_and_do_blocks_are_followed(fresh_db):
    files = [
        migration(1, "CREATE TABLE a (id int PRIMARY KEY, v int DEFAULT 1);\nCREATE TABLE b (id int);"),
        migration(
            2,
            "DO $$ BEGIN EXECUTE 'CREATE TABLE c (id serial PRIMARY KEY)'; "
            "IF true THEN CREATE INDEX ON a (v); END IF; END $$;",
        ),
        migration(3, "ALTER TABLE a ALTER COLUMN v SET DEFAULT 2;"),
        migration(4, "DROP TABLE IF EXISTS b;\nALTER TABLE a ADD COLUMN w int CHECK (w > 0);"),
    ]
    effects = objects.read(files)
    assert {e.key for e in effects[1].effects} == {
        ("table", "c"),
        ("column", "c.id"),
        ("sequence", "c_id_seq"),
        ("constraint", "c.c_pkey"),
        ("index", "c_pkey"),
        ("index", "a_v_idx"),
    }
    db = fresh_db(None)
    runner.apply(db, files[:2])
    reference_db = fresh_db(None)
    runner.apply(reference_db, files)
    reference = catalog.snapshot_of(reference_db)

    def report() -> dict[str, str]:
        return states(schema_status.check(files, catalog.snapshot_of(db), reference, reference_name="r"))

    assert report() == {
        "0001_m1.sql": "applied",
        "0002_m2.sql": "applied",
        "0003_m3.sql": "pending",
        "0004_m4.sql": "pending",
    }
    runner.apply(db, files[2:3])
    assert report() == {
        "0001_m1.sql": "applied",
        "0002_m2.sql": "applied",
        "0003_m3.sql": "applied",
        "0004_m4.sql": "pending",
    }
    execute(db, "DROP TABLE b")
    assert report()["0004_m4.sql"] == "partial"
    runner.apply(db, files[3:])
    assert set(report().values()) == {"applied"}


def test_functions_triggers_and_views_are_created_and_dropped(fresh_db):
    files = [
        migration(
            1,
            "CREATE TABLE a (id int);\n"
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
            "CREATE TRIGGER a_touch BEFORE INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION touch();\n"
            "CREATE VIEW v AS SELECT id FROM a;",
        ),
        migration(2, "DROP TRIGGER a_touch ON public.a;\nDROP VIEW v;"),
    ]
    db = fresh_db(None)
    runner.apply(db, files[:1])
    reference_db = fresh_db(None)
    runner.apply(reference_db, files)
    reference = catalog.snapshot_of(reference_db)

    def report() -> schema_status.Report:
        return schema_status.check(files, catalog.snapshot_of(db), reference, reference_name="r")

    first = report()
    assert states(first) == {"0001_m1.sql": "applied", "0002_m2.sql": "pending"}
    assert first.extra == []
    runner.apply(db, files[1:])
    assert states(report()) == {"0001_m1.sql": "applied", "0002_m2.sql": "applied"}
    assert report().extra == [] and report().exit_code == 0


# -- names PostgreSQL chooses itself ------------------------------------------------------

# short names that collide once joined (t + a_b, t_a + b) and long ones that get truncated,
# some of them multibyte
_NAMES = st.sampled_from(["t", "t_a", "a", "b", "a_b", "x" * 40, "y" * 62, "é" * 30])
_COLUMN_TYPES = st.sampled_from(["int", "bigint", "text", "serial", "bigint GENERATED ALWAYS AS IDENTITY"])
_INTEGERS = ("int", "bigint", "serial", "bigint GENERATED ALWAYS AS IDENTITY")


@st.composite
def _table(draw, taken: set[str], referencable: list[tuple[str, str]]):
    """One CREATE TABLE with unnamed (and a few named) constraints of every kind."""
    name = draw(_NAMES.filter(lambda n: n not in taken))
    columns = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    quoted = [f'"{c}"' for c in columns]
    pk, parts, types = None, [], {}
    for column, q in zip(columns, quoted, strict=True):
        types[column] = type_ = draw(_COLUMN_TYPES)
        extra = draw(
            st.sampled_from(
                ["", " UNIQUE", " PRIMARY KEY", f" CHECK ({q} IS NOT NULL)", " NOT NULL", " CHECK (true)"]
            )
        )
        if extra == " PRIMARY KEY":
            extra, pk = ("", pk) if pk else (extra, column)
        part = f"{q} {type_}{extra}"
        if referencable and type_ in ("int", "bigint") and draw(st.booleans()):
            target, target_pk = draw(st.sampled_from(referencable))
            part += f' REFERENCES "{target}" ("{target_pk}")'
        parts.append(part)
    choices = [
        f"UNIQUE ({', '.join(quoted)})",
        f"CHECK ({quoted[0]} IS NULL OR {quoted[-1]} IS NOT NULL)",
        "CHECK (1 > 0)",
        f"EXCLUDE USING btree ({quoted[0]} WITH =)",
        f"CONSTRAINT named_{len(columns)} CHECK ({quoted[0]} IS NOT NULL)",
    ]
    if len(columns) > 1:
        choices.append(f"UNIQUE ({quoted[0]}) INCLUDE ({quoted[-1]})")
    constraints = draw(st.lists(st.sampled_from(choices), max_size=3))
    if pk is None and draw(st.booleans()):
        pk = columns[0]
        constraints.append(f"PRIMARY KEY ({quoted[0]})")
    return name, f'CREATE TABLE "{name}" ({", ".join(parts + constraints)});', pk, types


@st.composite
def _schema(draw) -> str:
    taken: set[str] = set()
    referencable: list[tuple[str, str]] = []
    statements = []
    for _ in range(draw(st.integers(1, 3))):
        name, statement, pk, types = draw(_table(taken, referencable))
        taken.add(name)
        statements.append(statement)
        if pk and types[pk] in _INTEGERS:
            referencable.append((name, pk))
        indexed = draw(st.sampled_from([None, *types]))
        if indexed:
            q = f'"{indexed}"'
            elements = draw(
                st.sampled_from(
                    [
                        f"({q})",
                        f"(({q} IS NULL))",
                        f"(abs(1), {q}, {q})",
                        f"(coalesce({q}, {q}), nullif({q}, {q}))",
                        f"(greatest({q}, {q}), least({q}, {q}))",
                        f"(({q}::text), (CASE WHEN true THEN {q} END))",
                        f"((CASE WHEN true THEN 1 ELSE length({q}::text) END), "
                        f"((CASE WHEN true THEN {q} END)::text))",
                        f"((1::text), ((ROW({q}, 1)).f1))",
                    ]
                )
            )
            statements.append(f'CREATE INDEX ON "{name}" {elements};')
        if draw(st.booleans()):
            q = f'"{draw(st.sampled_from(list(types)))}"'
            statements.append(f'ALTER TABLE "{name}" ADD UNIQUE ({q}), ADD CHECK ({q} IS NOT NULL);')
        if draw(st.booleans()):
            added = draw(st.sampled_from([n for n in ("a", "b", "t", "z" * 63) if n not in types]))
            type_ = draw(_COLUMN_TYPES)
            statements.append(
                f'ALTER TABLE "{name}" ADD COLUMN "{added}" {type_} UNIQUE CHECK ("{added}" IS NULL);'
            )
    return "\n".join(statements)


@pytest.fixture
def empty_db(fresh_db):
    return fresh_db(None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_schema())
def test_implicit_names_are_the_ones_postgresql_chooses(empty_db, text):
    execute(empty_db, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    try:
        execute(empty_db, text)
    except psycopg.errors.Error:
        assume(False)  # a generated combination PostgreSQL refuses
    file = Migration(Path("0001_generated.sql"), 1, text)
    split_statements(text, file.name)  # the generated SQL is readable
    predicted = {e.key for e in objects.read([file])[0].effects if e.action == "create"}
    live = set(catalog.snapshot_of(empty_db).objects)
    assert predicted == live, text


def test_an_unreadable_reference_is_one_message_not_a_traceback(fresh_db, project_dir, tmp_path):
    db = fresh_db()
    for name in ("api", "docker-compose.yml", "Technical-Architecture-Specification.md"):
        source = project_dir / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    dump = tmp_path / REFERENCE
    dump.write_text("{not json", encoding="utf-8", newline="\n")
    with pytest.raises(LeadDbError) as caught:
        workflow.status(workflow.Options("dsn", db, project_dir=tmp_path))
    assert str(caught.value).startswith("api/db/schema.snapshot.json cannot be read (JSONDecodeError")
    assert caught.value.exit_code == 1 and "invoke db.status --detail" in str(caught.value)
    dump.unlink()
    with pytest.raises(LeadDbError, match="cannot be read \\(FileNotFoundError"):
        workflow.status(workflow.Options("dsn", db, project_dir=tmp_path))
