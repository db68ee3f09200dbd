"""db.erd: the committed Mermaid diagram is the live schema's, it parses, and the SVG is a picture."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from leaddb import catalog, erd, workflow
from leaddb.erd import graphviz, mermaid, readme
from leaddb.errors import SchemaDrift

IN_CI = bool(os.environ.get("CI"))
MERMAID_CHECK = Path(__file__).parent / "tools" / "mermaid_check.mjs"
SVG = "{http://www.w3.org/2000/svg}"


def execute(conninfo: str, *statements: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="module")
def model(server, template_db) -> erd.Model:
    return erd.read(server.conninfo(template_db))


def mermaid_block(markdown: str) -> str:
    return re.search(r"```mermaid\n(.*?)```", markdown, re.S).group(1)


def test_the_committed_diagram_is_the_live_schemas(model, project_dir):
    committed = (project_dir / mermaid.MARKDOWN_PATH).read_text(encoding="utf-8")
    assert committed == mermaid.markdown(model), "docs/schema.md is stale: run `invoke db.erd`"


def test_the_diagram_holds_every_table_column_key_and_enum(model):
    text = mermaid.mermaid(model)
    assert text.startswith("erDiagram\n")
    assert len(model.tables) == 13 and len(model.enums) == 4
    for table in model.tables:
        block = re.search(rf"^    {table.name} \{{\n(.*?)^    \}}$", text, re.S | re.M)
        assert block, table.name
        lines = block.group(1).splitlines()
        assert [line.split()[1] for line in lines] == [c.name for c in table.columns]
    leads = re.search(r"^    leads \{\n(.*?)^    \}$", text, re.S | re.M).group(1)
    assert '        uuid id PK, UK "NOT NULL"' in leads
    assert '        bigint buyer_id FK, UK "NULL"' in leads
    assert '        lead_status status "NOT NULL"' in leads
    assert '        timestamptz received_at "NOT NULL"' in leads
    assert '        char(3) currency FK, UK "NOT NULL"' in leads
    for enum in model.enums:
        block = re.search(rf"^    {enum.name} \{{\n(.*?)^    \}}$", text, re.S | re.M).group(1)
        assert [line.split()[1] for line in block.splitlines()] == list(enum.labels)
    edges = [line for line in text.splitlines() if " : " in line]
    assert len(edges) == len(model.foreign_keys) == 18
    assert '    buyers ||..o{ buyer_offers : "buyer_id: ON DELETE CASCADE"' in edges
    assert '    buyers |o..o{ leads : "buyer_id: ON DELETE RESTRICT"' in edges  # leads.buyer_id may be NULL
    assert (
        '    invoices ||..o{ invoice_line_items : "invoice_id, buyer_id, currency: ON DELETE CASCADE"'
        in edges
    )


def test_a_foreign_key_on_unique_columns_is_one_to_one(fresh_db):
    db = fresh_db(None)
    execute(
        db,
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (id int PRIMARY KEY, parent_id int UNIQUE REFERENCES parent ON DELETE SET NULL)",
    )
    text = mermaid.mermaid(erd.read(db))
    assert '    parent |o..o| child : "parent_id: ON DELETE SET NULL"' in text


def test_the_output_does_not_depend_on_catalog_order(server, template_db, model):
    """Sorted output: the same rows in any order give the same text."""
    params = {"schema": "public"}
    with (
        psycopg.connect(server.conninfo(template_db)) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        rows = [
            cur.execute(catalog.query(name), params).fetchall()
            for name in ("tables", "columns", "key_columns", "enums")
        ]
    tables, columns, keys, enums = rows
    shuffled = erd.build([t["name"] for t in reversed(tables)], columns[::-1], keys[::-1], enums[::-1])
    assert mermaid.markdown(shuffled) == mermaid.markdown(model)
    assert graphviz.dot(shuffled) == graphviz.dot(model)
    assert mermaid.markdown(erd.build([t["name"] for t in tables], columns, keys, enums)) == mermaid.markdown(
        model
    )


# names that Mermaid's lexer does not take as they are: spaces, commas, a leading digit, quotes
AWKWARD = [
    "CREATE TYPE \"odd enum\" AS ENUM ('has space', 'ok', '9lives', 'quote\"d')",
    'CREATE TABLE "Order Lines" ("line no" int PRIMARY KEY, amount numeric(10,2) NOT NULL, '
    '"1st" "odd enum", at timestamp(3) with time zone, tags varchar(20)[])',
    'CREATE TABLE "x-ref" (id int REFERENCES "Order Lines" ON DELETE CASCADE)',
]
WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-\[\]\(\)]*$")


def test_awkward_names_and_types_become_valid_words_and_keep_their_text(fresh_db):
    db = fresh_db(None)
    execute(db, *AWKWARD)
    text = mermaid.mermaid(erd.read(db))
    for line in text.splitlines()[1:]:
        stripped = line.strip()
        if stripped == "}" or " : " in stripped or stripped.startswith("%%"):
            continue
        if stripped.endswith("{"):
            assert WORD.match(stripped[:-2]), line
            continue
        words = stripped.split('"')[0].replace(",", " ").split()
        assert all(WORD.match(w) for w in words[:2]), line
    assert '        numeric(10_2) amount "type numeric(10,2), NOT NULL"' in text
    assert '        integer line_no PK "column line no, NOT NULL"' in text
    # a column of an enum type names the enum's entity
    assert "        odd_enum _1st \"column 1st, type 'odd enum', NULL\"" in text
    assert "    %% odd_enum is enum odd enum\n    odd_enum {" in text
    assert "    %% Order_Lines is table Order Lines\n    Order_Lines {" in text
    assert "timestamptz(3) at" in text and "varchar(20)[] tags" in text
    assert 'enum has_space "label has space"' in text and 'enum _9lives "label 9lives"' in text
    assert 'enum quoted "label quote\'d"' in text
    assert 'Order_Lines |o..o{ x_ref : "id: ON DELETE CASCADE"' in text


def mermaid_prefix() -> Path | None:
    """Where node_modules with mermaid is (LEADDB_MERMAID_DIR; .ci/run installs it)."""
    prefix = os.environ.get("LEADDB_MERMAID_DIR")
    if prefix and shutil.which("node") and (Path(prefix) / "node_modules" / "mermaid").is_dir():
        return Path(prefix)
    return None


def parse_mermaid(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    prefix = mermaid_prefix()
    if prefix is None:
        if IN_CI:
            pytest.fail(
                "CI must check the diagram with mermaid's parser: set LEADDB_MERMAID_DIR (.ci/run does)"
            )
        pytest.skip("mermaid's parser is not installed (node, `npm install mermaid`, LEADDB_MERMAID_DIR)")
    source = tmp_path / "diagram.mmd"
    source.write_text(text, encoding="utf-8", newline="\n")
    return subprocess.run(
        ["node", str(MERMAID_CHECK), str(prefix), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_mermaids_parser_reads_the_committed_diagram(project_dir, tmp_path):
    text = mermaid_block((project_dir / mermaid.MARKDOWN_PATH).read_text(encoding="utf-8"))
    result = parse_mermaid(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "er"
    # the check can fail: a type with spaces is not an attribute word
    broken = parse_mermaid(tmp_path, text.replace("timestamptz created_at", "timestamp with time zone x", 1))
    assert broken.returncode == 1 and "Parse error" in broken.stderr


def test_mermaids_parser_reads_awkward_names(fresh_db, tmp_path):
    db = fresh_db(None)
    execute(db, *AWKWARD)
    result = parse_mermaid(tmp_path, mermaid.mermaid(erd.read(db)))
    assert result.returncode == 0, result.stderr


def test_the_svg_is_a_well_formed_picture_of_every_table_and_edge(model, tmp_path):
    if graphviz.dot_program() is None:
        if IN_CI:
            pytest.fail("CI must render the SVG: install Graphviz (.ci/run does)")
        pytest.skip("Graphviz's dot is not on PATH")
    path = graphviz.svg(model, tmp_path / "schema.svg")
    root = ET.parse(path).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width").removesuffix("pt")) > 500
    nodes = root.findall(f".//{SVG}g[@class='node']")
    edges = root.findall(f".//{SVG}g[@class='edge']")
    assert len(nodes) == len(model.tables) + len(model.enums)
    assert len(edges) == len(model.foreign_keys)
    titles = {n.find(f"{SVG}title").text for n in nodes}
    assert titles == {t.name for t in model.tables} | {e.name for e in model.enums}
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"ON DELETE CASCADE", "ON DELETE RESTRICT", "duplicate_of_lead_id", "timestamptz"} <= texts
    assert graphviz.dot(model) == graphviz.dot(model)  # deterministic source


def test_drift_fails_when_the_committed_diagram_is_stale(fresh_db, project_dir, tmp_path):
    db = fresh_db()
    docs = tmp_path / "docs"
    docs.mkdir()
    committed = (project_dir / mermaid.MARKDOWN_PATH).read_text(encoding="utf-8")
    (docs / "schema.md").write_text(committed, encoding="utf-8", newline="\n")
    workflow.check_diagram(db, tmp_path)  # up to date
    execute(db, "ALTER TABLE buyers ADD COLUMN nickname text")
    with pytest.raises(SchemaDrift) as caught:
        workflow.check_diagram(db, tmp_path)
    message = str(caught.value)
    assert message.startswith("SCHEMA_DRIFT: docs/schema.md is stale: first difference at line")
    assert "live:      " in message and "text nickname" in message
    assert "run `invoke db.erd`" in message
    (docs / "schema.md").write_bytes(b"\xff\xfe not UTF-8\n")
    with pytest.raises(SchemaDrift, match="docs/schema.md is stale: first difference at line 1"):
        workflow.check_diagram(db, tmp_path)
    (docs / "schema.md").unlink()
    with pytest.raises(SchemaDrift, match="docs/schema.md is missing"):
        workflow.check_diagram(db, tmp_path)


def test_the_task_writes_the_diagram_and_the_svg(fresh_db, project_dir, tmp_path):
    db = fresh_db()
    markdown, picture = tmp_path / "out" / "schema.md", tmp_path / "out" / "schema.svg"
    workflow.diagram(
        workflow.Options("dsn", db, project_dir=project_dir), markdown_path=markdown, svg_path=picture
    )
    assert markdown.read_bytes() == (project_dir / mermaid.MARKDOWN_PATH).read_bytes()
    assert b"\r" not in markdown.read_bytes()
    assert picture.is_file() == (graphviz.dot_program() is not None)


# -- the diagram embedded in the README --------------------------------------------------------


def test_the_readme_embeds_the_live_diagram(model, project_dir):
    text = (project_dir / readme.README_PATH).read_text(encoding="utf-8")
    assert readme.README_BEGIN in text and readme.README_END in text
    assert readme.embed(text, model) == text, "README.md's diagram is stale: run `invoke db.erd`"
    assert readme.embedded(model) in text


def test_embed_replaces_only_the_block_between_the_markers(model):
    around = f"# title\n\ntext\n{readme.README_BEGIN}\nold\nlines\n{readme.README_END}\nafter\n"
    done = readme.embed(around, model)
    assert (
        done
        == f"# title\n\ntext\n{readme.README_BEGIN}\n{readme.embedded(model)}{readme.README_END}\nafter\n"
    )
    assert readme.embed(done, model) == done  # idempotent
    assert readme.embed("no markers\n", model) is None
    assert readme.embed(f"{readme.README_END}\n{readme.README_BEGIN}\n", model) is None  # out of order


def test_a_readme_that_is_not_utf8_is_left_alone_and_said(tmp_path):
    model = erd.Model((), (), ())
    path = tmp_path / "README.md"
    data = f"{readme.README_BEGIN}\nold\n{readme.README_END}\n\xe9t\xe9\n".encode("latin-1")
    path.write_bytes(data)
    assert (
        readme.update(path, model, "README.md")
        == "note: README.md is not UTF-8: its diagram block was left alone"
    )
    assert path.read_bytes() == data
    path.write_bytes(data.decode("latin-1").encode("utf-8"))
    assert readme.update(path, model, "README.md") == "updated the diagram in README.md"
    assert readme.embedded(model) in path.read_text(encoding="utf-8")
    assert readme.update(path, model, "README.md") is None  # up to date: nothing to say


def test_drift_fails_when_the_readmes_diagram_is_stale_and_the_task_rewrites_it(
    fresh_db, project_dir, tmp_path
):
    db = fresh_db()
    (tmp_path / "docs").mkdir()
    shutil.copy(project_dir / mermaid.MARKDOWN_PATH, tmp_path / mermaid.MARKDOWN_PATH)
    shutil.copy(project_dir / readme.README_PATH, tmp_path / readme.README_PATH)
    workflow.check_diagram(db, tmp_path)  # both up to date
    text = (tmp_path / readme.README_PATH).read_text(encoding="utf-8")
    (tmp_path / readme.README_PATH).write_text(
        text.replace("    buyers {", "    buyers_renamed {", 1), encoding="utf-8", newline="\n"
    )
    with pytest.raises(SchemaDrift) as caught:
        workflow.check_diagram(db, tmp_path)
    assert str(caught.value).startswith("SCHEMA_DRIFT: the diagram in README.md is stale: first difference")
    assert "buyers_renamed" in str(caught.value) and "run `invoke db.erd`" in str(caught.value)
    for name in ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md"):
        shutil.copy(project_dir / name, tmp_path / name)
    shutil.copytree(project_dir / "api", tmp_path / "api")
    workflow.diagram(workflow.Options("dsn", db, project_dir=tmp_path), svg_path=tmp_path / "schema.svg")
    assert (tmp_path / readme.README_PATH).read_bytes() == (project_dir / readme.README_PATH).read_bytes()
    workflow.check_diagram(db, tmp_path)
