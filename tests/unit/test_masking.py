"""No message derived from a DSN holds its password, or any word of it (issue 17, section 4).

Random passwords - spaces, quotes, ``=``, ``@``, ``/``, backslashes, unicode - are put into DSNs
of both forms, well formed and malformed in many ways, and every message the tool makes from
such a DSN is held to that: libpq's parse error, the ``--dsn`` check, the DSN backend's, the DSN
as shown, and the raw DSN itself passed through ``scrub``. Server-free (no connection is made).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from psycopg import Error as PsycopgError
from psycopg.conninfo import conninfo_to_dict

from leaddb import cli, masking
from leaddb.backends.dsn import DsnBackend
from leaddb.errors import LeadDbError

SPECIAL = list(" '\"=@:/?&#\\%,;$") + ["é", "€", "😀", "ß", "\u3000", "\t"]
character = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="*\x00"),
)


def _refusals(dsn: str) -> list[Exception]:
    """The errors libpq and the tool give for ``dsn``."""
    found: list[Exception] = []
    try:
        conninfo_to_dict(dsn)
    except (PsycopgError, ValueError) as exc:
        found.append(exc)
    try:
        cli.connection("dsn", dsn, "auto", "")
    except LeadDbError as exc:
        found.append(exc)
    return found


# a password word that is one of libpq's keywords (``user``) may show where a message names that
# keyword (leaddb/masking.py says why)
KEYWORDS = masking._keywords()
# what the messages say whatever the password: libpq's and the tool's own wording, gathered from
# DSNs broken in each way libpq names; a password word inside that text ("rea" in "can read") is
# no leak when it shows there
WORDING = " ".join(
    message
    for dsn in (
        "host=x password=a b",
        "host=x password='a",
        "postgresql://app:a@h/d?x=y=z",
        "postgresql://app:a@h/d?x",
        "postgresql://app:a@h:port/d",
        "postgresql://app:a@h/d?password=%zz",
        "postgresql://app@[h/d",
        "host=x dbname='a",
        "x=y",
        "postgresql://app:a b@h/d junk",
    )
    for message in (masking.scrub(f"cannot use {dsn!r}: no", dsn), *(str(e) for e in _refusals(dsn)))
)
word = st.text(character, min_size=3, max_size=10).filter(
    lambda w: len(w.strip()) >= masking.MIN_PIECE and not KEYWORDS & set(w.split()) and w not in WORDING
)
password = st.lists(word, min_size=1, max_size=4).map(" ".join)


def words(secret: str) -> list[str]:
    """What must never show: the password, and each word of it (white space apart) long enough
    to be told from ordinary text (``masking.MIN_PIECE``)."""
    return [secret, *(w for w in secret.split() if len(w) >= masking.MIN_PIECE)]


def escaped(secret: str) -> str:
    return secret.replace("\\", "\\\\").replace("'", "\\'")


# each form: the DSN before the password, and after it
FORMS = {
    "key=value, quoted": ("host=db.example port=5432 user=app password='", "' dbname=leadgen", True),
    "key=value, as typed": ("host=db.example user=app password=", " dbname=leadgen", False),
    "sslpassword": ("host=db.example sslpassword='", "' dbname=leadgen", True),
    "URI, encoded": ("postgresql://app:", "@db.example:5432/leadgen", "uri"),
    "URI, as typed": ("postgresql://app:", "@db.example:5432/leadgen", False),
    "URI query, encoded": ("postgresql://app@db.example/leadgen?password=", "", "uri"),
    "URI query, as typed": ("postgres://app@db.example/leadgen?sslmode=disable&password=", "", False),
}


def spelled(secret: str, how) -> str:
    if how == "uri":
        return quote(secret, safe="")
    return secret.replace("\\", "\\\\").replace("'", "\\'") if how else secret


@st.composite
def dsns(draw) -> tuple[str, str]:
    """A DSN holding ``secret``, malformed in many ways - characters put in or taken out of the
    password and anywhere after it, the DSN cut short or doubled - except where it would no
    longer say which part is the password: the key (or ``user:``) before it and, in a URI, the
    ``@`` after it stay (without that ``@``, ``postgresql://app:000`` is the host ``app`` on port
    000, and no one can tell)."""
    secret = draw(password)
    before, after, how = FORMS[draw(st.sampled_from(sorted(FORMS)))]
    dsn = before + spelled(secret, how) + after
    fixed = len(before) + (1 if after.startswith("@") else 0)  # characters that stay, then the rest
    for _ in range(draw(st.integers(0, 3))):
        change = draw(st.sampled_from(["insert", "delete", "truncate", "append", "double"]))
        at = draw(st.integers(len(before), len(dsn)))
        protected = at == len(dsn) - len(after) and after.startswith("@")
        if change == "insert":
            dsn = dsn[:at] + draw(st.sampled_from([" ", "'", '"', "=", "@", "\\", "%", "x"])) + dsn[at:]
        elif change == "delete" and not protected and at < len(dsn):
            dsn = dsn[:at] + dsn[at + 1 :]
        elif change == "truncate" and at >= len(dsn) - len(after) + fixed - len(before):
            dsn = dsn[:at]
        elif change == "append":
            dsn += draw(st.sampled_from([" junk", " x=", "&y", " password", "'", " dbname='x"]))
        elif change == "double":
            dsn = dsn + " " + dsn
    return secret, dsn


def messages(dsn: str, tmp: Path) -> list[str]:
    """Every message the tool makes of ``dsn`` without a server."""
    said = [masking.masked(dsn), masking.scrub(dsn, dsn), masking.scrub(f"cannot use {dsn!r}: no", dsn)]
    try:
        conninfo_to_dict(dsn)
    except (PsycopgError, ValueError) as exc:  # ValueError: a %-escape that is not UTF-8
        said.append(masking.scrub(str(exc), dsn))
    try:
        cli.connection("dsn", dsn, "auto", "")
    except LeadDbError as exc:
        said.append(str(exc))
    try:
        said.append(DsnBackend(tmp, dsn).describe())
    except LeadDbError as exc:
        said.append(str(exc))
    return said


@settings(max_examples=10 if os.environ.get("LEADDB_MUTATION") else 400, deadline=None)
@given(case=dsns())
@example(case=("correct horse battery staple", "host=db.example password=correct horse battery staple"))
@example(case=("p@ss word", "postgresql://app:p@ss word@db.example/leadgen"))
@example(case=('it\'s "quoted"', "host=x password='it\\'s \"quoted\"' dbname=d"))
@example(case=("a=b c=d", "host=x password=a=b c=d"))
@example(case=("0000000000 0000000000", "postgresql://app:0000000000 0000000000db.example:5432/leadgen junk"))
@example(case=("00&", "postgres://app@db.example/leadgen?sslmode=disable&password=00&"))
def test_no_message_holds_the_password_or_a_word_of_it(case, tmp_path_factory):
    secret, dsn = case
    note(f"dsn={dsn!r}")
    for message in messages(dsn, tmp_path_factory.getbasetemp()):
        for shown in words(secret):
            assert shown not in message, (shown, message)


def test_libpq_s_quote_of_a_dsn_it_cannot_read_is_not_echoed():
    """The issue's case: libpq quoted "horse", a word of the password."""
    dsn = "host=db.example user=app password=correct horse battery staple dbname=leadgen"
    with pytest.raises(LeadDbError) as refused:
        cli.connection("dsn", dsn, "auto", "")
    message = str(refused.value)
    assert message.startswith('--dsn: not a connection string libpq can read (missing "=" after "…" in')
    assert "next step: e.g. postgresql://user@host:5432/dbname" in message  # the rest stays readable


def test_a_readable_dsn_is_shown_with_its_secrets_masked():
    def shown(dsn: str) -> dict:
        return conninfo_to_dict(masking.masked(dsn))

    assert shown("host=h user=u password=s3cret dbname=d") == {
        "host": "h",
        "user": "u",
        "password": "***",
        "dbname": "d",
    }
    assert shown("postgresql://u:s3cret@h/d?sslpassword=k3y") == {
        "user": "u",
        "password": "***",
        "dbname": "d",
        "host": "h",
        "sslpassword": "***",
    }
    assert shown("host=h port=5432") == {"host": "h", "port": "5432"}
    assert masking.masked("host=h password='x y") == masking.UNPARSABLE


def test_a_secret_spilled_into_another_field_is_masked_there_too():
    """``postgresql://u:p@ssw0rd@h`` is read as the password ``p`` on the host ``ssw0rd@h``: a
    connection error quoting that host would quote the rest of the password."""
    dsn = "postgresql://u:p@ssw0rd@h/d"
    assert "ssw0rd" not in masking.masked(dsn)
    assert masking.scrub('could not translate host name "ssw0rd@h" to address', dsn) == (
        'could not translate host name "***@h" to address'
    )


def test_scrub_leaves_a_message_without_secrets_as_it_is():
    message = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert masking.scrub(message, "host=127.0.0.1 port=1 user=u password=hunter22") == message
    assert masking.scrub(message, "") == message
    assert masking.scrub("", "password=x") == ""


def test_a_message_the_masks_cannot_clean_is_withheld():
    """Masking a piece can join its neighbours into another secret: then none of it is shown."""
    dsn = "host=h password='a***c qqq'"
    assert masking.scrub("see aqqqc", dsn) == masking.WITHHELD
    assert masking.scrub("see qqq", dsn) == "see ***"


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db.example user=app password=ab dbname=leadgen",
        "postgresql://app:ab@db.example/leadgen",
        "postgres://app@db.example/leadgen?sslmode=disable&password=ab&",
    ],
)
def test_a_dsn_quoted_whole_is_shown_masked_even_with_a_short_password(dsn):
    """A password shorter than ``MIN_PIECE`` is not hunted for in a message, but a message that
    quotes the DSN itself (as typed, or as ``repr`` shows it) shows it masked."""
    for message in (dsn, f"cannot use {dsn!r}: no", f"cannot use {dsn}"):
        text = masking.scrub(message, dsn)
        assert "=ab" not in text and ":ab@" not in text, text
        assert masking.MASK in text
    assert masking.scrub("user app was refused", dsn) == "user app was refused"
