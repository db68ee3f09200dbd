"""The rules about database names, marks and stored settings that need no server (issue 17):
which names the project's database may have (one rule for every backend), the side names a
DSN reset builds under, the mark that ties a comment to one database, and how a stored list
setting reads back as its elements."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from leaddb import janitor, runner
from leaddb.backends import database
from leaddb.backends.dsn import NEW_SUFFIX, OLD_SUFFIX, side_name

NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)), max_size=70
)


@given(NAMES)
@example("postgres")
@example("template0")
@example("x" * 63)
@example("x" * 64)
@example("é" * 31 + "x")
@example("é" * 32)
@example("")
def test_a_database_name_is_refused_exactly_when_the_server_would_not_keep_it_or_it_is_its_own(name):
    size = len(name.encode("utf-8"))
    problem = janitor.name_problem(name)
    assert (problem is None) == (0 < size <= 63 and name not in ("postgres", "template0", "template1"))
    assert (janitor.length_problem(name) is None) == (size <= 63)
    if size > 63:
        assert f"the name is {size} bytes in UTF-8 and PostgreSQL keeps at most 63" in problem


def test_the_refusal_says_where_the_name_came_from_and_the_limit():
    with pytest.raises(janitor.BackendError) as refused:
        janitor.check_target("é" * 32, action="create", source="POSTGRES_DB (.env)")
    message = str(refused.value)
    assert message.startswith("refusing to create the '" + "é" * 32 + "' database: the name is 64 bytes")
    assert "the server would cut it to '" + "é" * 31 + "'" in message
    assert (
        "next step: set POSTGRES_DB (.env) to a database of the project's own (e.g. leadgen), at most 63"
        in message
    )


@given(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1)
)
def test_side_names_always_fit_and_differ_from_the_target_and_each_other(dbname):
    new, old = side_name(dbname, NEW_SUFFIX), side_name(dbname, OLD_SUFFIX)
    for name, suffix in ((new, NEW_SUFFIX), (old, OLD_SUFFIX)):
        assert janitor.length_problem(name) is None and name.endswith(suffix)
        assert name != dbname
    assert new != old


COMMENTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(COMMENTS, st.integers(1, 2**32 - 1), st.sampled_from(["database", "scratch database", "template"]))
def test_a_mark_is_the_comments_last_line_and_belongs_to_one_oid_and_kind(comment, oid, kind):
    text = janitor.mark_text(kind, oid, "a note: with colons")
    marked = f"{comment}\n{text}" if comment else text
    head, mark = janitor.split_comment(marked)
    assert head == comment and mark == (kind, oid, "a note: with colons")
    assert janitor.is_marked(marked, oid, kind)
    assert not janitor.is_marked(marked, oid + 1, kind)
    assert not janitor.is_marked(marked, oid, "other kind")
    assert database.user_comment(marked) == comment


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "",
        "leaddb database (oid 12)",
        "leaddb database (oid 12): x\nmore after it",
        "leaddb database (oid x): x",
    ],
)
def test_a_comment_without_a_well_formed_last_line_carries_no_mark(comment):
    assert not janitor.is_marked(comment, 12, "database")
    assert janitor.split_comment(comment)[1] is None
    assert database.user_comment(comment) == (comment or "")


def test_an_earlier_versions_whole_comment_mark_is_not_a_users_comment():
    assert database.user_comment(database.LEGACY_MARK) == ""
    assert not janitor.is_marked(database.LEGACY_MARK, 1, "database")


def _flattened(item: str, quoted: bool) -> str:
    """One element as the server writes a list setting back (it quotes what needs quoting)."""
    return '"' + item.replace('"', '""') + '"' if quoted else item


ELEMENTS = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1
)
SIMPLE = st.from_regex(r"[a-z_][a-z0-9_$]{0,10}", fullmatch=True)


@given(st.lists(st.one_of(st.tuples(ELEMENTS, st.just(True)), st.tuples(SIMPLE, st.just(False))), min_size=1))
def test_a_stored_list_setting_reads_back_as_its_elements(items):
    stored = ", ".join(_flattened(item, quoted) for item, quoted in items)
    assert database.split_list(stored) == [item for item, _ in items]


@pytest.mark.parametrize(
    ("stored", "elements"),
    [
        ('"a b", "C", public', ["a b", "C", "public"]),
        ('"$user", public', ["$user", "public"]),
        ('"x""y",z', ['x"y', "z"]),
        ("  a ,b  ", ["a", "b"]),
    ],
)
def test_list_settings_as_postgresql_stores_them(stored, elements):
    assert database.split_list(stored) == elements


def test_every_pinned_setting_goes_into_the_startup_options_after_the_users_own(monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=8MB")
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(runner.session_conninfo("dbname=x options='-c search_path=mine'"))
    assert params["options"].startswith("-c search_path=mine -c search_path=public ")  # the user's, then ours
    assert params["client_encoding"] == "UTF8" and params["application_name"].startswith("leaddb client pid ")
    for name, value in runner.SESSION_SETTINGS:
        assert f"-c {name}={value}" in params["options"]
    from_env = conninfo_to_dict(runner.session_conninfo("dbname=x"))["options"]
    assert from_env.startswith("-c work_mem=8MB -c search_path=public")  # PGOPTIONS is kept, not replaced
