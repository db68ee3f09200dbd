"""The rule "schema only" (leaddb/scope.py) and what a DO block runs: a migration of this schema
holds its objects and nothing beyond them (issue 17, section 5: a file's guarded ``DO … EXECUTE``
created a SUPERUSER role and ran a shell command through ``COPY … TO PROGRAM``, and passed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import compliant

from leaddb import lint, migrations, rules, scope
from leaddb.rules import RulesBroken
from leaddb.spec import SPEC_FILENAME, Spec

NAME = "0001_probe.sql"
ROLES = "roles and privileges belong to the server's administrators, not to this schema"
SERVER = "a command on the database or the server, not on this schema"
SESSION = "a command on the session, which a migration leaves as it found it"
MAINTENANCE = "maintenance, not schema"
FUNCTION = "a server function: it acts beyond this schema"


def found(sql: str) -> list[tuple[int, str, str]]:
    """(line, rule, what) of every violation of a file whose body (line 3 on) is ``sql``."""
    text = compliant(NAME, sql)
    try:
        statements = migrations.split_statements(text, NAME)
    except RulesBroken as exc:
        return [(v.line, v.rule, v.what) for v in exc.violations]
    return [(v.line, v.rule, v.what) for v in rules.check_statements(NAME, text, statements, set())]


def not_schema(what: str, why: str) -> tuple[int, str, str]:
    return 3, "schema only", f"{what} is not schema: {why}"


def calls(name: str, where: str = "") -> tuple[int, str, str]:
    return 3, "schema only", f"calls {name}(), {FUNCTION}{where}"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # the list
        ("CREATE ROLE evil SUPERUSER LOGIN;", [not_schema("CREATE ROLE … SUPERUSER", ROLES)]),
        ("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;", [not_schema("GRANT … TO PUBLIC", ROLES)]),
        ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", [calls("pg_terminate_backend")]),
        (
            "LOCK TABLE leads IN ACCESS EXCLUSIVE MODE;",
            [
                not_schema(
                    "LOCK", "an explicit lock, beyond those its own statements take: it blocks other sessions"
                )
            ],
        ),
        (
            "ALTER TABLE leads SET UNLOGGED;",
            [
                not_schema(
                    "ALTER TABLE … SET UNLOGGED",
                    "it changes a table's persistence (an unlogged table is emptied after a crash)",
                )
            ],
        ),
        (
            "DROP DATABASE leadgen;",
            [
                (3, "one transaction", "DROP DATABASE cannot run inside a transaction block"),
                (3, "not destructive", "DROP DATABASE on leadgen"),
            ],
        ),
        # the same class
        ("CREATE USER u;", [not_schema("CREATE USER", ROLES)]),
        ("ALTER ROLE postgres PASSWORD 'x';", [not_schema("ALTER ROLE", ROLES)]),
        ("ALTER ROLE app SUPERUSER;", [not_schema("ALTER ROLE … SUPERUSER", ROLES)]),
        ("ALTER ROLE app IN DATABASE d SET search_path = x;", [not_schema("ALTER ROLE … SET", ROLES)]),
        ("GRANT SELECT ON leads TO app;", [not_schema("GRANT", ROLES)]),
        ("REVOKE ALL ON leads FROM PUBLIC;", [not_schema("REVOKE … FROM PUBLIC", ROLES)]),
        ("GRANT pg_read_server_files TO app;", [not_schema("GRANT role", ROLES)]),
        (
            "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;",
            [not_schema("ALTER DEFAULT PRIVILEGES", ROLES)],
        ),
        ("ALTER TABLE leads OWNER TO app;", [not_schema("ALTER TABLE … OWNER TO", ROLES)]),
        ("ALTER TYPE lead_status OWNER TO app;", [not_schema("ALTER … OWNER TO", ROLES)]),
        ("REASSIGN OWNED BY a TO b;", [not_schema("REASSIGN OWNED", ROLES)]),
        ("CREATE POLICY p ON leads USING (true);", [not_schema("CREATE POLICY", ROLES)]),
        (
            "ALTER TABLE leads ENABLE ROW LEVEL SECURITY;",
            [not_schema("ALTER TABLE … ENABLE ROW LEVEL SECURITY", ROLES)],
        ),
        ("SECURITY LABEL FOR selinux ON TABLE leads IS 'x';", [not_schema("SECURITY LABEL", ROLES)]),
        ("CREATE USER MAPPING FOR app SERVER s;", [not_schema("CREATE USER MAPPING", ROLES)]),
        ("CREATE SCHEMA s AUTHORIZATION app;", [not_schema("CREATE SCHEMA … AUTHORIZATION", ROLES)]),
        (
            "ALTER SYSTEM SET archive_command = 'id';",
            [
                (3, "one transaction", "ALTER SYSTEM cannot run inside a transaction block"),
                not_schema("ALTER SYSTEM", SERVER),
            ],
        ),
        ("ALTER DATABASE leadgen SET search_path = x;", [not_schema("ALTER DATABASE … SET", SERVER)]),
        ("ALTER DATABASE leadgen CONNECTION LIMIT 1;", [not_schema("ALTER DATABASE", SERVER)]),
        ("LOAD 'auto_explain';", [not_schema("LOAD", SERVER)]),
        ("CHECKPOINT;", [not_schema("CHECKPOINT", SERVER)]),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw;", [not_schema("CREATE SERVER", SERVER)]),
        ("CREATE FOREIGN DATA WRAPPER w;", [not_schema("CREATE FOREIGN DATA WRAPPER", SERVER)]),
        ("CREATE FOREIGN TABLE f (id int) SERVER s;", [not_schema("CREATE FOREIGN TABLE", SERVER)]),
        ("IMPORT FOREIGN SCHEMA x FROM SERVER s INTO public;", [not_schema("IMPORT FOREIGN SCHEMA", SERVER)]),
        (
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p;",
            [not_schema("CREATE SUBSCRIPTION", SERVER)],
        ),
        ("CREATE PUBLICATION p FOR ALL TABLES;", [not_schema("CREATE PUBLICATION", SERVER)]),
        ("ALTER EXTENSION btree_gist UPDATE;", [not_schema("ALTER EXTENSION", SERVER)]),
        (
            "CREATE ACCESS METHOD m TYPE TABLE HANDLER heap_tableam_handler;",
            [not_schema("CREATE ACCESS METHOD", SERVER)],
        ),
        ("ALTER TABLE leads SET TABLESPACE t;", [not_schema("ALTER TABLE … SET TABLESPACE", SERVER)]),
        ("ALTER TABLE leads REPLICA IDENTITY FULL;", [not_schema("ALTER TABLE … REPLICA IDENTITY", SERVER)]),
        ("SET ROLE postgres;", [not_schema("SET ROLE", SESSION)]),
        ("SET SESSION AUTHORIZATION postgres;", [not_schema("SET SESSION AUTHORIZATION", SESSION)]),
        ("SET search_path = evil, public;", [not_schema("SET search_path", SESSION)]),
        ("SET LOCAL lock_timeout = '1s';", [not_schema("SET lock_timeout", SESSION)]),
        ("RESET ALL;", [not_schema("RESET", SESSION)]),
        ("DISCARD PLANS;", [not_schema("DISCARD", SESSION)]),
        ("SET CONSTRAINTS ALL DEFERRED;", [not_schema("SET CONSTRAINTS", SESSION)]),
        ("SHOW data_directory;", [not_schema("SHOW", SESSION)]),
        ("PREPARE p AS SELECT 1;", [not_schema("PREPARE", SESSION)]),
        ("EXECUTE p;", [not_schema("EXECUTE", SESSION)]),
        ("LISTEN c;", [not_schema("LISTEN", SESSION)]),
        ("NOTIFY c;", [not_schema("NOTIFY", SESSION)]),
        ("EXPLAIN ANALYZE SELECT 1;", [not_schema("EXPLAIN", SESSION)]),
        ("DECLARE c CURSOR FOR SELECT 1;", [not_schema("DECLARE … CURSOR", SESSION)]),
        ("CALL p();", [not_schema("CALL", "CALL runs a procedure: logic, not schema")]),
        ("ANALYZE leads;", [not_schema("ANALYZE", MAINTENANCE)]),
        ("CLUSTER leads USING leads_id_pk;", [not_schema("CLUSTER", MAINTENANCE)]),
        ("REINDEX TABLE leads;", [not_schema("REINDEX", MAINTENANCE)]),
        ("REFRESH MATERIALIZED VIEW m WITH NO DATA;", [not_schema("REFRESH MATERIALIZED VIEW", MAINTENANCE)]),
        (
            "CREATE UNLOGGED TABLE u (id int);",
            [not_schema("CREATE UNLOGGED TABLE", "it is emptied after a crash")],
        ),
        (
            "CREATE TEMP TABLE u (id int);",
            [not_schema("CREATE TEMPORARY TABLE", "it is gone when the session ends")],
        ),
        (
            "CREATE UNLOGGED SEQUENCE s;",
            [not_schema("CREATE UNLOGGED SEQUENCE", "it is emptied after a crash")],
        ),
        (
            "CREATE TEMP VIEW v AS SELECT 1;",
            [not_schema("CREATE TEMPORARY VIEW", "it is gone when the session ends")],
        ),
        (
            "ALTER TABLE leads SET LOGGED;",
            [
                not_schema(
                    "ALTER TABLE … SET LOGGED",
                    "it changes a table's persistence (an unlogged table is emptied after a crash)",
                )
            ],
        ),
        (
            "ALTER TABLE leads DISABLE TRIGGER ALL;",
            [
                not_schema(
                    "ALTER TABLE … DISABLE TRIGGER ALL",
                    "it turns triggers off or on (the foreign keys' among them) or rules: logic, not schema",
                )
            ],
        ),
        (
            "ALTER TABLE leads DETACH PARTITION p;",
            [not_schema("ALTER TABLE … DETACH PARTITION", "it takes a partition's rows out of the table")],
        ),
        (
            "CREATE EXTENSION IF NOT EXISTS adminpack;",
            [
                not_schema(
                    "CREATE EXTENSION adminpack",
                    "not an extension PostgreSQL marks trusted, so it can reach beyond the database",
                )
            ],
        ),
        (
            "CREATE EXTENSION dblink;",
            [
                not_schema(
                    "CREATE EXTENSION dblink",
                    "not an extension PostgreSQL marks trusted, so it can reach beyond the database",
                )
            ],
        ),
        (
            "CREATE LANGUAGE plperlu;",  # the parser makes it CREATE EXTENSION, as the server does
            [
                not_schema(
                    "CREATE EXTENSION plperlu",
                    "not an extension PostgreSQL marks trusted, so it can reach beyond the database",
                )
            ],
        ),
        ("CREATE LANGUAGE l HANDLER h;", [(3, "no logic", "CREATE LANGUAGE is logic, not schema")]),
        ("DROP ROLE app;", [(3, "not destructive", "DROP ROLE on app")]),
        ("DROP OWNED BY app;", [(3, "not destructive", "DROP OWNED on app")]),
        (
            "ALTER SEQUENCE s RESTART;",
            [(3, "not destructive", "RESTART (hands out sequence values again) on s")],
        ),
        (
            "ALTER TABLE leads ALTER COLUMN id RESTART WITH 1;",
            [(3, "not destructive", "RESTART (hands out identity values again) on leads.id")],
        ),
        ("COPY leads TO PROGRAM 'id';", [(3, "no logic", "COPY TO PROGRAM (a shell command) writes data")]),
        (
            "COPY leads FROM PROGRAM 'id';",
            [(3, "no logic", "COPY FROM PROGRAM (a shell command) writes data")],
        ),
        # server functions, wherever they stand
        ("SELECT pg_read_file('/etc/passwd');", [calls("pg_read_file")]),
        ("SELECT pg_catalog.pg_read_binary_file('x');", [calls("pg_read_binary_file")]),
        ("SELECT * FROM pg_ls_dir('.');", [calls("pg_ls_dir")]),
        ("SELECT lo_import('/etc/passwd');", [calls("lo_import")]),
        ("SELECT lo_export(1, '/tmp/x');", [calls("lo_export")]),
        ("SELECT dblink_exec('host=x', 'CREATE ROLE r');", [calls("dblink_exec")]),
        ("SELECT pg_reload_conf();", [calls("pg_reload_conf")]),
        ("SELECT pg_sleep(600);", [calls("pg_sleep")]),
        ("SELECT pg_cancel_backend(1);", [calls("pg_cancel_backend")]),
        ("SELECT pg_advisory_lock(1);", [calls("pg_advisory_lock")]),
        ("SELECT set_config('search_path', 'evil', false);", [calls("set_config")]),
        ("SELECT setval('leads_id_seq', 1);", [calls("setval")]),
        ("SELECT query_to_xml('SELECT 1', true, true, '');", [calls("query_to_xml")]),
        ("SELECT ts_stat('SELECT 1');", [calls("ts_stat")]),
        ("SELECT PG_TERMINATE_BACKEND(1);", [calls("pg_terminate_backend")]),
        ("CREATE TABLE t (x text DEFAULT pg_read_file('/etc/passwd'));", [calls("pg_read_file")]),
        ("CREATE TABLE t (x int CHECK (pg_terminate_backend(x)));", [calls("pg_terminate_backend")]),
        ("ALTER TABLE leads ADD COLUMN x text DEFAULT pg_read_file('x');", [calls("pg_read_file")]),
        ("CREATE INDEX i ON leads ((pg_sleep(1)::text));", [calls("pg_sleep")]),
        ("CREATE VIEW v AS SELECT pg_read_file('/etc/shadow');", [calls("pg_read_file")]),
        (
            "SELECT pg_sleep(1), pg_sleep(2), lo_unlink(1);",
            [calls("pg_sleep"), calls("lo_unlink")],
        ),
        ("COMMENT ON DATABASE leadgen IS 'x';", [not_schema("COMMENT ON DATABASE", SERVER)]),
        ("COMMENT ON ROLE postgres IS 'x';", [not_schema("COMMENT ON ROLE", SERVER)]),
        (
            "COMMENT ON FOREIGN DATA WRAPPER w IS 'x';",
            [not_schema("COMMENT ON FOREIGN DATA WRAPPER", SERVER)],
        ),
        ("COMMENT ON SERVER s IS 'x';", [not_schema("COMMENT ON SERVER", SERVER)]),
        ("CREATE ROLE r LOGIN;", [not_schema("CREATE ROLE", ROLES)]),
        ("CREATE USER u NOSUPERUSER;", [not_schema("CREATE USER", ROLES)]),
        ("ALTER ROLE r WITH SUPERUSER;", [not_schema("ALTER ROLE … SUPERUSER", ROLES)]),
        (
            "VACUUM leads;",
            [
                (3, "one transaction", "VACUUM cannot run inside a transaction block"),
                not_schema("VACUUM", MAINTENANCE),
            ],
        ),
        (f'SET "{"a" * 50}" = 1;', [not_schema(f"SET {'a' * 38} …", SESSION)]),  # an excerpt of the name
        (
            f'CREATE EXTENSION "{"e" * 50}";',
            [
                not_schema(
                    f"CREATE EXTENSION {'e' * 38} …",
                    "not an extension PostgreSQL marks trusted, so it can reach beyond the database",
                )
            ],
        ),
        (  # every subcommand is looked at, after one that is fine too
            "ALTER TABLE leads ADD COLUMN IF NOT EXISTS x int, SET UNLOGGED;",
            [
                not_schema(
                    "ALTER TABLE … SET UNLOGGED",
                    "it changes a table's persistence (an unlogged table is emptied after a crash)",
                )
            ],
        ),
        (
            "ALTER TABLE leads DISABLE RULE r;",
            [
                not_schema(
                    "ALTER TABLE … DISABLE RULE",
                    "it turns triggers off or on (the foreign keys' among them) or rules: logic, not schema",
                )
            ],
        ),
        (
            "ALTER TABLE leads SET WITHOUT OIDS;",
            [not_schema("ALTER TABLE … DROP OIDS", "not a change a schema's migration makes")],
        ),
        # inside CREATE SCHEMA
        (
            "CREATE SCHEMA s CREATE TABLE x (id int) GRANT ALL ON x TO PUBLIC;",
            [not_schema("GRANT … TO PUBLIC", ROLES)],
        ),
    ],
)
def test_what_is_not_schema_is_refused_by_name(sql, expected):
    assert found(sql + "\n") == expected


DYNAMIC = "of SQL built at run time (in a DO block): no check can read what it runs"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # the file: a guard, then dynamic SQL making a superuser and running a shell command
        (
            "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'x') THEN\n"
            "        EXECUTE 'CREATE ROLE x SUPERUSER LOGIN';\n"
            "        EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'id');\n    END IF;\nEND\n$$;\n",
            [(6, "schema only", f"EXECUTE {DYNAMIC}"), (7, "schema only", f"EXECUTE {DYNAMIC}")],
        ),
        # a literal is dynamic SQL all the same: a static statement says the same where the checks see it
        (
            "DO $$ BEGIN EXECUTE 'CREATE TABLE t (id int)'; END $$;\n",
            [(3, "schema only", f"EXECUTE {DYNAMIC}")],
        ),
        (
            "DO $$\nDECLARE\n    r record;\nBEGIN\n    FOR r IN EXECUTE 'SELECT 1' LOOP\n"
            "    END LOOP;\nEND\n$$;\n",
            [(7, "schema only", f"FOR … IN EXECUTE {DYNAMIC}")],
        ),
        (
            "DO $$\nDECLARE\n    c refcursor;\nBEGIN\n    OPEN c FOR EXECUTE 'SELECT 1';\nEND\n$$;\n",
            [(7, "schema only", f"OPEN … FOR EXECUTE {DYNAMIC}")],
        ),
        # what the DO block's statements and expressions call
        ("DO $$ BEGIN PERFORM pg_sleep(1); END $$;\n", [calls("pg_sleep", " (in a DO block)")]),
        (
            "DO $$ BEGIN IF pg_terminate_backend(1) THEN NULL; END IF; END $$;\n",
            [calls("pg_terminate_backend", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE x text := pg_read_file('x'); BEGIN NULL; END $$;\n",
            [calls("pg_read_file", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE x int; BEGIN x := pg_backend_pid(); END $$;\n",
            [calls("pg_backend_pid", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE x int; BEGIN x = pg_backend_pid(); END $$;\n",
            [calls("pg_backend_pid", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE a int[]; BEGIN a[pg_backend_pid()] := 1; END $$;\n",
            [calls("pg_backend_pid", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE j jsonb; BEGIN j['a:=b'] := to_jsonb(pg_backend_pid()); END $$;\n",
            [calls("pg_backend_pid", " (in a DO block)")],
        ),
        ("DO $$ BEGIN RAISE NOTICE '%', pg_ls_dir('.'); END $$;\n", [calls("pg_ls_dir", " (in a DO block)")]),
        (
            "DO $$ BEGIN ASSERT true, pg_read_file('m'); END $$;\n",
            [calls("pg_read_file", " (in a DO block)")],
        ),
        (
            "DO $$ DECLARE c CURSOR FOR SELECT lo_import('x'); BEGIN NULL; END $$;\n",
            [calls("lo_import", " (in a DO block)")],
        ),
        (
            "DO $$ BEGIN WHILE pg_sleep(1) IS NULL LOOP EXIT; END LOOP; END $$;\n",
            [calls("pg_sleep", " (in a DO block)")],
        ),
        (
            "DO $$ BEGIN FOR i IN 1..pg_backend_pid() LOOP END LOOP; END $$;\n",
            [calls("pg_backend_pid", " (in a DO block)")],
        ),
        (
            "DO $$ BEGIN SET ROLE postgres; END $$;\n",
            [(3, "schema only", f"SET ROLE is not schema: {SESSION} (in a DO block)")],
        ),
        (
            "DO $$ BEGIN GRANT ALL ON leads TO PUBLIC; END $$;\n",
            [(3, "schema only", f"GRANT … TO PUBLIC is not schema: {ROLES} (in a DO block)")],
        ),
        (
            "DO $$ BEGIN CREATE ROLE x SUPERUSER; END $$;\n",
            [(3, "schema only", f"CREATE ROLE … SUPERUSER is not schema: {ROLES} (in a DO block)")],
        ),
        # what no parser can read
        (
            "DO LANGUAGE plpython3u $$ import os; os.system('id') $$;\n",
            [
                (
                    3,
                    "no logic",
                    "a DO block in plpython3u: the spec's DO blocks are PL/pgSQL, "
                    "the one language the checks read",
                )
            ],
        ),
        (
            "DO $$ BEGIN SELECT 1 INTO undeclared; END $$;\n",
            [
                (
                    3,
                    "plain SQL",
                    'a DO block PL/pgSQL cannot parse ("undeclared" is not a known variable): '
                    "no check can read it",
                )
            ],
        ),
    ],
)
def test_a_do_block_runs_only_what_the_checks_can_read(body, expected):
    assert found(body) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;",
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";',
        "CREATE SCHEMA IF NOT EXISTS app;",
        "CREATE SCHEMA s CREATE TABLE x (id int);",
        "CREATE TABLE IF NOT EXISTS t (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz DEFAULT now(), "
        "u uuid DEFAULT gen_random_uuid(), CHECK (char_length(u::text) > 0));",
        "CREATE INDEX IF NOT EXISTS t_at_idx ON t (at);",
        "CREATE TYPE mood AS ENUM ('ok');",
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'fine';",
        "CREATE TYPE pair AS (a int, b int);",
        "CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);",
        "CREATE SEQUENCE IF NOT EXISTS s;",
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS x int DEFAULT 0;",
        "ALTER TABLE t ADD CONSTRAINT t_x_check CHECK (x >= 0) NOT VALID;",
        "ALTER TABLE t VALIDATE CONSTRAINT t_x_check;",
        "ALTER TABLE t ALTER COLUMN x SET STATISTICS 100;",
        "COMMENT ON TABLE t IS 'what it holds';",
        "COMMENT ON EXTENSION btree_gist IS 'its operator classes';",
        "CREATE STATISTICS IF NOT EXISTS t_s ON id, at FROM t;",
        "CREATE VIEW v AS SELECT 1 AS id;",
        "SELECT 1;",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN "
        "CREATE TYPE mood AS ENUM ('ok'); END IF; END $$;",
        "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM pg_class; n := n + 1; "
        "RAISE NOTICE '%', n; END $$;",
    ],
)
def test_what_a_schema_is_made_of_passes(sql):
    assert found(sql + "\n") == []


def test_the_specs_own_sql_is_schema_only(project_dir):
    """The real migrations stay within the rule: their statements, their DO blocks' guards."""
    spec = Spec.load(project_dir / SPEC_FILENAME)
    blocks = [
        migrations.Migration(Path(b.name), n, b.sql) for n, b in enumerate(spec.blocks_of("migration"), 1)
    ]
    found = rules.check_files(blocks, "api/db/migrations", lint.allowed_objects(spec))
    assert [v for v in found if v.rule in (rules.SCHEMA_ONLY, rules.NO_LOGIC, rules.PLAIN_SQL)] == []


def test_trusted_extensions_are_postgresql_15s_list():
    """`trusted = true` in PostgreSQL 15's contrib control files (adminpack, dblink, file_fdw,
    postgres_fdw, pageinspect, … are not)."""
    assert "btree_gist" in scope.TRUSTED_EXTENSIONS  # the spec's one extension
    assert not {"adminpack", "dblink", "file_fdw", "postgres_fdw", "pageinspect", "plpython3u"} & (
        scope.TRUSTED_EXTENSIONS
    )


def test_a_statement_no_list_names_is_refused_by_its_parser_name():
    """The rule is an allow-list: a statement added to PostgreSQL later is refused until decided."""
    from pglast import ast

    class FutureStmt(ast.Node):  # what a new pglast might parse
        __slots__ = {}

    future = object.__new__(FutureStmt)
    assert scope.beyond_schema(future) == ["FUTURE is not schema: not a statement of a schema"]
    assert scope._words("AlterTSConfiguration") == "ALTER TS CONFIGURATION"


def test_the_rule_has_its_next_step():
    assert rules.FIXES[rules.SCHEMA_ONLY].startswith("migrations hold this schema's objects only")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP ROLE a, b;", [(3, "not destructive", "DROP ROLE on a, b")]),
        ("DROP ROLE CURRENT_USER;", [(3, "not destructive", "DROP ROLE on CURRENT_USER")]),
        ("DROP OWNED BY SESSION_USER;", [(3, "not destructive", "DROP OWNED on SESSION_USER")]),
        ("DROP SUBSCRIPTION s;", [(3, "not destructive", "DROP SUBSCRIPTION on s")]),
        ("DROP USER MAPPING FOR app SERVER s;", [(3, "not destructive", "DROP USER MAPPING on s")]),
        (
            "DROP TABLESPACE t;",
            [
                (3, "one transaction", "DROP TABLESPACE cannot run inside a transaction block"),
                (3, "not destructive", "DROP TABLESPACE on t"),
            ],
        ),
        ("ALTER TABLE leads ALTER COLUMN id SET GENERATED BY DEFAULT;", []),  # an identity, not restarted
        ("ALTER SEQUENCE s INCREMENT BY 2;", []),
        (
            "ALTER TABLE leads ALTER COLUMN x DROP EXPRESSION;",
            [(3, "not destructive", "DROP EXPRESSION (a generated column's values stay, frozen) on leads.x")],
        ),
        (
            "ALTER TABLE leads ALTER COLUMN id DROP IDENTITY;",
            [(3, "not destructive", "DROP IDENTITY on leads.id")],
        ),
    ],
)
def test_what_drops_or_restarts_is_destructive_by_name(sql, expected):
    assert found(sql + "\n") == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            f"DO LANGUAGE {'p' * 50} $$ x $$;\n",
            f"a DO block in {'p' * 38} …: the spec's DO blocks are PL/pgSQL",
        ),
        ("DO $$ DECLARE x int; BEGIN x:=pg_backend_pid(); END $$;\n", "calls pg_backend_pid()"),
    ],
)
def test_a_do_block_names_what_it_refuses_in_brief(body, expected):
    ((_, _, what),) = found(body)
    assert what.startswith(expected), what


def test_a_do_block_statement_the_checks_misread_is_refused_each(monkeypatch):
    """PL/pgSQL parsed the block; should the checks' own reading of a part fail, it is refused."""
    monkeypatch.setattr(rules, "_assignment", lambda query: "(")
    body = "DO $$ DECLARE x int; BEGIN x := 1;\nx := 2; END $$;\n"
    assert found(body) == [
        (3, "plain SQL", "a statement of a DO block that the checks cannot read"),
        (4, "plain SQL", "a statement of a DO block that the checks cannot read"),
    ]


def test_create_schema_elements_are_each_checked_once():
    sql = (
        "CREATE SCHEMA s\n"
        "    CREATE TABLE x (a text DEFAULT pg_read_file('f'))\n"
        "    CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()\n"
        "    GRANT ALL ON x TO PUBLIC;\n"
    )
    assert found(sql) == [
        calls("pg_read_file"),
        (3, "no logic", "CREATE TRIGGER is logic, not schema"),
        not_schema("GRANT … TO PUBLIC", ROLES),
    ]
