"""Audit search and retention at 100 million generated events (issue #20).

Uses a PostgreSQL database of its own (DATABASE_URL, e.g. .../h3big, migrated with
`manage.py migrate` so the append-only trigger function exists) and the partitioned
events table of controlplane/audit/partitions.py (`audit_events_partitioned`).

    .venv/bin/python bench/audit_scale.py generate --rows 100000000 --months 24 [--until 05:55]
    .venv/bin/python bench/audit_scale.py measure [--repeat 200]
    .venv/bin/python bench/audit_scale.py retention

`generate` loads month by month, resumable: each month is filled with generate_series into
a plain table, indexed, then attached as a partition (faster than maintaining indexes row
by row), and gets the per-partition guarantees. Events: 10,000 agents, sessions of 20
records, 20 tools, 90 % allow / 8 % deny / 2 % ask, deny reasons in rule_ids.

`measure` times the console's searches (random parameters, each run `--repeat` times) and
prints p50/p99/max in ms. `retention` times dropping the oldest month beside a DELETE of
one day of it (rolled back). Prints; asserts nothing. The machine is shared: noisy.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.audit import partitions  # noqa: E402  (plain SQL, no Django needed)

TABLE = "audit_events_partitioned"
FIRST_MONTH = datetime(2024, 11, 1, tzinfo=UTC)
AGENTS = 10_000
TOOLS = [f"tool_{i:02d}" for i in range(20)]

FILL = """
INSERT INTO {stage} (id, record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, payload,
    masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at)
SELECT {offset} + g,
    md5('r' || ({offset} + g))::uuid,
    md5('a' || (g % {agents}))::uuid,
    'k',
    's-' || (({offset} + g) / 20),
    g % 20,
    'decision',
    timestamptz '{start}' + ((g - 1)::double precision / {rows}) * (timestamptz '{end}' - timestamptz '{start}'),
    'tool_' || lpad(((g * 7) % 20)::text, 2, '0'),
    CASE WHEN g % 50 < 45 THEN 'allow' WHEN g % 50 < 49 THEN 'deny' ELSE 'ask' END,
    CASE WHEN g % 50 BETWEEN 45 AND 48 THEN jsonb_build_array('rule-' || (g % 40)) ELSE '[]'::jsonb END,
    '{{"args":{{"id":1}}}}'::jsonb,
    '[]'::jsonb,
    '',
    md5(g::text) || md5((g + 1)::text),
    '\\x00'::bytea,
    ({offset} + g) / 1000,
    now()
FROM generate_series(1, {rows}) AS g;
"""


def connect() -> psycopg.Connection:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database of its own (e.g. .../h3big)")
    return psycopg.connect(url, autocommit=True)


def months(count: int) -> list[datetime]:
    out, month = [], FIRST_MONTH
    for _ in range(count):
        out.append(month)
        month = partitions.next_month(month)
    return out


def generate(args) -> None:
    until = None
    if args.until:
        hour, minute = (int(x) for x in args.until.split(":"))
        until = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    per_month = args.rows // args.months
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '256MB'")
        partitions.create_table(cur, TABLE)
        for index, start in enumerate(months(args.months)):
            name = partitions.partition_name(TABLE, start)
            cur.execute("SELECT to_regclass(%s)", [name])
            if cur.fetchone()[0] is not None:
                continue  # loaded by an earlier run
            if until and datetime.now(UTC) >= until:
                print(f"stopped at the deadline before {name}", flush=True)
                break
            began = time.time()
            end = partitions.next_month(start)
            stage = f"{name}_stage"
            cur.execute(f"DROP TABLE IF EXISTS {stage}")
            cur.execute(f"CREATE UNLOGGED TABLE {stage} (LIKE {TABLE} INCLUDING DEFAULTS)")
            cur.execute(FILL.format(stage=stage, offset=index * per_month, agents=AGENTS, rows=per_month,
                                    start=start.isoformat(), end=end.isoformat()))
            filled = time.time()
            cur.execute(f"ALTER TABLE {stage} SET LOGGED")
            cur.execute(f"ALTER TABLE {stage} ADD CONSTRAINT {stage}_range CHECK (time >= '{start.isoformat()}' "
                        f"AND time < '{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {stage} ADD PRIMARY KEY (id, time)")
            cur.execute(f"ALTER TABLE {stage} ADD UNIQUE (agent_id, record_id, time)")
            for suffix, columns in (("session", "(agent_id, session_id, seq)"), ("agent_time", "(agent_id, time DESC)"),
                                    ("time", "(time DESC)"), ("tool", "(tool, time DESC)"),
                                    ("effect", "(effect, time DESC)"), ("rules", "USING gin (rule_ids jsonb_path_ops)"),
                                    ("hash", "(record_hash)")):
                cur.execute(f"CREATE INDEX {stage}_{suffix} ON {stage} {columns}")
            cur.execute(f"ALTER TABLE {stage} RENAME TO {name}")
            cur.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{start.isoformat()}') "
                        f"TO ('{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {stage}_range")
            cur.execute(partitions.partition_sql(TABLE, start))  # the per-partition guarantees
            cur.execute(f"ANALYZE {name}")
            print(f"{name}: {per_month:,} rows, fill {filled - began:.0f} s, index+attach {time.time() - filled:.0f} s, "
                  f"total loaded {(index + 1) * per_month:,}", flush=True)
        cur.execute(f"SELECT count(*) FROM pg_inherits WHERE inhparent = '{TABLE}'::regclass")
        print(f"partitions: {cur.fetchone()[0]}", flush=True)


def _timed(cur, sql: str, params_of, repeat: int) -> tuple[list[float], int]:
    latencies, rows = [], 0
    for _ in range(repeat):
        params = params_of()
        started = time.perf_counter()
        cur.execute(sql, params)
        rows += len(cur.fetchall())
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, rows


def measure(args) -> None:
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*), min(time), max(time) FROM {TABLE}")
        total, first, last = cur.fetchone()
        cur.execute(f"SELECT pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c WHERE relname = '{TABLE}'")
        cur.execute(f"SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits "
                    f"WHERE inhparent = '{TABLE}'::regclass")
        size = cur.fetchone()[0]
        span = (last - first).total_seconds()

        def moment(days_back_max: float = 0) -> datetime:
            return first + timedelta(seconds=random.uniform(0, span))

        def agent() -> uuid.UUID:
            import hashlib

            return uuid.UUID(hashlib.md5(f"a{random.randrange(AGENTS)}".encode()).hexdigest())

        searches = {
            "latest 50 of one agent in a 7-day window": (
                f"SELECT id, time, tool, effect FROM {TABLE} WHERE agent_id = %s AND time >= %s AND time < %s "
                "ORDER BY time DESC LIMIT 50",
                lambda: (agent(), (m := moment()), m + timedelta(days=7))),
            "session timeline (agent, session), by seq": (
                f"SELECT id, seq, time, tool, effect FROM {TABLE} WHERE agent_id = %s AND session_id = %s ORDER BY seq "
                "LIMIT 500",
                lambda: (*_session_of(cur), )),
            "latest 50 denies in a 24-hour window": (
                f"SELECT id, time, agent_id, tool FROM {TABLE} WHERE effect = 'deny' AND time >= %s AND time < %s "
                "ORDER BY time DESC LIMIT 50",
                lambda: ((m := moment()), m + timedelta(days=1))),
            "latest 50 calls of a tool in a 24-hour window": (
                f"SELECT id, time, agent_id, effect FROM {TABLE} WHERE tool = %s AND time >= %s AND time < %s "
                "ORDER BY time DESC LIMIT 50",
                lambda: (random.choice(TOOLS), (m := moment()), m + timedelta(days=1))),
            "latest 50 naming a rule in a 7-day window": (
                f"SELECT id, time, agent_id FROM {TABLE} WHERE rule_ids @> %s::jsonb AND time >= %s AND time < %s "
                "ORDER BY time DESC LIMIT 50",
                lambda: (f'["rule-{random.randrange(40)}"]', (m := moment()), m + timedelta(days=7))),
            "a record by hash (no time range: every partition)": (
                f"SELECT id FROM {TABLE} WHERE record_hash = %s",
                lambda: (_hash_of(random.randrange(1, max(2, total // 24))),)),
            "page 1 of everything, newest first": (
                f"SELECT id, time, agent_id, tool, effect FROM {TABLE} ORDER BY time DESC LIMIT 50",
                lambda: ()),
        }
        print(f"\nAudit search: {total:,} events in {TABLE} ({size}), {first:%Y-%m-%d} .. {last:%Y-%m-%d}, "
              f"PostgreSQL, {os.cpu_count()} CPUs (shared), {args.repeat} runs each\n")
        print(f"{'search':<52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rows/run':>9}")
        for name, (sql, params_of) in searches.items():
            latencies, rows = _timed(cur, sql, params_of, args.repeat)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(f"{name:<52} {statistics.median(latencies):>8.1f} {p99:>8.1f} {latencies[-1]:>8.1f} "
                  f"{rows / args.repeat:>9.1f}", flush=True)


def _session_of(cur) -> tuple[uuid.UUID, str]:
    import hashlib

    g = random.randrange(1, 10_000_000)
    return uuid.UUID(hashlib.md5(f"a{g % AGENTS}".encode()).hexdigest()), f"s-{g // 20}"


def _hash_of(g: int) -> str:
    import hashlib

    return hashlib.md5(str(g).encode()).hexdigest() + hashlib.md5(str(g + 1).encode()).hexdigest()


def retention(args) -> None:
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT min(time) FROM {TABLE}")
        oldest = cur.fetchone()[0]
        start = partitions.month_start(oldest)
        name = partitions.partition_name(TABLE, start)
        cur.execute(f"SELECT count(*) FROM {name}")
        rows = cur.fetchone()[0]
        # For comparison: deleting one day of it row by row (as the retention role would; rolled back).
        cur.execute("BEGIN")
        cur.execute("SET LOCAL session_replication_role = replica")  # past the append-only trigger, for the timing
        began = time.perf_counter()
        cur.execute(f"DELETE FROM {name} WHERE time < %s", [start + timedelta(days=1)])
        deleted = cur.rowcount
        delete_seconds = time.perf_counter() - began
        cur.execute("ROLLBACK")
        began = time.perf_counter()
        dropped = partitions.drop_partitions_before(cur, TABLE, partitions.next_month(start))
        drop_seconds = time.perf_counter() - began
        print(f"\nRetention: DELETE of one day ({deleted:,} rows) {delete_seconds:.2f} s (rolled back); "
              f"dropping the whole month {dropped} ({rows:,} rows) {drop_seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--rows", type=int, default=100_000_000)
    gen.add_argument("--months", type=int, default=24)
    gen.add_argument("--until", help="HH:MM UTC: start no new month after this")
    meas = sub.add_parser("measure")
    meas.add_argument("--repeat", type=int, default=200)
    sub.add_parser("retention")
    args = parser.parse_args()
    {"generate": generate, "measure": measure, "retention": retention}[args.command](args)


if __name__ == "__main__":
    main()
