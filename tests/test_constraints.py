"""Every invariant of the spec, proved against the migrated schema: a valid row is accepted and a
violating row is rejected by the constraint the spec names for that rule (checked by name), plus the
ON DELETE behaviour of every foreign key and the spec's intake and duplicate-lookup queries.

Each test gets a fresh, fully migrated database (`conn`, autocommit), so a failed statement leaves
nothing behind and tests are independent."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from leaddb.spec import SPEC_FILENAME, Spec

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEDUPE_KEY = "a" * 64
OTHER_DEDUPE_KEY = "b" * 64
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
JAN1, FEB1, MAR1, APR1 = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4))

_unique = itertools.count(1)


# --------------------------------------------------------------------------------------------------
# helpers


def insert(conn: psycopg.Connection, table: str, returning: str = "id", **values):
    """INSERT one row and return its `returning` column."""
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
        sql.Identifier(returning),
    )
    return conn.execute(query, list(values.values())).fetchone()[0]


def update(conn: psycopg.Connection, table: str, row_id, **values) -> None:
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values),
    )
    assert conn.execute(query, [*values.values(), row_id]).rowcount == 1


def delete(conn: psycopg.Connection, table: str, row_id) -> None:
    query = sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table))
    assert conn.execute(query, [row_id]).rowcount == 1


def exists(conn: psycopg.Connection, table: str, row_id) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE id = %s)").format(sql.Identifier(table))
    return conn.execute(query, [row_id]).fetchone()[0]


def column(conn: psycopg.Connection, table: str, name: str, row_id):
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(name), sql.Identifier(table))
    return conn.execute(query, [row_id]).fetchone()[0]


@contextmanager
def violates(error: type[psycopg.Error], constraint: str) -> Iterator[None]:
    """The block fails with `error`, raised by the constraint named `constraint`."""
    with pytest.raises(error) as raised:
        yield
    assert raised.value.diag.constraint_name == constraint, raised.value.diag.message_primary


@contextmanager
def not_null(column_name: str) -> Iterator[None]:
    with pytest.raises(errors.NotNullViolation) as raised:
        yield
    assert raised.value.diag.column_name == column_name


def assert_each_rejected(error: type[psycopg.Error], constraint: str, attempt, values) -> None:
    """`attempt(value)` fails with `error` from `constraint` for every value; lists those that do not."""
    wrong = []
    for value in values:
        try:
            attempt(value)
        except error as exc:
            if exc.diag.constraint_name != constraint:
                wrong.append((value, exc.diag.constraint_name))
        else:
            wrong.append((value, "accepted"))
    assert wrong == [], f"not rejected by {constraint}: {wrong}"


def assert_each_accepted(attempt, values) -> None:
    wrong = []
    for value in values:
        try:
            attempt(value)
        except psycopg.errors.IntegrityError as exc:
            wrong.append((value, exc.diag.constraint_name))
    assert wrong == [], f"rejected: {wrong}"


def n() -> int:
    return next(_unique)


def make_market(conn, **kw) -> int:
    i = n()
    row = {"code": f"market_{i}", "name": f"Market {i}", "country_code": "US", "timezone": "America/Chicago"}
    return insert(conn, "markets", **(row | kw))


def make_vertical(conn, **kw) -> int:
    i = n()
    return insert(conn, "verticals", **({"slug": f"vertical_{i}", "name": f"Vertical {i}"} | kw))


def make_validation_policy(conn, vertical: int, **kw) -> int:
    row = {"vertical_id": vertical, "name": f"policy {n()}", "duplicate_window": "30 days"}
    return insert(conn, "validation_policies", **(row | kw))


def make_routing_policy(conn, **kw) -> int:
    return insert(conn, "routing_policies", **({"name": f"routing {n()}", "strategy": "priority"} | kw))


def make_offer(conn, vertical: int, market: int, policy: int, routing: int, **kw) -> int:
    row = {
        "vertical_id": vertical,
        "market_id": market,
        "validation_policy_id": policy,
        "routing_policy_id": routing,
        "name": f"offer {n()}",
        "base_price_cents": 2500,
        "currency": "USD",
    }
    return insert(conn, "offers", **(row | kw))


def make_source(conn, **kw) -> int:
    i = n()
    return insert(conn, "sources", **({"name": f"source {i}", "api_key_hash": f"hash-{i}"} | kw))


def make_buyer(conn, **kw) -> int:
    i = n()
    row = {"name": f"Buyer {i}", "email": f"billing{i}@roofer.example.com", "currency": "USD"}
    return insert(conn, "buyers", **(row | kw))


def subscribe(conn, buyer: int, offer: int, **kw) -> int:
    row = {"buyer_id": buyer, "offer_id": offer, "price_cents": 3000, "currency": "USD"}
    return insert(conn, "buyer_offers", **(row | kw))


@dataclass(frozen=True)
class World:
    market: int
    vertical: int
    validation_policy: int
    routing_policy: int
    offer: int
    source: int
    buyer: int
    subscription: int  # buyer_offers.id of `buyer` on `offer`


@pytest.fixture
def world(conn) -> World:
    """One valid row of every parent a lead needs: buyer subscribed to the offer."""
    market, vertical = make_market(conn), make_vertical(conn)
    policy, routing = make_validation_policy(conn, vertical), make_routing_policy(conn)
    offer = make_offer(conn, vertical, market, policy, routing)
    buyer = make_buyer(conn)
    return World(
        market, vertical, policy, routing, offer, make_source(conn), buyer, subscribe(conn, buyer, offer)
    )


def second_offer(conn, w: World, **kw) -> int:
    """Another offer of the same vertical and market."""
    return make_offer(conn, w.vertical, w.market, w.validation_policy, w.routing_policy, **kw)


def make_lead(conn, w: World, **kw) -> uuid.UUID:
    row = {
        "source_id": w.source,
        "offer_id": w.offer,
        "idempotency_key": f"req-{n()}",
        "dedupe_key": DEDUPE_KEY,
        "currency": "USD",
    }
    return insert(conn, "leads", **(row | kw))


def make_billable_lead(conn, w: World, **kw) -> uuid.UUID:
    row = {"buyer_id": w.buyer, "status": "delivered", "billing_status": "billable", "price_cents": 3000}
    return make_lead(conn, w, **(row | kw))


def make_invoice(conn, buyer: int, **kw) -> int:
    row = {
        "invoice_number": f"INV-{n():06d}",
        "buyer_id": buyer,
        "currency": "USD",
        "period_start": FEB1,
        "period_end": MAR1,
        "subtotal_cents": 3000,
        "tax_cents": 0,
        "total_cents": 3000,
    }
    return insert(conn, "invoices", **(row | kw))


def make_line(conn, invoice: int, buyer: int, lead: uuid.UUID, **kw) -> int:
    row = {
        "invoice_id": invoice,
        "buyer_id": buyer,
        "currency": "USD",
        "lead_id": lead,
        "unit_price_cents": 3000,
        "amount_cents": 3000,
    }
    return insert(conn, "invoice_line_items", **(row | kw))


def make_exclusivity(conn, w: World, period: Range, **kw) -> int:
    row = {"buyer_id": w.buyer, "offer_id": w.offer, "postal_code": "78701", "period": period}
    return insert(conn, "offer_exclusivities", **(row | kw))


def tstz(lower, upper, bounds: str = "[)") -> Range:
    return Range(lower, upper, bounds)


# --------------------------------------------------------------------------------------------------
# the world itself, ids, defaults


def test_world_of_valid_rows_is_accepted(conn, world):
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM markets), (SELECT count(*) FROM verticals),"
        " (SELECT count(*) FROM validation_policies), (SELECT count(*) FROM routing_policies),"
        " (SELECT count(*) FROM offers), (SELECT count(*) FROM sources), (SELECT count(*) FROM buyers),"
        " (SELECT count(*) FROM buyer_offers)"
    ).fetchone()
    assert counts == (1,) * 8
    lead = make_lead(conn, world)
    assert isinstance(lead, uuid.UUID)


def test_identity_ids_cannot_be_supplied_by_the_client(conn):
    with pytest.raises(errors.GeneratedAlways):
        insert(conn, "verticals", id=42, slug="roofing", name="Roofing")


def test_lead_defaults_are_received_unbilled_now_and_empty_payload(conn, world):
    lead = make_lead(conn, world)
    status, billing, payload, fresh = conn.execute(
        "SELECT status::text, billing_status::text, payload, received_at BETWEEN now() - interval '1 minute'"
        " AND now() FROM leads WHERE id = %s",
        [lead],
    ).fetchone()
    assert (status, billing, payload, fresh) == ("received", "unbilled", {}, True)


def test_other_defaults_invoice_draft_subscription_priority_policy_rules(conn, world):
    invoice = make_invoice(conn, world.buyer)
    assert column(conn, "invoices", "status", invoice) == "draft"
    assert column(conn, "buyer_offers", "priority", world.subscription) == 100
    assert column(conn, "buyer_offers", "active", world.subscription) is True
    assert column(conn, "buyers", "credit_limit_cents", world.buyer) == 0
    assert column(conn, "validation_policies", "rules", world.validation_policy) == {}
    assert column(conn, "validation_policies", "required_fields", world.validation_policy) == []
    assert column(conn, "validation_policies", "version", world.validation_policy) == 1


def test_enum_columns_reject_unknown_labels(conn, world):
    lead, invoice = make_lead(conn, world), make_invoice(conn, world.buyer)
    for table, row_id, column_name, value in [
        ("leads", lead, "status", "accepted"),
        ("leads", lead, "billing_status", "paid"),
        ("invoices", invoice, "status", "open"),
        ("buyers", world.buyer, "default_payment_method", "paypal"),
    ]:
        with pytest.raises(errors.InvalidTextRepresentation):
            update(conn, table, row_id, **{column_name: value})


# --------------------------------------------------------------------------------------------------
# markets, verticals


def test_market_code_is_unique(conn):
    make_market(conn, code="austin")
    with violates(errors.UniqueViolation, "markets_code_key"):
        make_market(conn, code="austin")


def test_market_code_must_be_a_lower_case_slug(conn):
    assert_each_accepted(lambda v: make_market(conn, code=v), ["austin", "san_antonio_2"])
    assert_each_rejected(
        errors.CheckViolation,
        "markets_code_format_check",
        lambda v: make_market(conn, code=v),
        ["Austin", "san-antonio", "austin tx", ""],
    )


def test_market_country_code_must_be_two_upper_case_letters(conn):
    assert_each_accepted(lambda v: make_market(conn, country_code=v), ["US", "GB"])
    assert_each_rejected(
        errors.CheckViolation,
        "markets_country_code_format_check",
        lambda v: make_market(conn, country_code=v),
        ["us", "U", "U1", "1A", "\u00c4T"],  # "U" is padded to "U " by char(2)
    )


def test_market_timezone_accepts_iana_shaped_names(conn):
    assert_each_accepted(
        lambda v: make_market(conn, timezone=v),
        ["UTC", "America/Chicago", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "Etc/GMT-14"],
    )


def test_market_timezone_rejects_names_not_shaped_like_iana(conn):
    assert_each_rejected(
        errors.CheckViolation,
        "markets_timezone_format_check",
        lambda v: make_market(conn, timezone=v),
        ["", "/UTC", "America//Chicago", "America/", "America/New York", "5/UTC", "UTC\n"],
    )


def test_market_timezone_is_required(conn):
    with not_null("timezone"):
        make_market(conn, timezone=None)


def test_vertical_slug_is_unique(conn):
    make_vertical(conn, slug="roofing")
    with violates(errors.UniqueViolation, "verticals_slug_key"):
        make_vertical(conn, slug="roofing")


def test_vertical_slug_format(conn):
    assert_each_accepted(lambda v: make_vertical(conn, slug=v), ["roofing", "solar_pv_2", "hvac"])
    assert_each_rejected(
        errors.CheckViolation,
        "verticals_slug_format_check",
        lambda v: make_vertical(conn, slug=v),
        ["Roofing", "roof-ing", "roof ing", "", "dach\u00e4"],
    )


# --------------------------------------------------------------------------------------------------
# validation_policies, routing_policies


def test_validation_policy_version_must_be_at_least_one(conn):
    vertical = make_vertical(conn)
    make_validation_policy(conn, vertical, version=1)
    with violates(errors.CheckViolation, "validation_policies_version_check"):
        make_validation_policy(conn, vertical, version=0)


def test_validation_policy_name_and_version_are_unique_per_vertical(conn):
    roofing, solar = make_vertical(conn), make_vertical(conn)
    make_validation_policy(conn, roofing, name="standard", version=1)
    make_validation_policy(conn, roofing, name="standard", version=2)
    make_validation_policy(conn, solar, name="standard", version=1)
    with violates(errors.UniqueViolation, "validation_policies_vertical_name_version_key"):
        make_validation_policy(conn, roofing, name="standard", version=1)


def test_validation_policy_duplicate_window_must_be_positive(conn):
    vertical = make_vertical(conn)
    assert_each_accepted(
        lambda v: make_validation_policy(conn, vertical, duplicate_window=v),
        ["1 microsecond", "1 day -23 hours", "1 mon -29 days", "30 days"],
    )
    assert_each_rejected(
        errors.CheckViolation,
        "validation_policies_duplicate_window_check",
        lambda v: make_validation_policy(conn, vertical, duplicate_window=v),
        ["0", "-1 second", "1 day -25 hours", "1 day -24 hours", "1 mon -30 days"],
    )


def test_validation_policy_duplicate_window_is_required(conn):
    with not_null("duplicate_window"):
        make_validation_policy(conn, make_vertical(conn), duplicate_window=None)


def test_validation_policy_rules_accept_a_json_object(conn):
    rules = {"phone": {"required": True}, "zip": ["78701"]}
    policy = make_validation_policy(conn, make_vertical(conn), rules=Jsonb(rules))
    assert column(conn, "validation_policies", "rules", policy) == rules


def test_validation_policy_rules_must_be_a_json_object(conn):
    vertical = make_vertical(conn)
    assert_each_rejected(
        errors.CheckViolation,
        "validation_policies_rules_object_check",
        lambda v: make_validation_policy(conn, vertical, rules=Jsonb(v)),
        [[], [{"a": 1}], "object", 1, True, None],  # None is the JSON null, not SQL NULL
    )


def test_validation_policy_rules_are_required(conn):
    with not_null("rules"):
        make_validation_policy(conn, make_vertical(conn), rules=None)


def test_routing_strategy_accepts_the_three_strategies(conn):
    assert_each_accepted(
        lambda v: make_routing_policy(conn, strategy=v), ["priority", "round_robin", "highest_bid"]
    )


def test_routing_strategy_rejects_anything_else(conn):
    assert_each_rejected(
        errors.CheckViolation,
        "routing_policies_strategy_check",
        lambda v: make_routing_policy(conn, strategy=v),
        ["Priority", "round-robin", "random", "", "priority "],
    )


def test_routing_policy_name_is_unique(conn):
    make_routing_policy(conn, name="default")
    with violates(errors.UniqueViolation, "routing_policies_name_key"):
        make_routing_policy(conn, name="default")


# --------------------------------------------------------------------------------------------------
# offers, sources, buyers


def test_offer_base_price_may_be_zero_but_not_negative(conn, world):
    second_offer(conn, world, base_price_cents=0)
    with violates(errors.CheckViolation, "offers_base_price_cents_check"):
        second_offer(conn, world, base_price_cents=-1)


def test_offer_name_is_unique_per_vertical_and_market(conn, world):
    second_offer(conn, world, name="Roof quote")
    other_market = make_market(conn)
    make_offer(
        conn, world.vertical, other_market, world.validation_policy, world.routing_policy, name="Roof quote"
    )
    with violates(errors.UniqueViolation, "offers_vertical_market_name_key"):
        second_offer(conn, world, name="Roof quote")


def test_offer_cannot_use_a_validation_policy_of_another_vertical(conn, world):
    solar = make_vertical(conn)
    with violates(errors.ForeignKeyViolation, "offers_validation_policy_fkey"):
        make_offer(conn, solar, world.market, world.validation_policy, world.routing_policy)


def test_offer_currency_format(conn, world):
    assert_each_accepted(lambda v: second_offer(conn, world, currency=v), ["EUR", "GBP"])
    assert_each_rejected(
        errors.CheckViolation,
        "offers_currency_format_check",
        lambda v: second_offer(conn, world, currency=v),
        ["usd", "US", "U1D", "Usd", "U D", "\u00c4UR"],  # "US" is padded to "US " by char(3)
    )


def test_currency_of_four_letters_does_not_fit_char3(conn, world):
    with pytest.raises(errors.StringDataRightTruncation):
        second_offer(conn, world, currency="USDX")


def test_source_name_and_api_key_hash_are_unique(conn):
    make_source(conn, name="acme", api_key_hash="h1")
    with violates(errors.UniqueViolation, "sources_name_key"):
        make_source(conn, name="acme", api_key_hash="h2")
    with violates(errors.UniqueViolation, "sources_api_key_hash_key"):
        make_source(conn, name="other", api_key_hash="h1")


def test_source_api_key_hash_is_required(conn):
    with not_null("api_key_hash"):
        make_source(conn, api_key_hash=None)


def test_buyer_email_accepts_valid_addresses(conn):
    assert_each_accepted(
        lambda v: make_buyer(conn, email=v),
        ["ops@roofer.example.com", "A.B+tag@x-y.co", "o'brien@mail.example.org", "x@a.b",
         "ops@" + "a" * 63 + ".com", "o" * 243 + "@roofer.com", "{|}~!#$%&*/=?^_`@xn--bcher-kva.example"],
    )  # fmt: skip


def test_buyer_email_rejects_malformed_addresses(conn):
    assert_each_rejected(
        errors.CheckViolation,
        "buyers_email_format_check",
        lambda v: make_buyer(conn, email=v),
        ["ops@localhost", "ops", "ops@@roofer.com", "@roofer.com", "ops@-roofer.com", "ops@roofer-.com",
         "ops@roofer..com", "ops @roofer.com", "ops@roofer.com.", "jos\u00e9@roofer.com", '"ops"@roofer.com',
         "ops@[10.0.0.1]", "ops@" + "a" * 64 + ".com", "o" * 244 + "@roofer.com", "ops@roofer.com\n"],
    )  # fmt: skip


def test_buyer_email_is_required(conn):
    with not_null("email"):
        make_buyer(conn, email=None)


def test_buyer_credit_limit_may_be_zero_but_not_negative(conn):
    make_buyer(conn, credit_limit_cents=0)
    with violates(errors.CheckViolation, "buyers_credit_limit_cents_check"):
        make_buyer(conn, credit_limit_cents=-1)


def test_buyer_currency_format(conn):
    with violates(errors.CheckViolation, "buyers_currency_format_check"):
        make_buyer(conn, currency="eur")


def test_buyer_default_payment_method_is_a_payment_method_or_null(conn):
    for method in ["ach", "card", "wire", "check", None]:
        buyer = make_buyer(conn, default_payment_method=method)
        assert column(conn, "buyers", "default_payment_method", buyer) == method


# --------------------------------------------------------------------------------------------------
# buyer_offers


def test_subscription_is_unique_per_buyer_and_offer(conn, world):
    with violates(errors.UniqueViolation, "buyer_offers_buyer_offer_key"):
        subscribe(conn, world.buyer, world.offer)


def test_subscription_price_may_be_zero_but_not_negative(conn, world):
    subscribe(conn, make_buyer(conn), world.offer, price_cents=0)
    with violates(errors.CheckViolation, "buyer_offers_price_cents_check"):
        subscribe(conn, make_buyer(conn), world.offer, price_cents=-1)


def test_subscription_must_be_in_the_offer_currency(conn, world):
    with violates(errors.ForeignKeyViolation, "buyer_offers_offer_fkey"):
        subscribe(conn, make_buyer(conn), world.offer, currency="EUR")


def test_subscription_accepts_absent_or_positive_ordered_caps(conn, world):
    assert_each_accepted(
        lambda caps: subscribe(conn, make_buyer(conn), world.offer, daily_cap=caps[0], monthly_cap=caps[1]),
        [(None, None), (1, None), (None, 1), (10, 10), (10, 300)],
    )


@pytest.mark.parametrize(
    ("daily", "monthly", "constraint"),
    [
        (0, None, "buyer_offers_daily_cap_check"),
        (-5, None, "buyer_offers_daily_cap_check"),
        (None, 0, "buyer_offers_monthly_cap_check"),
        (None, -1, "buyer_offers_monthly_cap_check"),
        (10, 9, "buyer_offers_caps_order_check"),
    ],
)
def test_subscription_rejects_non_positive_or_inverted_caps(conn, world, daily, monthly, constraint):
    with violates(errors.CheckViolation, constraint):
        subscribe(conn, make_buyer(conn), world.offer, daily_cap=daily, monthly_cap=monthly)


def test_subscription_priority_may_be_zero_but_not_negative(conn, world):
    subscribe(conn, make_buyer(conn), world.offer, priority=0)
    with violates(errors.CheckViolation, "buyer_offers_priority_check"):
        subscribe(conn, make_buyer(conn), world.offer, priority=-1)


# --------------------------------------------------------------------------------------------------
# buyer_service_areas


def test_service_area_is_unique_per_buyer_market_and_postal_code(conn, world):
    insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code="78701")
    insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code="78702")
    insert(
        conn, "buyer_service_areas", buyer_id=make_buyer(conn), market_id=world.market, postal_code="78701"
    )
    with violates(errors.UniqueViolation, "buyer_service_areas_buyer_market_postal_code_key"):
        insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code="78701")


def test_service_area_postal_code_accepts_canonical_codes(conn, world):
    def attempt(code):
        insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code=code)

    assert_each_accepted(
        attempt, ["78701", "78701-1234", "SW1A 1AA", "K1A 0B1", "1012 AB", "100-0001", "01310-100", "ABC"]
    )


def test_service_area_postal_code_rejects_non_canonical_codes(conn, world):
    def attempt(code):
        insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code=code)

    assert_each_rejected(
        errors.CheckViolation,
        "buyer_service_areas_postal_code_format_check",
        attempt,
        ["sw1a 1aa", " 78701", "78701 ", "SW1A  1AA", "78701--1234", "12", "12345-67890", "A-B-C"],
    )


# --------------------------------------------------------------------------------------------------
# offer_exclusivities


def test_exclusivity_for_a_subscribed_buyer_is_accepted(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, FEB1))
    make_exclusivity(conn, world, tstz(MAR1, None))  # open upper bound: until further notice


def test_overlapping_exclusivities_for_same_offer_and_postal_code_are_rejected(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, MAR1))
    with violates(errors.ExclusionViolation, "offer_exclusivities_no_overlap_excl"):
        make_exclusivity(conn, world, tstz(FEB1, APR1))


def test_overlap_is_rejected_whoever_holds_the_exclusivity(conn, world):
    rival = make_buyer(conn)
    subscribe(conn, rival, world.offer)
    make_exclusivity(conn, world, tstz(JAN1, MAR1))
    with violates(errors.ExclusionViolation, "offer_exclusivities_no_overlap_excl"):
        make_exclusivity(conn, world, tstz(FEB1, APR1), buyer_id=rival)


def test_exclusivity_after_an_open_ended_one_is_rejected(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, None))
    with violates(errors.ExclusionViolation, "offer_exclusivities_no_overlap_excl"):
        make_exclusivity(conn, world, tstz(datetime(2030, 1, 1, tzinfo=UTC), None))


def test_closed_periods_sharing_one_instant_overlap(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, FEB1, "[]"))
    with violates(errors.ExclusionViolation, "offer_exclusivities_no_overlap_excl"):
        make_exclusivity(conn, world, tstz(FEB1, MAR1))


def test_adjacent_and_disjoint_half_open_periods_are_accepted(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, FEB1))
    make_exclusivity(conn, world, tstz(FEB1, MAR1))  # begins exactly where the previous one ends
    make_exclusivity(conn, world, tstz(APR1, None))
    assert conn.execute("SELECT count(*) FROM offer_exclusivities").fetchone()[0] == 3


def test_overlapping_periods_in_different_postal_codes_are_accepted(conn, world):
    make_exclusivity(conn, world, tstz(JAN1, MAR1), postal_code="78701")
    make_exclusivity(conn, world, tstz(JAN1, MAR1), postal_code="78702")


def test_overlapping_periods_on_different_offers_are_accepted(conn, world):
    other = second_offer(conn, world)
    subscribe(conn, world.buyer, other)
    make_exclusivity(conn, world, tstz(JAN1, MAR1))
    make_exclusivity(conn, world, tstz(JAN1, MAR1), offer_id=other)


@pytest.mark.parametrize("period", [Range(empty=True), tstz(JAN1, JAN1)])
def test_exclusivity_period_must_not_be_empty(conn, world, period):
    with violates(errors.CheckViolation, "offer_exclusivities_period_not_empty_check"):
        make_exclusivity(conn, world, period)


def test_exclusivity_period_is_required(conn, world):
    with not_null("period"):
        make_exclusivity(conn, world, None)


def test_exclusivity_requires_a_subscription_to_the_offer(conn, world):
    outsider = make_buyer(conn)
    with violates(errors.ForeignKeyViolation, "offer_exclusivities_buyer_offer_fkey"):
        make_exclusivity(conn, world, tstz(JAN1, FEB1), buyer_id=outsider)


def test_exclusivity_postal_code_format(conn, world):
    with violates(errors.CheckViolation, "offer_exclusivities_postal_code_format_check"):
        make_exclusivity(conn, world, tstz(JAN1, FEB1), postal_code="78701 ")


# --------------------------------------------------------------------------------------------------
# leads: idempotency


def test_replayed_idempotency_key_from_the_same_source_is_rejected(conn, world):
    make_lead(conn, world, idempotency_key="req-1")
    with violates(errors.UniqueViolation, "leads_source_idempotency_key_key"):
        make_lead(conn, world, idempotency_key="req-1")
    assert conn.execute("SELECT count(*) FROM leads").fetchone()[0] == 1


def test_same_idempotency_key_from_another_source_is_accepted(conn, world):
    make_lead(conn, world, idempotency_key="req-1")
    make_lead(conn, world, idempotency_key="req-1", source_id=make_source(conn))
    assert conn.execute("SELECT count(*) FROM leads").fetchone()[0] == 2


def test_idempotency_key_of_1_to_255_characters_is_accepted(conn, world):
    assert_each_accepted(
        lambda v: make_lead(conn, world, idempotency_key=v), ["k", "k" * 255, "\u00e9" * 255]
    )


def test_idempotency_key_of_0_or_256_characters_is_rejected(conn, world):
    assert_each_rejected(
        errors.CheckViolation,
        "leads_idempotency_key_length_check",
        lambda v: make_lead(conn, world, idempotency_key=v),
        ["", "k" * 256, "\u00e9" * 256],  # characters, not bytes
    )


@pytest.mark.parametrize(
    "column_name", ["idempotency_key", "dedupe_key", "source_id", "offer_id", "currency"]
)
def test_lead_required_columns(conn, world, column_name):
    with not_null(column_name):
        make_lead(conn, world, **{column_name: None})


# --------------------------------------------------------------------------------------------------
# leads: duplicate detection


def test_dedupe_key_accepts_64_lower_case_hex(conn, world):
    assert_each_accepted(lambda v: make_lead(conn, world, dedupe_key=v), ["0123456789abcdef" * 4, "f" * 64])


def test_dedupe_key_rejects_anything_but_64_lower_case_hex(conn, world):
    assert_each_rejected(
        errors.CheckViolation,
        "leads_dedupe_key_format_check",
        lambda v: make_lead(conn, world, dedupe_key=v),
        ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "0x" + "a" * 62, "a" * 64 + "\n", " " + "a" * 63],
    )


def test_duplicate_lead_pointing_at_an_earlier_lead_is_accepted(conn, world):
    original = make_lead(conn, world)
    duplicate = make_lead(conn, world, status="duplicate", duplicate_of_lead_id=original)
    assert column(conn, "leads", "duplicate_of_lead_id", duplicate) == original


def test_status_duplicate_without_duplicate_of_is_rejected(conn, world):
    with violates(errors.CheckViolation, "leads_duplicate_of_status_check"):
        make_lead(conn, world, status="duplicate")


@pytest.mark.parametrize("status", ["received", "validated", "rejected", "routed"])
def test_duplicate_of_without_status_duplicate_is_rejected(conn, world, status):
    original = make_lead(conn, world)
    extra = {"rejection_reason": "spam", "buyer_id": world.buyer}
    with violates(errors.CheckViolation, "leads_duplicate_of_status_check"):
        make_lead(conn, world, status=status, duplicate_of_lead_id=original, **extra)


def test_lead_cannot_be_a_duplicate_of_itself(conn, world):
    own_id = uuid.uuid4()
    with violates(errors.CheckViolation, "leads_duplicate_of_not_self_check"):
        make_lead(conn, world, id=own_id, status="duplicate", duplicate_of_lead_id=own_id)
    lead = make_lead(conn, world)
    with violates(errors.CheckViolation, "leads_duplicate_of_not_self_check"):
        update(conn, "leads", lead, status="duplicate", duplicate_of_lead_id=lead)


def test_duplicate_of_must_reference_an_existing_lead(conn, world):
    with violates(errors.ForeignKeyViolation, "leads_duplicate_of_fkey"):
        make_lead(conn, world, status="duplicate", duplicate_of_lead_id=uuid.uuid4())


# --------------------------------------------------------------------------------------------------
# leads: state, buyer, money, contact


def test_rejected_lead_needs_a_rejection_reason(conn, world):
    make_lead(conn, world, status="rejected", rejection_reason="phone missing")
    with violates(errors.CheckViolation, "leads_rejection_reason_check"):
        make_lead(conn, world, status="rejected")


@pytest.mark.parametrize("status", ["routed", "delivered", "returned"])
def test_routed_delivered_returned_lead_needs_a_buyer(conn, world, status):
    make_lead(conn, world, status=status, buyer_id=world.buyer)
    with violates(errors.CheckViolation, "leads_routed_requires_buyer_check"):
        make_lead(conn, world, status=status)


@pytest.mark.parametrize("billing", ["billable", "invoiced"])
def test_billable_or_invoiced_lead_with_buyer_and_price_is_accepted(conn, world, billing):
    make_billable_lead(conn, world, billing_status=billing, price_cents=0)


@pytest.mark.parametrize("billing", ["billable", "invoiced"])
@pytest.mark.parametrize("missing", ["buyer_id", "price_cents"])
def test_billable_or_invoiced_lead_needs_buyer_and_price(conn, world, billing, missing):
    # status stays 'validated' so that only the billing rule can be broken by a missing buyer
    with violates(errors.CheckViolation, "leads_billing_requires_buyer_and_price_check"):
        make_billable_lead(conn, world, status="validated", billing_status=billing, **{missing: None})


@pytest.mark.parametrize("billing", ["unbilled", "credited", "non_billable"])
def test_other_billing_states_need_neither_buyer_nor_price(conn, world, billing):
    make_lead(conn, world, billing_status=billing)


def test_lead_price_may_be_zero_but_not_negative(conn, world):
    make_billable_lead(conn, world, price_cents=0)
    with violates(errors.CheckViolation, "leads_price_cents_check"):
        make_billable_lead(conn, world, price_cents=-1)


def test_lead_currency_must_be_its_offer_currency(conn, world):
    with violates(errors.ForeignKeyViolation, "leads_offer_fkey"):
        make_lead(conn, world, currency="EUR")


def test_lead_currency_format(conn, world):
    with violates(errors.CheckViolation, "leads_currency_format_check"):
        make_lead(conn, world, currency="usd")


def test_lead_can_only_be_routed_to_a_subscriber_of_its_offer(conn, world):
    outsider = make_buyer(conn)
    with violates(errors.ForeignKeyViolation, "leads_buyer_offer_fkey"):
        make_lead(conn, world, status="routed", buyer_id=outsider)


def test_lead_buyer_must_exist(conn, world):
    # leads_buyer_fkey and leads_buyer_offer_fkey both fail; PostgreSQL reports the first checked
    with pytest.raises(errors.ForeignKeyViolation) as raised:
        make_lead(conn, world, status="routed", buyer_id=10**9)
    assert raised.value.diag.constraint_name in {"leads_buyer_fkey", "leads_buyer_offer_fkey"}


def test_lead_contact_fields_accept_well_formed_values_and_nulls(conn, world):
    make_lead(conn, world, email="Jane.Doe@Example.com", phone="+15125550123", postal_code="78701-1234")
    make_lead(conn, world, email=None, phone=None, postal_code=None, first_name=None, last_name=None)


def test_lead_email_format(conn, world):
    assert_each_rejected(
        errors.CheckViolation,
        "leads_email_format_check",
        lambda v: make_lead(conn, world, email=v),
        ["jane@localhost", "jane.doe@", "jane doe@example.com", "jane@exa_mple.com"],
    )


def test_lead_phone_accepts_e164(conn, world):
    assert_each_accepted(
        lambda v: make_lead(conn, world, phone=v),
        ["+14155550123", "+4930123456", "+123456789012345", "+12345678"],
    )


def test_lead_phone_rejects_anything_but_e164(conn, world):
    assert_each_rejected(
        errors.CheckViolation,
        "leads_phone_format_check",
        lambda v: make_lead(conn, world, phone=v),
        ["14155550123", "+04155550123", "+1234567", "+1234567890123456", "+1 415 555 0123", "+1-415-5550123",
         "+", "+1415555012a", "+14155550123\n", "++14155550123", "+1415555\u0660123"],
    )  # fmt: skip


def test_lead_postal_code_format(conn, world):
    assert_each_rejected(
        errors.CheckViolation,
        "leads_postal_code_format_check",
        lambda v: make_lead(conn, world, postal_code=v),
        ["78701 ", "sw1a 1aa", "1234567890-1", "12"],
    )


def test_lead_payload_must_be_a_json_object(conn, world):
    make_lead(conn, world, payload=Jsonb({"first_name": "Jane"}))
    assert_each_rejected(
        errors.CheckViolation,
        "leads_payload_object_check",
        lambda v: make_lead(conn, world, payload=Jsonb(v)),
        [[], "text", 3, None],
    )


# --------------------------------------------------------------------------------------------------
# invoices


def test_invoice_with_consistent_totals_is_accepted(conn, world):
    invoice = make_invoice(conn, world.buyer, subtotal_cents=10000, tax_cents=825, total_cents=10825)
    assert column(conn, "invoices", "total_cents", invoice) == 10825


def test_invoice_number_is_unique(conn, world):
    make_invoice(conn, world.buyer, invoice_number="INV-1")
    with violates(errors.UniqueViolation, "invoices_invoice_number_key"):
        make_invoice(conn, make_buyer(conn), invoice_number="INV-1")


@pytest.mark.parametrize(("subtotal", "tax", "total"), [(10000, 825, 10824), (10000, 825, 10000), (0, 0, 1)])
def test_invoice_total_must_equal_subtotal_plus_tax(conn, world, subtotal, tax, total):
    with violates(errors.CheckViolation, "invoices_total_equals_subtotal_plus_tax_check"):
        make_invoice(conn, world.buyer, subtotal_cents=subtotal, tax_cents=tax, total_cents=total)


@pytest.mark.parametrize(
    ("subtotal", "tax", "total", "constraint"),
    [
        (-1, 1, 0, "invoices_subtotal_cents_check"),
        (1, -1, 0, "invoices_tax_cents_check"),
    ],
)
def test_invoice_amounts_must_not_be_negative(conn, world, subtotal, tax, total, constraint):
    with violates(errors.CheckViolation, constraint):
        make_invoice(conn, world.buyer, subtotal_cents=subtotal, tax_cents=tax, total_cents=total)


def test_invoice_negative_total_is_rejected(conn, world):
    # a negative total implies a negative part, so more than one check fails; any of them may report
    with pytest.raises(errors.CheckViolation) as raised:
        make_invoice(conn, world.buyer, subtotal_cents=0, tax_cents=-1, total_cents=-1)
    assert raised.value.diag.constraint_name in {"invoices_tax_cents_check", "invoices_total_cents_check"}


@pytest.mark.parametrize("end", [FEB1, FEB1 - timedelta(microseconds=1)])
def test_invoice_period_must_end_after_it_starts(conn, world, end):
    make_invoice(conn, world.buyer, period_start=FEB1, period_end=FEB1 + timedelta(microseconds=1))
    with violates(errors.CheckViolation, "invoices_period_check"):
        make_invoice(conn, world.buyer, period_start=FEB1, period_end=end)


def issued(**kw) -> dict:
    return {"status": "issued", "issued_at": MAR1, "due_at": MAR1 + timedelta(days=30)} | kw


def paid(**kw) -> dict:
    return issued(status="paid", paid_at=MAR1 + timedelta(days=10), payment_method="ach") | kw


def test_issued_and_paid_invoices_with_all_dates_are_accepted(conn, world):
    make_invoice(conn, world.buyer, **issued())
    make_invoice(conn, world.buyer, **paid())
    make_invoice(conn, world.buyer, **issued(due_at=MAR1))  # due the day it is issued


@pytest.mark.parametrize("missing", ["paid_at", "payment_method"])
def test_paid_invoice_needs_paid_at_and_payment_method(conn, world, missing):
    with violates(errors.CheckViolation, "invoices_paid_requires_payment_check"):
        make_invoice(conn, world.buyer, **paid(**{missing: None}))


@pytest.mark.parametrize("status", ["issued", "paid"])
@pytest.mark.parametrize("missing", ["issued_at", "due_at"])
def test_issued_or_paid_invoice_needs_issued_at_and_due_at(conn, world, status, missing):
    with violates(errors.CheckViolation, "invoices_issued_requires_dates_check"):
        make_invoice(conn, world.buyer, **paid(status=status, **{missing: None}))


def test_invoice_due_before_issue_is_rejected(conn, world):
    with violates(errors.CheckViolation, "invoices_due_after_issued_check"):
        make_invoice(conn, world.buyer, **issued(due_at=MAR1 - timedelta(seconds=1)))


def test_invoice_currency_format(conn, world):
    with violates(errors.CheckViolation, "invoices_currency_format_check"):
        make_invoice(conn, world.buyer, currency="US")


# --------------------------------------------------------------------------------------------------
# invoice_line_items


def test_line_item_for_the_buyers_billed_lead_is_accepted(conn, world):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    make_line(conn, invoice, world.buyer, lead, quantity=2, unit_price_cents=1500, amount_cents=3000)


@pytest.mark.parametrize(("quantity", "unit", "amount"), [(1, 3000, 2999), (2, 1500, 1500), (3, 0, 1)])
def test_line_item_amount_must_be_quantity_times_unit_price(conn, world, quantity, unit, amount):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    with violates(errors.CheckViolation, "invoice_line_items_amount_check"):
        make_line(
            conn, invoice, world.buyer, lead, quantity=quantity, unit_price_cents=unit, amount_cents=amount
        )


@pytest.mark.parametrize("quantity", [0, -1])
def test_line_item_quantity_must_be_positive(conn, world, quantity):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    with violates(errors.CheckViolation, "invoice_line_items_quantity_check"):
        make_line(conn, invoice, world.buyer, lead, quantity=quantity, unit_price_cents=0, amount_cents=0)


def test_line_item_unit_price_must_not_be_negative(conn, world):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    with violates(errors.CheckViolation, "invoice_line_items_unit_price_cents_check"):
        make_line(conn, invoice, world.buyer, lead, quantity=1, unit_price_cents=-5, amount_cents=-5)


def test_line_item_currency_format(conn, world):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    with violates(errors.CheckViolation, "invoice_line_items_currency_format_check"):
        make_line(conn, invoice, world.buyer, lead, currency="usd")


def test_lead_is_billed_at_most_once_across_invoices(conn, world):
    lead = make_billable_lead(conn, world)
    make_line(conn, make_invoice(conn, world.buyer), world.buyer, lead)
    with violates(errors.UniqueViolation, "invoice_line_items_lead_key"):
        make_line(conn, make_invoice(conn, world.buyer), world.buyer, lead)


def test_lead_is_billed_at_most_once_within_an_invoice(conn, world):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    make_line(conn, invoice, world.buyer, lead)
    with violates(errors.UniqueViolation, "invoice_line_items_lead_key"):
        make_line(conn, invoice, world.buyer, lead)


def test_lead_can_only_be_billed_to_the_buyer_it_was_routed_to(conn, world):
    other = make_buyer(conn)
    subscribe(conn, other, world.offer)
    lead = make_billable_lead(conn, world)  # routed to world.buyer
    with violates(errors.ForeignKeyViolation, "invoice_line_items_lead_fkey"):
        make_line(conn, make_invoice(conn, other), other, lead)


def test_line_item_must_match_its_invoice_buyer_and_currency(conn, world):
    lead = make_billable_lead(conn, world)
    euro_invoice = make_invoice(conn, world.buyer, currency="EUR")
    with violates(errors.ForeignKeyViolation, "invoice_line_items_invoice_fkey"):
        make_line(conn, euro_invoice, world.buyer, lead)  # line in USD, invoice in EUR


def test_billed_lead_cannot_be_rerouted_to_another_buyer(conn, world):
    other = make_buyer(conn)
    subscribe(conn, other, world.offer)
    lead = make_billable_lead(conn, world)
    make_line(conn, make_invoice(conn, world.buyer), world.buyer, lead)
    with violates(errors.ForeignKeyViolation, "invoice_line_items_lead_fkey"):
        update(conn, "leads", lead, buyer_id=other)


# --------------------------------------------------------------------------------------------------
# ON DELETE behaviour, one test per foreign key


FKEY_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT", "a": "NO ACTION"}


def spec_deletion_policy() -> dict[str, str]:
    """constraint -> ON DELETE, from the spec's Deletion policy table."""
    text = (PROJECT_DIR / SPEC_FILENAME).read_text(encoding="utf-8")
    section = text.split("## Deletion policy", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+_fkey)` \| [^|]+ \| (RESTRICT|CASCADE|SET NULL|NO ACTION) \|", section, re.M)
    return dict(rows)


def test_every_foreign_key_has_the_on_delete_the_spec_states(conn):
    expected = spec_deletion_policy()
    assert len(expected) == 18
    actual = {
        name: FKEY_ACTIONS[action]
        for name, action in conn.execute(
            "SELECT conname, confdeltype FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        )
    }
    assert actual == expected


def test_deleting_unreferenced_rows_is_allowed(conn, world):
    lead = make_lead(conn, world)
    delete(conn, "leads", lead)
    delete(conn, "buyer_offers", world.subscription)
    delete(conn, "offers", world.offer)
    for table, row_id in [
        ("sources", world.source),
        ("buyers", world.buyer),
        ("validation_policies", world.validation_policy),
        ("routing_policies", world.routing_policy),
        ("verticals", world.vertical),
        ("markets", world.market),
    ]:
        delete(conn, table, row_id)


def test_delete_vertical_with_validation_policy_is_restricted(conn):
    vertical = make_vertical(conn)
    make_validation_policy(conn, vertical)
    with violates(errors.ForeignKeyViolation, "validation_policies_vertical_fkey"):
        delete(conn, "verticals", vertical)


def test_delete_vertical_with_offer_is_restricted(conn, world):
    # an offer's vertical always has the offer's validation policy too (composite key), so both
    # RESTRICT keys are violated; either may report, and offers_vertical_fkey's action is pinned by
    # test_every_foreign_key_has_the_on_delete_the_spec_states
    with pytest.raises(errors.ForeignKeyViolation) as raised:
        delete(conn, "verticals", world.vertical)
    assert raised.value.diag.constraint_name in {"offers_vertical_fkey", "validation_policies_vertical_fkey"}
    assert exists(conn, "offers", world.offer)


def test_delete_market_with_offer_is_restricted(conn, world):
    with violates(errors.ForeignKeyViolation, "offers_market_fkey"):
        delete(conn, "markets", world.market)


def test_delete_validation_policy_used_by_offer_is_restricted(conn, world):
    with violates(errors.ForeignKeyViolation, "offers_validation_policy_fkey"):
        delete(conn, "validation_policies", world.validation_policy)


def test_delete_routing_policy_used_by_offer_is_restricted(conn, world):
    with violates(errors.ForeignKeyViolation, "offers_routing_policy_fkey"):
        delete(conn, "routing_policies", world.routing_policy)


def test_delete_offer_with_subscribers_is_restricted(conn, world):
    with violates(errors.ForeignKeyViolation, "buyer_offers_offer_fkey"):
        delete(conn, "offers", world.offer)


def test_delete_market_with_service_area_is_restricted(conn, world):
    market = make_market(conn)
    insert(conn, "buyer_service_areas", buyer_id=world.buyer, market_id=market, postal_code="78701")
    with violates(errors.ForeignKeyViolation, "buyer_service_areas_market_fkey"):
        delete(conn, "markets", market)


def test_delete_buyer_without_history_cascades_to_its_configuration(conn, world):
    area = insert(
        conn, "buyer_service_areas", buyer_id=world.buyer, market_id=world.market, postal_code="78701"
    )
    exclusivity = make_exclusivity(conn, world, tstz(JAN1, None))
    delete(conn, "buyers", world.buyer)
    assert not exists(conn, "buyer_offers", world.subscription)
    assert not exists(conn, "buyer_service_areas", area)
    assert not exists(conn, "offer_exclusivities", exclusivity)
    assert exists(conn, "offers", world.offer)


def test_delete_subscription_cascades_to_its_exclusivities(conn, world):
    exclusivity = make_exclusivity(conn, world, tstz(JAN1, None))
    delete(conn, "buyer_offers", world.subscription)
    assert not exists(conn, "offer_exclusivities", exclusivity)
    assert exists(conn, "buyers", world.buyer)


def test_delete_source_with_leads_is_restricted(conn, world):
    lead = make_lead(conn, world)
    with violates(errors.ForeignKeyViolation, "leads_source_fkey"):
        delete(conn, "sources", world.source)
    assert exists(conn, "leads", lead)


def test_delete_offer_with_leads_is_restricted(conn, world):
    offer = second_offer(conn, world)  # no subscribers, so only the leads block the deletion
    make_lead(conn, world, offer_id=offer)
    with violates(errors.ForeignKeyViolation, "leads_offer_fkey"):
        delete(conn, "offers", offer)


def test_delete_buyer_with_leads_is_restricted(conn, world):
    # the buyer's lead references it directly (leads_buyer_fkey) and through the subscription the
    # deletion would cascade to (leads_buyer_offer_fkey); either refusal keeps the history intact
    lead = make_lead(conn, world, status="routed", buyer_id=world.buyer)
    with pytest.raises(errors.ForeignKeyViolation) as raised:
        delete(conn, "buyers", world.buyer)
    assert raised.value.diag.constraint_name in {"leads_buyer_fkey", "leads_buyer_offer_fkey"}
    assert exists(conn, "buyer_offers", world.subscription)
    assert column(conn, "leads", "buyer_id", lead) == world.buyer


def test_delete_subscription_with_leads_is_restricted(conn, world):
    make_lead(conn, world, status="routed", buyer_id=world.buyer)
    with violates(errors.ForeignKeyViolation, "leads_buyer_offer_fkey"):
        delete(conn, "buyer_offers", world.subscription)


def test_delete_lead_that_another_duplicates_is_restricted(conn, world):
    original = make_lead(conn, world)
    make_lead(conn, world, status="duplicate", duplicate_of_lead_id=original)
    with violates(errors.ForeignKeyViolation, "leads_duplicate_of_fkey"):
        delete(conn, "leads", original)


def test_delete_buyer_with_invoices_is_restricted(conn, world):
    invoice = make_invoice(conn, world.buyer)
    with violates(errors.ForeignKeyViolation, "invoices_buyer_fkey"):
        delete(conn, "buyers", world.buyer)
    assert exists(conn, "invoices", invoice)
    assert exists(conn, "buyer_offers", world.subscription)  # the cascade was rolled back too


def test_delete_invoiced_lead_is_restricted(conn, world):
    lead = make_billable_lead(conn, world, billing_status="invoiced")
    make_line(conn, make_invoice(conn, world.buyer), world.buyer, lead)
    with violates(errors.ForeignKeyViolation, "invoice_line_items_lead_fkey"):
        delete(conn, "leads", lead)


def test_delete_draft_invoice_removes_its_lines_and_keeps_the_leads(conn, world):
    invoice, lead = make_invoice(conn, world.buyer), make_billable_lead(conn, world)
    line = make_line(conn, invoice, world.buyer, lead)
    other_invoice = make_invoice(conn, world.buyer)
    other_line = make_line(conn, other_invoice, world.buyer, make_billable_lead(conn, world))
    delete(conn, "invoices", invoice)
    assert not exists(conn, "invoice_line_items", line)
    assert exists(conn, "invoice_line_items", other_line)
    assert exists(conn, "leads", lead)


# --------------------------------------------------------------------------------------------------
# the spec's queries


@pytest.fixture(scope="module")
def spec_queries() -> dict[str, str]:
    return {b.name: b.sql for b in Spec.load(PROJECT_DIR / SPEC_FILENAME).blocks_of("query")}


def execute_prepared(conn, name: str, *args) -> list[tuple]:
    """EXECUTE a prepared statement; arguments are bound client-side as typed literals."""
    cursor = psycopg.ClientCursor(conn)
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    return cursor.execute(
        sql.SQL("EXECUTE {}({})").format(sql.Identifier(name), placeholders), args
    ).fetchall()


def intake(conn, w: World, key: str, *, source: int | None = None, email: str = "jane@example.com"):
    return execute_prepared(
        conn, "lead_idempotent_insert",
        source or w.source, w.offer, key, DEDUPE_KEY, "USD",
        "Jane", "Doe", email, "+15125550123", "78701", Jsonb({"zip": "78701"}),
    )  # fmt: skip


def test_idempotent_insert_replay_returns_the_same_lead_and_stores_one_row(conn, world, spec_queries):
    conn.execute(spec_queries["lead_idempotent_insert"])
    first = intake(conn, world, "req-42")
    replay = intake(conn, world, "req-42", email="someone.else@example.com")
    assert len(first) == 1 and first[0][1] is True
    assert replay == [(first[0][0], False)]
    rows = conn.execute("SELECT id, email FROM leads WHERE idempotency_key = 'req-42'").fetchall()
    assert rows == [(first[0][0], "jane@example.com")]  # the first submission wins


def test_idempotent_insert_same_key_other_source_creates_a_new_lead(conn, world, spec_queries):
    conn.execute(spec_queries["lead_idempotent_insert"])
    first = intake(conn, world, "req-42")
    other = intake(conn, world, "req-42", source=make_source(conn))
    assert other[0][1] is True and other[0][0] != first[0][0]
    assert conn.execute("SELECT count(*) FROM leads").fetchone()[0] == 2


def test_duplicate_lookup_returns_the_most_recent_lead_in_the_window(conn, world, spec_queries):
    conn.execute(spec_queries["lead_duplicate_lookup"])
    minutes = {
        m: make_lead(conn, world, received_at=T0 + timedelta(minutes=m)) for m in (-90, -40, -10, 0, 10)
    }
    make_lead(conn, world, dedupe_key=OTHER_DEDUPE_KEY, received_at=T0 - timedelta(minutes=5))
    window_start = T0 - timedelta(hours=1)
    assert execute_prepared(conn, "lead_duplicate_lookup", DEDUPE_KEY, window_start, T0) == [
        (minutes[-10], T0 - timedelta(minutes=10))
    ]


def test_duplicate_lookup_ignores_leads_at_or_before_t_and_the_new_lead_itself(conn, world, spec_queries):
    conn.execute(spec_queries["lead_duplicate_lookup"])
    make_lead(conn, world, received_at=T0 - timedelta(hours=2))
    make_lead(conn, world, received_at=T0 - timedelta(hours=1))  # exactly T: not "after T"
    make_lead(conn, world, received_at=T0)  # the new lead
    assert execute_prepared(conn, "lead_duplicate_lookup", DEDUPE_KEY, T0 - timedelta(hours=1), T0) == []
