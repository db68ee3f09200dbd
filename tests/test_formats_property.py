"""Property tests: the database's format checks agree with the spec's "Format rules" table.

The Python model of each rule is read from the spec itself (its regular expressions and length
limits), so a test fails when the database and the spec disagree, whichever of them drifted.
Generated values go through the real columns (an UPDATE of one seeded row inside a transaction
that is always rolled back), so the column type takes part too: `char(3)` pads and truncates."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from psycopg import errors, sql
from psycopg.types.range import Range

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPEC_TEXT = (PROJECT_DIR / "Technical-Architecture-Specification.md").read_text(encoding="utf-8")
TOO_LONG = "too long for its char(n) column"

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # state is rolled back per example
)


# --------------------------------------------------------------------------------------------------
# the spec's rules, as a Python model


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    min_length: int | None = None
    max_length: int | None = None

    def allows(self, value: str) -> bool:
        if self.min_length is not None and len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return all(re.fullmatch(p, value) for p in self.patterns)


def spec_rules(text: str = SPEC_TEXT) -> dict[str, Rule]:
    """The rows of the spec's "Format rules" table: value name -> Rule."""
    section = text.split("### Format rules", 1)[1].split("\n#", 1)[0]
    rules = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or cells[0] in ("value", "") or set(cells[0]) <= set("-: "):
            continue
        rule = cells[2].replace("\\|", "|")
        patterns = tuple(p.replace("''", "'") for p in re.findall(r"~ '((?:[^']|'')*)'", rule))
        at_most = re.search(r"char_length\(\w+\) <= (\d+)", rule)
        between = re.search(r"char_length\(\w+\) BETWEEN (\d+) AND (\d+)", rule)
        low, high = (int(between[1]), int(between[2])) if between else (None, None)
        rules[cells[0]] = Rule(patterns, low, int(at_most[1]) if at_most else high)
    return rules


RULES = spec_rules()


def bpchar(value: str, length: int | None) -> str | None:
    """What a `char(length)` column stores for `value` on INSERT/UPDATE; None when PostgreSQL refuses.

    Excess characters are an error unless they are all spaces (then they are cut off); short values
    are padded with spaces."""
    if length is None:
        return value
    if len(value) > length:
        if value[length:].strip(" "):
            return None
        value = value[:length]
    return value.ljust(length)


def expected_verdict(rule: Rule, constraint: str, value: str, char_length: int | None = None) -> str | None:
    stored = bpchar(value, char_length)
    if stored is None:
        return TOO_LONG
    return None if rule.allows(stored) else constraint


# --------------------------------------------------------------------------------------------------
# the database side


def insert(conn, table: str, **values):
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    return conn.execute(query, list(values.values())).fetchone()[0]


@pytest.fixture
def rows(conn) -> dict[str, object]:
    """One row in every table that carries a format check."""
    market = insert(
        conn, "markets", code="austin", name="Austin", country_code="US", timezone="America/Chicago"
    )
    vertical = insert(conn, "verticals", slug="roofing", name="Roofing")
    policy = insert(conn, "validation_policies", vertical_id=vertical, name="std", duplicate_window="30 days")
    routing = insert(conn, "routing_policies", name="default", strategy="priority")
    offer = insert(
        conn, "offers", vertical_id=vertical, market_id=market, validation_policy_id=policy,
        routing_policy_id=routing, name="Roof quote", base_price_cents=2500, currency="USD",
    )  # fmt: skip
    source = insert(conn, "sources", name="acme", api_key_hash="h1")
    buyer = insert(conn, "buyers", name="Roofer", email="ops@roofer.example.com", currency="USD")
    insert(conn, "buyer_offers", buyer_id=buyer, offer_id=offer, price_cents=3000, currency="USD")
    lead = insert(
        conn, "leads", source_id=source, offer_id=offer, idempotency_key="req-1",
        dedupe_key="a" * 64, currency="USD",
    )  # fmt: skip
    area = insert(conn, "buyer_service_areas", buyer_id=buyer, market_id=market, postal_code="78701")
    exclusivity = insert(
        conn,
        "offer_exclusivities",
        buyer_id=buyer,
        offer_id=offer,
        postal_code="78701",
        period=Range(None, None),
    )
    return {
        "markets": market, "verticals": vertical, "buyers": buyer, "leads": lead,
        "buyer_service_areas": area, "offer_exclusivities": exclusivity,
    }  # fmt: skip


def verdict(conn, rows, table: str, column: str, value: str) -> str | None:
    """None if the column accepts `value`, else the violated constraint (or TOO_LONG). Never persists."""
    query = sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(
        sql.Identifier(table), sql.Identifier(column)
    )
    try:
        with conn.transaction(force_rollback=True):
            assert conn.execute(query, [value, rows[table]]).rowcount == 1
    except errors.CheckViolation as exc:
        return exc.diag.constraint_name
    except errors.StringDataRightTruncation:
        return TOO_LONG
    return None


def check_columns(conn, rows, rule_name: str, columns, value: str, *, must_be_invalid: bool = False) -> None:
    """Every (table, column, constraint, char_length) gives the verdict the spec's rule predicts."""
    rule = RULES[rule_name]
    note(f"value={value!r} len={len(value)}")
    if must_be_invalid:  # guards the generator: a near miss must be outside the spec's rule
        assert not rule.allows(value), f"generator produced a value the spec allows: {value!r}"
    for table, column, constraint, char_length in columns:
        expected = expected_verdict(rule, constraint, value, char_length)
        assert verdict(conn, rows, table, column, value) == expected, (table, column)


def tagged(valid_or_noise, near_miss):
    """(value, must_be_invalid) pairs: near misses must be invalid, noise may be either."""
    return st.one_of(near_miss.map(lambda v: (v, True)), valid_or_noise.map(lambda v: (v, False)))


TEXT_CHARS = st.characters(
    exclude_categories=("Cs",), exclude_characters="\x00"
)  # PostgreSQL text can't hold these
DIGITS, HEX = string.digits, "0123456789abcdef"
UPPER, LOWER, LETTERS = string.ascii_uppercase, string.ascii_lowercase, string.ascii_letters


def chars(alphabet: str, min_size: int = 0, max_size: int | None = None):
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=max_size)


def insert_at(base: st.SearchStrategy[str], extra: st.SearchStrategy[str]):
    """`base` with `extra` inserted at some position."""
    return st.tuples(base, extra, st.integers(0, 10**6)).map(
        lambda t: t[0][: t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1) :]
    )


def replace_one(base: st.SearchStrategy[str], bad: st.SearchStrategy[str]):
    """`base` with one character replaced by `bad`."""
    return st.tuples(base, bad, st.integers(0, 10**6)).map(
        lambda t: t[0][: t[2] % len(t[0])] + t[1] + t[0][t[2] % len(t[0]) + 1 :]
    )


# --------------------------------------------------------------------------------------------------
# the model is the spec's table


def test_every_format_rule_is_read_from_the_spec():
    assert set(RULES) == {
        "email", "postal code", "phone", "currency", "country", "slug, code", "time zone", "dedupe key",
        "idempotency key",
    }  # fmt: skip
    assert RULES["email"].max_length == 254 and len(RULES["email"].patterns) == 1
    assert (RULES["postal code"].min_length, RULES["postal code"].max_length) == (3, 10)
    assert (RULES["idempotency key"].min_length, RULES["idempotency key"].max_length) == (1, 255)
    assert RULES["phone"].patterns == (r"^\+[1-9][0-9]{7,14}$",)
    assert RULES["dedupe key"].patterns == ("^[0-9a-f]{64}$",)


def test_model_classifies_the_spec_prose_examples_like_the_spec():
    postal = RULES["postal code"]
    accepted = ["78701", "78701-1234", "SW1A 1AA", "K1A 0B1", "1012 AB", "100-0001", "01310-100"]
    rejected = ["sw1a 1aa", " 78701", "78701 ", "SW1A  1AA", "78701--1234", "12"]
    assert [postal.allows(v) for v in accepted] == [True] * len(accepted)
    assert [postal.allows(v) for v in rejected] == [False] * len(rejected)
    assert not RULES["email"].allows("user@localhost")
    assert RULES["email"].allows("o'brien+x@mail.example.org")
    tz = RULES["time zone"]
    assert all(
        tz.allows(v) for v in ["UTC", "America/Chicago", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
    )
    assert not RULES["currency"].allows("US ") and not RULES["currency"].allows("usd")


FORMAT_CONSTRAINTS = {
    "email": ["buyers_email_format_check", "leads_email_format_check"],
    "postal code": [
        "leads_postal_code_format_check",
        "buyer_service_areas_postal_code_format_check",
        "offer_exclusivities_postal_code_format_check",
    ],
    "phone": ["leads_phone_format_check"],
    "country": ["markets_country_code_format_check"],
    "slug, code": ["verticals_slug_format_check", "markets_code_format_check"],
    "time zone": ["markets_timezone_format_check"],
    "dedupe key": ["leads_dedupe_key_format_check"],
}


def test_catalog_constraints_carry_the_spec_regexes_verbatim(conn):
    found = dict(
        conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
        ).fetchall()
    )
    currency_tables = [
        t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'currency' ORDER BY 1"
        )
    ]  # fmt: skip
    assert currency_tables == ["buyer_offers", "buyers", "invoice_line_items", "invoices", "leads", "offers"]
    expectations = FORMAT_CONSTRAINTS | {"currency": [f"{t}_currency_format_check" for t in currency_tables]}
    for rule_name, constraints in expectations.items():
        for constraint in constraints:
            for pattern in RULES[rule_name].patterns:
                assert "'" + pattern.replace("'", "''") + "'" in found[constraint], (constraint, pattern)


# --------------------------------------------------------------------------------------------------
# email


EMAIL_COLUMNS = [
    ("buyers", "email", "buyers_email_format_check", None),
    ("leads", "email", "leads_email_format_check", None),
]
LOCAL_CHARS = LETTERS + DIGITS + ".!#$%&'*+/=?^_`{|}~-"
ALNUM = LETTERS + DIGITS
label = st.one_of(
    chars(ALNUM, 1, 1),
    st.integers(0, 61).flatmap(
        lambda k: st.tuples(chars(ALNUM, 1, 1), chars(ALNUM + "-", k, k), chars(ALNUM, 1, 1)).map("".join)
    ),
)
local_part = chars(LOCAL_CHARS, 1, 64)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
valid_email = st.builds("{}@{}".format, local_part, domain).filter(lambda e: len(e) <= 254)
FORBIDDEN_IN_EMAIL = st.sampled_from(
    [" ", '"', "(", ")", ",", ";", ":", "<", ">", "[", "]", "\\", "\n", "\t", "é", "ß"]
)

email_near_miss = st.one_of(
    valid_email.map(lambda e: e.replace("@", "", 1)),  # no @
    st.builds("{}@@{}".format, local_part, domain),  # two @
    domain.map("@{}".format),  # empty local part
    st.builds("{}@{}".format, local_part, label),  # single-label domain
    st.builds("{}@-{}".format, local_part, domain),  # label starts with a hyphen
    st.builds("{}@{}-.com".format, local_part, label),  # label ends with a hyphen
    st.builds("{}@{}..{}".format, local_part, label, domain),  # empty label
    valid_email.map("{}.".format),  # trailing dot
    st.builds("{}@{}.com".format, local_part, chars(ALNUM, 64, 70)),  # label of 64+ characters
    st.builds("{}@{}".format, insert_at(local_part, FORBIDDEN_IN_EMAIL), domain),
    st.builds("{}@{}".format, local_part, insert_at(domain, st.sampled_from(["_", "é", " ", "!"]))),
    st.builds(lambda d, k: "o" * k + "@" + d, domain, st.integers(200, 300)).filter(lambda e: len(e) > 254),
    valid_email.map("{}\n".format),
)
email_noise = st.one_of(valid_email, st.text(st.sampled_from(LOCAL_CHARS + "@.-é _\n"), max_size=30))


@PROPERTY
@given(valid_email)
@example("x@a.b")
@example("o" * 64 + "@" + ".".join(["a" * 63, "b" * 63, "c" * 61]))  # exactly 254 characters
@example("a@" + "b" * 63 + ".c")
def test_email_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["email"].allows(value)
    check_columns(conn, rows, "email", EMAIL_COLUMNS, value)


@PROPERTY
@given(tagged(email_noise, email_near_miss))
@example(("o" * 64 + "@" + ".".join(["a" * 63, "b" * 63, "c" * 62]), True))  # 255 characters
@example(("user@localhost", True))
def test_email_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "email", EMAIL_COLUMNS, value, must_be_invalid=must_be_invalid)


# --------------------------------------------------------------------------------------------------
# phone


PHONE_COLUMNS = [("leads", "phone", "leads_phone_format_check", None)]
valid_phone = st.builds("+{}{}".format, chars("123456789", 1, 1), chars(DIGITS, 7, 14))
phone_near_miss = st.one_of(
    valid_phone.map(lambda p: p[1:]),  # no +
    chars(DIGITS, 7, 14).map("+0{}".format),  # leading 0
    st.builds("+{}{}".format, chars("123456789", 1, 1), chars(DIGITS, 0, 6)),  # too short
    st.builds("+{}{}".format, chars("123456789", 1, 1), chars(DIGITS, 15, 20)),  # too long
    insert_at(valid_phone.map(lambda p: p[1:]), st.sampled_from([" ", "-", "(", ".", "x", "\n"])).map(
        "+{}".format
    ),
    replace_one(valid_phone.map(lambda p: p[2:]), st.sampled_from(["\u0663", "\uff11", "a", "+"])).map(
        "+1{}".format
    ),
    valid_phone.map("{}\n".format),
    valid_phone.map(" {}".format),
    valid_phone.map("+{}".format),
)
phone_noise = st.one_of(valid_phone, chars("+0123456789 -()\u0663", 0, 20))


@PROPERTY
@given(valid_phone)
@example("+12345678")  # 8 digits, the minimum
@example("+123456789012345")  # 15 digits, the maximum
def test_phone_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["phone"].allows(value)
    check_columns(conn, rows, "phone", PHONE_COLUMNS, value)


@PROPERTY
@given(tagged(phone_noise, phone_near_miss))
@example(("+1234567", True))
@example(("+1234567890123456", True))
def test_phone_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "phone", PHONE_COLUMNS, value, must_be_invalid=must_be_invalid)


# --------------------------------------------------------------------------------------------------
# currency and country: char(n) columns


CURRENCY_COLUMNS = [
    ("buyers", "currency", "buyers_currency_format_check", 3),
]  # a currency with no foreign key, so a valid but different code is accepted
COUNTRY_COLUMNS = [("markets", "country_code", "markets_country_code_format_check", 2)]


def letter_code_near_misses(length: int):
    upper = chars(UPPER, length, length)
    return st.one_of(
        chars(LOWER, length, length),  # lower case
        replace_one(upper, st.sampled_from(LOWER)),  # mixed case
        chars(UPPER, 1, length - 1),  # too short (padded with spaces)
        chars(UPPER, length + 1, length + 3),  # too long
        replace_one(
            upper, st.sampled_from(["1", " ", "-", "\u00c4", "\u00c9", "\u0130"])
        ),  # not an ASCII letter
        upper.map(" {}".format),
    )


def letter_code_noise(length: int):
    return st.one_of(
        chars(UPPER, length, length).map(lambda c: c + " " * 2),  # trailing spaces are cut by char(n)
        chars("ABZabz1 \u00c4", 0, length + 2),
    )


@PROPERTY
@given(chars(UPPER, 3, 3))
def test_currency_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["currency"].allows(value)
    check_columns(conn, rows, "currency", CURRENCY_COLUMNS, value)


@PROPERTY
@given(tagged(letter_code_noise(3), letter_code_near_misses(3)))
@example(("usd", True))
@example(("US", True))
@example(("USDX", True))
def test_currency_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "currency", CURRENCY_COLUMNS, value, must_be_invalid=must_be_invalid)


@PROPERTY
@given(chars(UPPER, 2, 2))
def test_country_code_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["country"].allows(value)
    check_columns(conn, rows, "country", COUNTRY_COLUMNS, value)


@PROPERTY
@given(tagged(letter_code_noise(2), letter_code_near_misses(2)))
@example(("us", True))
@example(("U", True))
@example(("USA", True))
def test_country_code_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "country", COUNTRY_COLUMNS, value, must_be_invalid=must_be_invalid)


# --------------------------------------------------------------------------------------------------
# postal code


POSTAL_COLUMNS = [
    ("leads", "postal_code", "leads_postal_code_format_check", None),
    ("buyer_service_areas", "postal_code", "buyer_service_areas_postal_code_format_check", None),
    ("offer_exclusivities", "postal_code", "offer_exclusivities_postal_code_format_check", None),
]
POSTAL_CHARS = DIGITS + UPPER
postal_group = chars(POSTAL_CHARS, 1, 9)
valid_postal = st.one_of(
    postal_group,
    st.builds("{}{}{}".format, postal_group, st.sampled_from([" ", "-"]), postal_group),
).filter(lambda p: 3 <= len(p) <= 10)
postal_near_miss = st.one_of(
    replace_one(valid_postal, st.sampled_from(LOWER)),  # lower case
    valid_postal.map(" {}".format),
    valid_postal.map("{} ".format),
    valid_postal.map("{}-".format),
    valid_postal.map("-{}".format),
    st.builds(
        "{}{}{}".format,
        postal_group,
        st.sampled_from(["  ", "--", " -", "_", ".", "/", "\t", "\u00a0"]),
        postal_group,
    ),
    st.builds("{} {}-{}".format, postal_group, postal_group, postal_group),  # three groups
    chars(POSTAL_CHARS, 0, 2),  # too short
    chars(POSTAL_CHARS, 11, 14),  # too long
    replace_one(valid_postal, st.sampled_from(["\u00c4", "\u0663", "\u00e9"])),
    valid_postal.map("{}\n".format),
)
postal_noise = st.one_of(valid_postal, chars(POSTAL_CHARS[:4] + POSTAL_CHARS[-4:] + "az -_", 0, 12))


@PROPERTY
@given(valid_postal)
@example("ABC")
@example("1234-56789")  # 10 characters, the maximum
def test_postal_code_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["postal code"].allows(value)
    check_columns(conn, rows, "postal code", POSTAL_COLUMNS, value)


@PROPERTY
@given(tagged(postal_noise, postal_near_miss))
@example(("12", True))
@example(("12345-67890", True))
@example(("A B", False))
def test_postal_code_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "postal code", POSTAL_COLUMNS, value, must_be_invalid=must_be_invalid)


# --------------------------------------------------------------------------------------------------
# dedupe key, idempotency key


DEDUPE_COLUMNS = [("leads", "dedupe_key", "leads_dedupe_key_format_check", None)]
valid_dedupe = chars(HEX, 64, 64)
dedupe_near_miss = st.one_of(
    replace_one(valid_dedupe, st.sampled_from("ABCDEF")),  # upper-case hex
    chars(HEX, 63, 63),
    chars(HEX, 65, 66),
    chars(HEX, 0, 10),
    replace_one(valid_dedupe, st.sampled_from(["g", "z", " ", "-", "\u0663", "\uff10"])),
    valid_dedupe.map("{}\n".format),
    valid_dedupe.map(" {}".format),
    chars(HEX, 62, 62).map("0x{}".format),
)
dedupe_noise = st.one_of(valid_dedupe, chars(HEX + "ABCg \n", 62, 66))


@PROPERTY
@given(valid_dedupe)
def test_dedupe_key_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["dedupe key"].allows(value)
    check_columns(conn, rows, "dedupe key", DEDUPE_COLUMNS, value)


@PROPERTY
@given(tagged(dedupe_noise, dedupe_near_miss))
def test_dedupe_key_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "dedupe key", DEDUPE_COLUMNS, value, must_be_invalid=must_be_invalid)


IDEMPOTENCY_COLUMNS = [("leads", "idempotency_key", "leads_idempotency_key_length_check", None)]


@PROPERTY
@given(
    tagged(
        st.text(TEXT_CHARS, min_size=0, max_size=300),
        st.one_of(st.just(""), st.text(TEXT_CHARS, min_size=256, max_size=300)),
    )
)
@example(("k" * 255, False))
@example(("\U0001f600" * 255, False))  # characters, not bytes
@example(("k" * 256, True))
def test_idempotency_key_db_agrees_with_spec_lengths(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "idempotency key", IDEMPOTENCY_COLUMNS, value, must_be_invalid=must_be_invalid)


# --------------------------------------------------------------------------------------------------
# slug and market code, time zone


SLUG_COLUMNS = [
    ("verticals", "slug", "verticals_slug_format_check", None),
    ("markets", "code", "markets_code_format_check", None),
]
SLUG_CHARS = LOWER + DIGITS + "_"
valid_slug = chars(SLUG_CHARS, 1, 40)
slug_near_miss = st.one_of(
    st.just(""),
    replace_one(valid_slug, st.sampled_from(UPPER)),
    insert_at(valid_slug, st.sampled_from(["-", " ", ".", "/", "\u00e4", "\u0131", "\n"])),
)


@PROPERTY
@given(valid_slug)
def test_slug_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["slug, code"].allows(value)
    check_columns(conn, rows, "slug, code", SLUG_COLUMNS, value)


@PROPERTY
@given(tagged(st.text(st.sampled_from("az09_AZ- \u00e4"), max_size=10), slug_near_miss))
def test_slug_db_agrees_with_spec_on_near_misses_and_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "slug, code", SLUG_COLUMNS, value, must_be_invalid=must_be_invalid)


TIMEZONE_COLUMNS = [("markets", "timezone", "markets_timezone_format_check", None)]
TZ_CHARS = LETTERS + DIGITS + "_+-"
valid_timezone = st.builds(
    lambda first, rest, more: first + rest + "".join("/" + m for m in more),
    chars(LETTERS, 1, 1),
    chars(TZ_CHARS, 0, 12),
    st.lists(chars(TZ_CHARS, 1, 12), max_size=3),
)


@PROPERTY
@given(valid_timezone)
def test_timezone_spec_valid_values_are_accepted(conn, rows, value):
    assert RULES["time zone"].allows(value)
    check_columns(conn, rows, "time zone", TIMEZONE_COLUMNS, value)


@PROPERTY
@given(tagged(st.one_of(valid_timezone, chars("Aa1_+-/ .", 0, 12)), st.just("")))
@example(("America//Chicago", True))
@example(("/UTC", True))
@example(("America/", True))
def test_timezone_db_agrees_with_spec_on_noise(conn, rows, case):
    value, must_be_invalid = case
    check_columns(conn, rows, "time zone", TIMEZONE_COLUMNS, value, must_be_invalid=must_be_invalid)
