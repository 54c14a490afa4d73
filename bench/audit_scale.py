"""Audit search and retention at 100 million generated events (issue #20).

Uses a PostgreSQL database of its own (DATABASE_URL, e.g. .../audit_scale, migrated with
`manage.py migrate` so the append-only trigger function exists) and a table laid out as the
live, partitioned `audit_auditevent` (controlplane/audit/partitions.py: same columns, keys,
indexes, per-partition guarantees), named `audit_events_partitioned` (AUDIT_SCALE_TABLE).

    .venv/bin/python bench/audit_scale.py generate --rows 100000000 --months 24 --workers 3 [--until 05:55]
    .venv/bin/python bench/audit_scale.py measure --repeat 200 [--count]
    .venv/bin/python bench/audit_scale.py retention

`generate` loads month by month, resumable, `--workers` months at once: each month is
filled with generate_series into a table without indexes, indexed, then attached as a
partition, with its rule rows (the rule search's table, `<table>_rule`) loaded and attached
alike. Lean rows, realistic cardinalities: 5,000 agents, sessions of 20 records, 1,000
tools and 2,000 rule ids (both skewed), 90 % allow / 8 % deny / 2 % require_approval.

`measure` times the console's searches as the API builds them (random parameters in loaded
months, each run `--repeat` times, in the console's order: newest first, -time,-id; the rule
search through the rule table) and the page's count capped at 10,001 rows, and prints
p50/p99/max in ms and the load average after each.
`retention` times dropping the oldest month beside a DELETE of one day of it (rolled back).
Prints; asserts nothing. The machine is shared: noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.audit import partitions  # noqa: E402  (plain SQL, no Django needed)

TABLE = os.environ.get("AUDIT_SCALE_TABLE", "audit_events_partitioned")
RULES_TABLE = partitions.rule_table(TABLE)  # the rule search's table, partitioned alike
FIRST_MONTH = datetime(2024, 11, 1, tzinfo=UTC)
AGENTS = 5_000
TOOLS = 1_000
RULES = 2_000
SESSION_LENGTH = 20
MONTH_LOCK = 0x5741524400000000  # + the month's index: the advisory lock of its loader

# Lean rows (a short payload, a one-byte sealed record) with realistic cardinalities:
# 5,000 agents, sessions of 20 records (5 million sessions at 100 M), 1,000 tools and
# 2,000 rule ids, both skewed (a few are common, most rare), 90 % allow / 8 % deny /
# 2 % ask, rule ids on denies and asks. Column order as in partitions.columns_sql().
FILL = """
INSERT INTO {stage} (id, record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, payload,
    masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at)
SELECT n, md5('r' || n)::uuid, md5('a' || ((n / {session}) % {agents}))::uuid, 'k', 's' || (n / {session}),
    n % {session}, 'decision', t, 't' || floor({tools} * power(random(), 3))::int,
    CASE WHEN n % 50 < 45 THEN 'allow' WHEN n % 50 < 49 THEN 'deny' ELSE 'require_approval' END,
    CASE WHEN n % 50 >= 45 THEN jsonb_build_array('rule-' || floor({rules} * power(random(), 2))::int)
         ELSE '[]'::jsonb END,
    '{{}}'::jsonb, '[]'::jsonb, '', repeat(md5(n::text), 2), '\\x00'::bytea, n / 1000,
    t + interval '1 second'
FROM (SELECT {offset} + g AS n,
             timestamptz '{start}' + ((g - 1)::double precision / {rows}) * (timestamptz '{end}' - timestamptz '{start}')
             AS t
      FROM generate_series(1, {rows}) AS g) AS s;
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
    """Create the partitioned table, then load the months, `--workers` at a time."""
    with connect() as conn, conn.cursor() as cur:
        partitions.create_table(cur, TABLE)
    todo = list(enumerate(months(args.months)))
    if args.reverse:  # a second loader beside a running one meets it in the middle
        todo.reverse()
    if args.workers <= 1:
        _load_months(args, todo)
    else:
        with multiprocessing.Pool(args.workers) as pool:
            pool.starmap(_load_months, [(args, todo[w::args.workers]) for w in range(args.workers)])
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), pg_size_pretty(pg_database_size(current_database())) FROM pg_inherits "
                    f"WHERE inhparent = '{TABLE}'::regclass")
        print("partitions: {}, database size {}".format(*cur.fetchone()), flush=True)


def _load_months(args, todo: list[tuple[int, datetime]]) -> None:
    """Each month: filled by generate_series into an unlogged table with no index, indexed
    (a sort per index, faster than maintaining them row by row), attached as a partition
    (the parent's indexes adopt the matching ones), given the per-partition guarantees.
    The partitions stay unlogged unless --logged: no WAL for 40 GB of generated rows (a
    bench database is not kept across a crash); the searches read the same pages."""
    until = None
    if args.until:
        hour, minute = (int(x) for x in args.until.split(":"))
        until = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    per_month = args.rows // args.months
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET max_parallel_maintenance_workers = 0")  # the workers are the parallelism
        for index, start in todo:
            name = partitions.partition_name(TABLE, start)
            cur.execute("SELECT to_regclass(%s)", [name])
            if cur.fetchone()[0] is not None:
                continue  # loaded by an earlier run
            if until and datetime.now(UTC) >= until:
                print(f"stopped at the deadline before {name}", flush=True)
                break
            cur.execute("SELECT pg_database_size(current_database())")
            if cur.fetchone()[0] > args.max_gb * 2**30:
                print(f"stopped before {name}: the database is past {args.max_gb} GB", flush=True)
                break
            if shutil.disk_usage(args.disk).free < args.min_free_gb * 2**30:
                print(f"stopped before {name}: less than {args.min_free_gb} GB free on {args.disk}", flush=True)
                break
            began = time.time()
            end = partitions.next_month(start)
            stage = f"{name}_stage"
            # One loader a month: a session lock (released if the loader dies), so a stage
            # nobody holds is a crashed run's, dropped; one held is another loader's, left alone.
            cur.execute("SELECT pg_try_advisory_lock(%s)", [MONTH_LOCK + index])
            if not cur.fetchone()[0]:
                continue
            cur.execute("SELECT to_regclass(%s)", [name])
            if cur.fetchone()[0] is not None:
                cur.execute("SELECT pg_advisory_unlock(%s)", [MONTH_LOCK + index])
                continue  # loaded by the loader that held it
            cur.execute(f"DROP TABLE IF EXISTS {stage}")
            cur.execute(f"CREATE UNLOGGED TABLE {stage} (LIKE {TABLE} INCLUDING DEFAULTS)")
            cur.execute(FILL.format(stage=stage, offset=index * per_month, agents=AGENTS, rows=per_month,
                                    session=SESSION_LENGTH, tools=TOOLS, rules=RULES,
                                    start=start.isoformat(), end=end.isoformat()))
            filled = time.time()
            if args.logged:
                cur.execute(f"ALTER TABLE {stage} SET LOGGED")
            cur.execute(f"ALTER TABLE {stage} ADD CONSTRAINT {stage}_range CHECK (time >= '{start.isoformat()}' "
                        f"AND time < '{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {stage} ADD PRIMARY KEY (id, time){partitions.PACKED}")
            cur.execute(f"ALTER TABLE {stage} ADD UNIQUE (agent_id, record_id, time){partitions.PACKED}")
            cur.execute(partitions.index_sql(stage, stage))
            # The month's rule rows (the rule search's table), attached before the events' month:
            # a loaded events month always has its rule month.
            rules, rule_name = partitions.rule_table(TABLE), partitions.partition_name(RULES_TABLE, start)
            rule_stage = f"{rule_name}_stage"
            cur.execute(f"DROP TABLE IF EXISTS {rule_stage}")
            cur.execute(f"DROP TABLE IF EXISTS {rule_name}")  # a crashed run's, never its events' (not loaded)
            cur.execute(f"CREATE UNLOGGED TABLE {rule_stage} (LIKE {rules} INCLUDING DEFAULTS)")
            cur.execute(partitions.rule_rows_sql(TABLE, source=stage, target=rule_stage))
            if args.logged:
                cur.execute(f"ALTER TABLE {rule_stage} SET LOGGED")
            cur.execute(f"ALTER TABLE {rule_stage} ADD CONSTRAINT {rule_stage}_range CHECK (time >= "
                        f"'{start.isoformat()}' AND time < '{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {rule_stage} ADD PRIMARY KEY (rule_id, time, event_id)")
            cur.execute(f"ALTER TABLE {rule_stage} RENAME TO {rule_name}")
            cur.execute(f"ALTER TABLE {rules} ATTACH PARTITION {rule_name} FOR VALUES FROM ('{start.isoformat()}') "
                        f"TO ('{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {rule_name} DROP CONSTRAINT {rule_stage}_range")
            cur.execute(partitions.partition_sql(rules, start))
            cur.execute(f"VACUUM ANALYZE {rule_name}")
            cur.execute(f"ALTER TABLE {stage} RENAME TO {name}")
            cur.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{start.isoformat()}') "
                        f"TO ('{end.isoformat()}')")
            cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {stage}_range")
            cur.execute(partitions.partition_sql(TABLE, start))  # the per-partition guarantees
            cur.execute(f"VACUUM ANALYZE {name}")
            cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            print(f"{name}: {per_month:,} rows, fill {filled - began:.0f} s, index+attach {time.time() - filled:.0f} s, "
                  f"database {cur.fetchone()[0]}", flush=True)
            cur.execute("SELECT pg_advisory_unlock(%s)", [MONTH_LOCK + index])


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
        # Estimates (counting 100 M rows would take longer than every search together).
        cur.execute("SELECT sum(c.reltuples)::bigint, pg_size_pretty(sum(pg_total_relation_size(c.oid))), count(*) "
                    f"FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{TABLE}'::regclass")
        total, size, parts = cur.fetchone()
        cur.execute(f"SELECT min(time), max(time), max(id) FROM {TABLE}")
        first, last, top = cur.fetchone()
        loaded = [(lower, upper) for _, lower, upper in partitions.monthly_partitions(cur, TABLE)]
        per_month = round(total / len(loaded))

        def moment() -> datetime:
            """A moment in a loaded month (a range in a month not loaded would find nothing, fast)."""
            lower, upper = random.choice(loaded)
            return lower + timedelta(seconds=random.uniform(0, (upper - lower).total_seconds()))

        def agent() -> uuid.UUID:
            return _uuid(f"a{random.randrange(AGENTS)}")

        def rule() -> str:
            return f"rule-{int(RULES * random.random() ** 2)}"  # as generated: common rules more often

        def tool() -> str:
            return f"t{int(TOOLS * random.random() ** 3)}"

        # The console's order, newest first: -time,-id (what the API's ORDER BY is for ?ordering=-time,-id).
        # Each search as the API builds it; the rule search joins the rule table as filters.py does.
        newest = "ORDER BY time DESC, id DESC LIMIT 50"
        # The rule search as filters.py builds it: the event's time as a closed range (one
        # equality estimated, not two multiplied), ordered by the rule table's key.
        rule_join = (f"FROM {TABLE} e JOIN {RULES_TABLE} r ON r.event_id = e.id "
                     "WHERE r.rule_id = %s AND r.time BETWEEN e.time AND e.time")  # short ids: no recheck
        by_rule_key = "ORDER BY r.time DESC, r.event_id DESC LIMIT 50"
        searches = {
            "latest 50 of one agent in a 7-day window": (
                f"SELECT id, time, tool, effect FROM {TABLE} WHERE agent_id = %s AND time >= %s AND time < %s {newest}",
                lambda: (agent(), (m := moment()), m + timedelta(days=7))),
            "session timeline (agent, session), by seq": (
                f"SELECT id, seq, time, tool, effect FROM {TABLE} WHERE agent_id = %s AND session_id = %s ORDER BY seq "
                "LIMIT 1000",
                lambda: _session_of(_loaded_row(moment(), per_month))),
            "latest 50 denies in a 24-hour window": (
                f"SELECT id, time, agent_id, tool FROM {TABLE} WHERE effect = 'deny' AND time >= %s AND time < %s "
                f"{newest}",
                lambda: ((m := moment()), m + timedelta(days=1))),
            "latest 50 calls of a tool in a 24-hour window": (
                f"SELECT id, time, agent_id, effect FROM {TABLE} WHERE tool = %s AND time >= %s AND time < %s {newest}",
                lambda: (tool(), (m := moment()), m + timedelta(days=1))),
            "latest 50 naming a rule in a 7-day window": (
                f"SELECT e.id, e.time, e.agent_id {rule_join} AND e.time >= %s AND e.time < %s "
                f"AND r.time >= %s AND r.time < %s {by_rule_key}",
                lambda: _rule_window(rule(), moment())),
            "latest 50 naming a rule (no time range)": (
                f"SELECT e.id, e.time, e.agent_id {rule_join} {by_rule_key}",
                lambda: _rule_of(rule())),
            "latest 50 naming one of the 3 commonest rules (no range)": (
                f"SELECT e.id, e.time, e.agent_id {rule_join} {by_rule_key}",
                lambda: (f"rule-{random.randrange(3)}",)),
            "a record by hash (no time range: every partition)": (
                f"SELECT id FROM {TABLE} WHERE record_hash = %s",
                lambda: (_hash_of(_loaded_row(moment(), per_month)),)),
            "a record id of an agent (no time: every partition)": (
                f"SELECT id FROM {TABLE} WHERE agent_id = %s AND record_id = %s",
                lambda: _record_of(_loaded_row(moment(), per_month))),
            "page 1 of everything, newest first": (
                f"SELECT id, time, agent_id, tool, effect FROM {TABLE} {newest}",
                lambda: ()),
            # The page's count (the API counts up to 10,000 beyond the page: CappedCountPagination).
            "count, capped at 10,001: everything": (
                f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} LIMIT {CAP + 1}) AS page", lambda: ()),
            "count, capped: a tool in a 24-hour window": (
                f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE tool = %s AND time >= %s AND time < %s "
                f"LIMIT {CAP + 1}) AS page",
                lambda: (tool(), (m := moment()), m + timedelta(days=1))),
            "count, capped: a rule in a 7-day window": (
                f"SELECT count(*) FROM (SELECT 1 {rule_join} AND e.time >= %s AND e.time < %s "
                f"AND r.time >= %s AND r.time < %s LIMIT {CAP + 1}) AS page",
                lambda: _rule_window(rule(), moment())),
            "count, capped: a rule (no time range)": (
                f"SELECT count(*) FROM (SELECT 1 {rule_join} LIMIT {CAP + 1}) AS page", lambda: _rule_of(rule())),
        }
        print(f"\nAudit search: ~{total:,} events in {TABLE} ({parts} partitions, {size}), "
              f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}, PostgreSQL, {os.cpu_count()} CPUs (shared), load "
              f"{os.getloadavg()[0]:.1f}, {args.repeat} runs each (random parameters)\n")
        print(f"{'search':<52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rows/run':>9} {'load':>5}")
        for name, (sql, params_of) in searches.items():
            latencies, rows = _timed(cur, sql, params_of, args.repeat)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(f"{name:<52} {statistics.median(latencies):>8.1f} {p99:>8.1f} {latencies[-1]:>8.1f} "
                  f"{rows / args.repeat:>9.1f} {os.getloadavg()[0]:>5.1f}", flush=True)
        if args.count:
            # The console's page header counts the matches (LimitOffsetPagination): unfiltered, every row.
            latencies, _ = _timed(cur, f"SELECT count(*) FROM {TABLE}", lambda: (), 3)
            print(f"{'count(*) of everything (3 runs)':<52} {statistics.median(latencies):>8.1f} "
                  f"{max(latencies):>8.1f} {max(latencies):>8.1f} {1:>9.1f}", flush=True)


CAP = 10_000  # controlplane/audit/api/pagination.py's COUNT_CAP


def _rule_of(rule: str) -> tuple:
    return (rule,)


def _rule_window(rule: str, start: datetime) -> tuple:
    end = start + timedelta(days=7)
    return rule, start, end, start, end


def _loaded_row(moment: datetime, per_month: int) -> int:
    """The generated row signed at about `moment` (FILL spreads each month's rows evenly)."""
    start, index = FIRST_MONTH, 0
    while partitions.next_month(start) <= moment:
        start, index = partitions.next_month(start), index + 1
    share = (moment - start) / (partitions.next_month(start) - start)
    return index * per_month + max(1, int(share * per_month))


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(text.encode()).hexdigest())


def _session_of(n: int) -> tuple[uuid.UUID, str]:
    """The agent and session of generated row n (as FILL makes them)."""
    return _uuid(f"a{(n // SESSION_LENGTH) % AGENTS}"), f"s{n // SESSION_LENGTH}"


def _record_of(n: int) -> tuple[uuid.UUID, uuid.UUID]:
    return _uuid(f"a{(n // SESSION_LENGTH) % AGENTS}"), _uuid(f"r{n}")


def _hash_of(n: int) -> str:
    return hashlib.md5(str(n).encode()).hexdigest() * 2


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
    gen.add_argument("--logged", action="store_true",
                     help="WAL-log the partitions (crash-safe; slower to load; searches are the same)")
    gen.add_argument("--reverse", action="store_true", help="load the newest months first")
    gen.add_argument("--max-gb", type=float, default=44, help="start no new month past this database size")
    gen.add_argument("--workers", type=int, default=2, help="months loaded at once (one connection each)")
    gen.add_argument("--min-free-gb", type=float, default=22, help="start no new month with less free disk")
    gen.add_argument("--disk", default="/", help="the file system PostgreSQL's data is on")
    meas = sub.add_parser("measure")
    meas.add_argument("--repeat", type=int, default=200)
    meas.add_argument("--count", action="store_true", help="also time the unfiltered count(*) (slow at 100 M)")
    sub.add_parser("retention")
    args = parser.parse_args()
    {"generate": generate, "measure": measure, "retention": retention}[args.command](args)


if __name__ == "__main__":
    main()
