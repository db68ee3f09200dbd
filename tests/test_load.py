"""The schema under load (issue 6, item 7): 8 concurrent writers submit 20,000 leads through the
spec's own ``lead_idempotent_insert`` and ``lead_duplicate_lookup`` statements, read from the spec.

25% of the submissions replay an earlier idempotency key (a client retrying: same values), 10% are
new leads whose dedupe key matches an earlier lead (the duplicate step of the spec marks them).
Afterwards exactly the expected leads exist, every submission of a key got the same lead, every
duplicate points at its original and no valid lead is missing. Throughput and p95 insert latency
are printed and written to benchmarks/results/ (figures for benchmarks/load.md).

Loopback only: the session's server (the local cluster over its unix socket, or the Docker
container over its published loopback port; the figures name it). Bounded: 20,000 submissions.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from leaddb.spec import SPEC_FILENAME, Spec

WRITERS = 8
SUBMISSIONS = 20_000
REPLAYS = SUBMISSIONS // 4  # 25%
DUPLICATES = SUBMISSIONS // 10  # 10%
UNIQUE = SUBMISSIONS - REPLAYS  # rows expected
SOURCES = 4
DUPLICATE_WINDOW = timedelta(days=30)
TIME_BUDGET = 120  # seconds for the writers; the whole test stays well under a minute here

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Lead:
    """One submission's values, in the statement's parameter order."""

    source_id: int
    idempotency_key: str
    dedupe_key: str
    email: str
    duplicate_of: str | None = None  # the idempotency key of the lead this one duplicates

    def params(self, offer_id: int) -> tuple:
        name = self.idempotency_key.replace("-", "")
        return (
            self.source_id,
            offer_id,
            self.idempotency_key,
            self.dedupe_key,
            "USD",
            "Ada",
            f"L{name}",
            self.email,
            "+15125550100",
            "78701",
            Jsonb({"key": self.idempotency_key}),
        )


def spec_statement(project_dir: Path, name: str) -> str:
    spec = Spec.load(project_dir / SPEC_FILENAME)
    return next(b.sql for b in spec.blocks_of("query") if b.name == name)


def seed(conn: psycopg.Connection) -> tuple[int, list[int]]:
    """The reference rows an intake needs: one offer (with its policies) and a few sources."""
    vertical = conn.execute("INSERT INTO verticals (slug, name) VALUES ('solar', 'Solar') RETURNING id")
    vertical_id = vertical.fetchone()[0]
    market_id = conn.execute(
        "INSERT INTO markets (code, name, country_code, timezone) "
        "VALUES ('austin', 'Austin', 'US', 'America/Chicago') RETURNING id"
    ).fetchone()[0]
    policy_id = conn.execute(
        "INSERT INTO validation_policies (vertical_id, name, duplicate_window) "
        "VALUES (%s, 'default', %s) RETURNING id",
        (vertical_id, DUPLICATE_WINDOW),
    ).fetchone()[0]
    routing_id = conn.execute(
        "INSERT INTO routing_policies (name, strategy) VALUES ('default', 'priority') RETURNING id"
    ).fetchone()[0]
    offer_id = conn.execute(
        "INSERT INTO offers (vertical_id, market_id, validation_policy_id, routing_policy_id, name, "
        "base_price_cents, currency) VALUES (%s, %s, %s, %s, 'solar austin', 2500, 'USD') RETURNING id",
        (vertical_id, market_id, policy_id, routing_id),
    ).fetchone()[0]
    sources = [
        conn.execute(
            "INSERT INTO sources (name, api_key_hash) VALUES (%s, %s) RETURNING id", (f"s{i}", f"h{i}")
        ).fetchone()[0]
        for i in range(SOURCES)
    ]
    return offer_id, sources


def workload(sources: list[int], rng: random.Random) -> tuple[list[list[Lead]], list[Lead]]:
    """Per-writer queues of submissions, and the unique leads they must leave behind.

    A duplicate sits in its original's queue, after it, so the original is stored (and received
    earlier) when the duplicate step runs. A replay of a paired lead follows it in the same queue;
    a replay of any other lead goes to a random writer at a random place, so it can race the first
    submission or even arrive first (then it is the one that creates the row, with the same values).
    """
    originals = UNIQUE - DUPLICATES
    unique: list[Lead] = []
    for i in range(originals):
        dedupe = hashlib.sha256(f"contact-{i}".encode()).hexdigest()
        unique.append(Lead(sources[i % SOURCES], f"key-{i}", dedupe, f"lead{i}@example.com"))
    queues: list[list[Lead]] = [[] for _ in range(WRITERS)]
    writer_of: dict[str, int] = {}
    for i, lead in enumerate(unique):
        writer_of[lead.idempotency_key] = i % WRITERS
        queues[i % WRITERS].append(lead)
    paired = rng.sample(range(originals), DUPLICATES)
    for n, i in enumerate(paired):
        original = unique[i]
        duplicate = Lead(
            sources[(i + 1) % SOURCES],
            f"dup-{n}",
            original.dedupe_key,
            f"again{n}@example.com",
            duplicate_of=original.idempotency_key,
        )
        unique.append(duplicate)
        queue = queues[writer_of[original.idempotency_key]]
        at = queue.index(original)
        queue.insert(rng.randint(at + 1, len(queue)), duplicate)
        writer_of[duplicate.idempotency_key] = writer_of[original.idempotency_key]
    in_pairs = {unique[i].idempotency_key for i in paired} | {f"dup-{n}" for n in range(DUPLICATES)}
    for lead in rng.choices(unique, k=REPLAYS):
        if lead.idempotency_key in in_pairs:
            queue = queues[writer_of[lead.idempotency_key]]
            queue.insert(rng.randint(queue.index(lead) + 1, len(queue)), lead)
        else:
            queue = queues[rng.randrange(WRITERS)]
            queue.insert(rng.randint(0, len(queue)), lead)
    return queues, unique


def writer(conninfo, insert_sql, lookup_sql, offer_id, queue, answers, latencies, races, failures, start):
    try:
        with psycopg.connect(conninfo, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute(insert_sql)
            conn.execute(lookup_sql)
            placeholders = ", ".join(["%s"] * 11)
            start.wait()
            for lead in queue:
                began = time.perf_counter()
                rows = conn.execute(
                    f"EXECUTE lead_idempotent_insert({placeholders})", lead.params(offer_id)
                ).fetchall()
                if not rows:  # the spec's narrow race: run the statement once more
                    races.append(lead.idempotency_key)
                    rows = conn.execute(
                        f"EXECUTE lead_idempotent_insert({placeholders})", lead.params(offer_id)
                    ).fetchall()
                latencies.append(time.perf_counter() - began)
                assert len(rows) == 1, f"{lead.idempotency_key}: {rows}"
                lead_id, created = rows[0]
                answers.append((lead.source_id, lead.idempotency_key, lead_id, created))
                if not created:
                    continue
                # the spec's duplicate step: the most recent earlier lead with this dedupe key
                received_at = conn.execute(
                    "SELECT received_at FROM leads WHERE id = %s", (lead_id,)
                ).fetchone()[0]
                found = conn.execute(
                    "EXECUTE lead_duplicate_lookup(%s, %s, %s)",
                    (lead.dedupe_key, received_at - DUPLICATE_WINDOW, received_at),
                ).fetchone()
                if found:
                    conn.execute(
                        "UPDATE leads SET status = 'duplicate', duplicate_of_lead_id = %s WHERE id = %s",
                        (found[0], lead_id),
                    )
    except BaseException as exc:  # noqa: BLE001 - reported by the test, with the writer's queue
        failures.append(exc)
        start.abort()


def test_eight_writers_keep_every_invariant(server, fresh_db, project_dir):
    conninfo = fresh_db()
    insert_sql = spec_statement(project_dir, "lead_idempotent_insert")
    lookup_sql = spec_statement(project_dir, "lead_duplicate_lookup")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        offer_id, sources = seed(conn)
    queues, unique = workload(sources, random.Random(6))
    assert sum(map(len, queues)) == SUBMISSIONS

    answers: list[tuple] = []
    latencies: list[float] = []
    races: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(WRITERS + 1)
    threads = [
        threading.Thread(
            target=writer,
            args=(conninfo, insert_sql, lookup_sql, offer_id, q, answers, latencies, races, failures, start),
        )
        for q in queues
    ]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=30)
    except threading.BrokenBarrierError:
        pass  # a writer failed while preparing: reported below
    began = time.perf_counter()
    for t in threads:
        t.join(timeout=TIME_BUDGET)
    wall = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads), f"writers still running after {TIME_BUDGET} s"
    assert failures == []
    assert len(answers) == SUBMISSIONS

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT source_id, idempotency_key, id, dedupe_key, email, status::text, duplicate_of_lead_id "
            "FROM leads"
        ).fetchall()
    stored = {(r[0], r[1]): r for r in rows}
    assert len(rows) == UNIQUE  # exactly the expected number of leads

    # no replay created a second row: every submission of a key got that key's one lead
    by_key: dict[tuple, list[tuple]] = defaultdict(list)
    for source_id, key, lead_id, created in answers:
        by_key[(source_id, key)].append((lead_id, created))
    assert len(by_key) == UNIQUE
    for key, got in by_key.items():
        assert {lead_id for lead_id, _ in got} == {stored[key][2]}, key
        assert sum(created for _, created in got) == 1, key

    # no valid lead lost: each planned lead is stored with its own values
    for lead in unique:
        row = stored[(lead.source_id, lead.idempotency_key)]
        assert (row[3], row[4]) == (lead.dedupe_key, lead.email)

    # every duplicate points at its original, and nothing else is marked
    planned = {(lead.source_id, lead.idempotency_key): lead for lead in unique}
    id_of = {lead.idempotency_key: stored[key][2] for key, lead in planned.items()}
    duplicates = [r for r in rows if r[5] == "duplicate"]
    assert len(duplicates) == DUPLICATES
    for row in duplicates:
        lead = planned[(row[0], row[1])]
        assert lead.duplicate_of is not None, row
        assert row[6] == id_of[lead.duplicate_of]
    assert sum(r[5] == "received" for r in rows) == UNIQUE - DUPLICATES

    latencies.sort()
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server": server.describe(),
        "writers": WRITERS,
        "submissions": SUBMISSIONS,
        "replays": REPLAYS,
        "duplicates": DUPLICATES,
        "leads_stored": len(rows),
        "empty_answers_retried": len(races),
        "wall_seconds": round(wall, 3),
        "throughput_leads_per_second": round(SUBMISSIONS / wall, 1),
        "insert_latency_ms": {
            "p50": round(1000 * statistics.quantiles(latencies, n=100, method="inclusive")[49], 3),
            "p95": round(1000 * statistics.quantiles(latencies, n=100, method="inclusive")[94], 3),
            "p99": round(1000 * statistics.quantiles(latencies, n=100, method="inclusive")[98], 3),
            "max": round(1000 * latencies[-1], 3),
        },
    }
    print(f"\nload: {json.dumps(figures)}")
    results = project_dir / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}-load.json").write_text(
        json.dumps(figures, indent=2) + "\n", encoding="utf-8", newline="\n"
    )
