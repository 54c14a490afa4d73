"""Audit search and retention at 100 million generated events (issue #20).

Uses a PostgreSQL database of its own (DATABASE_URL, e.g. .../audit_scale, migrated with
`manage.py migrate` so the append-only trigger function exists) and a table laid out as the
live, partitioned `audit_auditevent` (controlplane/audit/partitions.py: same columns, keys,
indexes, per-partition guarantees), named `audit_events_partitioned` (AUDIT_SCALE_TABLE).

    .venv/bin/python bench/audit_scale.py generate --rows 100000000 --months 24 --workers 3 [--until 05:55]
    .venv/bin/python bench/audit_scale.py measure --repeat 200 [--only count] [--budget 60]
    .venv/bin/python bench/audit_scale.py explain --only "a rule: count"
    .venv/bin/python bench/audit_scale.py retention

`generate` loads month by month, resumable, `--workers` months at once: each month is
filled with generate_series into a table without indexes, indexed, then attached as a
partition, with its rule rows (the rule search's table, `<table>_rule`) loaded and attached
alike. Lean rows shaped like real sessions (see FILL): 5,000 agents, sessions of 20 records,
tool calls of four records (intent, decision, result, output), 1,000 tools and 2,000 rule
ids (both skewed), decisions 90 % allow / 8 % deny / 2 % require_approval.

`measure` times the console's searches as the API builds them (random parameters in loaded
months, each run up to `--repeat` times, in the console's order: newest first, -time,-id;
the rule search through the rule table): each filter and time range alone and combined,
the page of 50 and the page's count capped at 10,001 rows; prints p50/p99/max in ms and the
load average after each. `explain --only <name>` prints EXPLAIN (ANALYZE, BUFFERS) of them.
`retention` drops the oldest month (events and rule rows) as retention does, beside a
DELETE of one day of it (rolled back), and tries each write the app role must not make.
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

# Lean rows (a short payload, a one-byte sealed record) with realistic cardinalities and
# the shape of real sessions: 5,000 agents, sessions of 20 records (5 million sessions at
# 100 M), each tool call four records (intent, decision, result, output: records.rule_ids
# names rules on decisions only), the call's tool on each of its records, 1,000 tools and
# 2,000 rule ids (both skewed: a few are common, most rare), decisions 90 % allow / 8 % deny
# / 2 % require_approval with rule ids on denies and asks (2.5 rule rows per 100 events).
# Column order as in partitions.columns_sql(). `u` is a uniform draw per tool call.
FILL = """
INSERT INTO {stage} (id, record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, payload,
    masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at)
SELECT n, md5('r' || n)::uuid, md5('a' || ((n / {session}) % {agents}))::uuid, 'k', 's' || (n / {session}),
    n % {session}, (ARRAY['intent', 'decision', 'result', 'output'])[n % 4 + 1], t,
    't' || floor({tools} * power(u, 3))::int,
    CASE WHEN n % 4 <> 1 THEN '' WHEN c % 50 < 45 THEN 'allow' WHEN c % 50 < 49 THEN 'deny'
         ELSE 'require_approval' END,
    CASE WHEN n % 4 = 1 AND c % 50 >= 45 THEN jsonb_build_array('rule-' || floor({rules} * power(random(), 2))::int)
         ELSE '[]'::jsonb END,
    '{{}}'::jsonb, '[]'::jsonb, '', repeat(md5(n::text), 2), '\\x00'::bytea, n / 1000,
    t + interval '1 second'
FROM (SELECT n, n / 4 AS c, abs(hashint8(n / 4)::double precision) / 2147483649 AS u, t
      FROM (SELECT {offset} + g AS n,
                   timestamptz '{start}' + ((g - 1)::double precision / {rows})
                       * (timestamptz '{end}' - timestamptz '{start}') AS t
            FROM generate_series(1, {rows}) AS g) AS numbered) AS s;
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


class ByKeys:
    """A rule search's page as the API fetches it (AuditEventViewSet.page_of): the page's keys
    from the rule table (`keys_sql`), then those events by key, in one query each."""

    EVENTS = f"SELECT id, time, agent_id FROM {TABLE} WHERE id = ANY(%s) AND time = ANY(%s)"

    def __init__(self, keys_sql: str) -> None:
        self.keys_sql = keys_sql

    def run(self, cur, params, explain: str = "") -> list:
        cur.execute(explain + self.keys_sql, params)
        found = cur.fetchall()
        if explain:
            cur.execute(self.keys_sql, params)
            keys = cur.fetchall()
        else:
            keys = found
        if not keys:
            return found
        cur.execute(explain + self.EVENTS, ([pk for pk, _ in keys], sorted({moment for _, moment in keys})))
        return found + cur.fetchall() if explain else cur.fetchall()


def _timed(cur, sql: str | ByKeys, params_of, repeat: int, budget: float) -> tuple[list[float], int]:
    """Runs `sql` up to `repeat` times with fresh parameters, fewer once `budget` seconds passed."""
    latencies, rows, began = [], 0, time.perf_counter()
    for _ in range(repeat):
        params = params_of()
        started = time.perf_counter()
        if isinstance(sql, ByKeys):
            rows += len(sql.run(cur, params))
        else:
            cur.execute(sql, params)
            rows += len(cur.fetchall())
        latencies.append((time.perf_counter() - started) * 1000)
        if time.perf_counter() - began > budget:
            break
    return latencies, rows


def searches(cur) -> tuple[dict[str, tuple[str, object]], str]:
    """The console's searches as the API builds them, each with a draw of random parameters
    (in loaded months), and a line describing the data."""
    cur.execute("SELECT sum(c.reltuples)::bigint, pg_size_pretty(sum(pg_total_relation_size(c.oid))), count(*) "
                f"FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{TABLE}'::regclass")
    total, size, parts = cur.fetchone()  # estimates: counting 100 M rows takes longer than every search
    cur.execute(f"SELECT sum(c.reltuples)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                f"WHERE i.inhparent = '{RULES_TABLE}'::regclass")
    rule_rows = cur.fetchone()[0]
    cur.execute(f"SELECT min(time), max(time) FROM {TABLE}")
    first, last = cur.fetchone()
    loaded = [(lower, upper) for _, lower, upper in partitions.monthly_partitions(cur, TABLE)]
    # Rows a month as generated (ids are dense within a month): the generated row at a moment.
    cur.execute(f"SELECT max(id) - min(id) + 1 FROM {partitions.partition_name(TABLE, loaded[0][0])}")
    per_month = cur.fetchone()[0]
    described = (f"~{total:,} events and ~{rule_rows:,} rule rows in {TABLE} ({parts} partitions, {size}), "
                 f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}")

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

    def row() -> int:
        return _loaded_row(moment(), per_month)

    def week() -> tuple[datetime, datetime]:
        return (m := moment()), m + timedelta(days=7)

    def day() -> tuple[datetime, datetime]:
        return (m := moment()), m + timedelta(days=1)

    # The console's order, newest first: -time,-id (the API's ORDER BY for ?ordering=-time,-id).
    newest = "ORDER BY time DESC, id DESC LIMIT 50"
    # The rule search as filters.py builds it: the event's time as a closed range (one
    # equality estimated, not two multiplied), ordered by the rule table's key.
    rule_join = (f"FROM {TABLE} e JOIN {RULES_TABLE} r ON r.event_id = e.id "
                 "WHERE r.rule_id = %s AND r.time BETWEEN e.time AND e.time")  # short ids: no recheck
    by_rule_key = "ORDER BY r.time DESC, r.event_id DESC LIMIT 50"
    names_a_rule = "AND e.rule_ids <> '[]'::jsonb"  # filters.NAMES_A_RULE
    in_range = "AND time >= %s AND time < %s"
    rule_in_range = "AND e.time >= %s AND e.time < %s AND r.time >= %s AND r.time < %s"

    def page(where: str, params_of) -> tuple[str, object]:
        return f"SELECT id, time, agent_id, tool, effect FROM {TABLE} {where} {newest}", params_of

    def count(where: str, params_of) -> tuple[str, object]:
        # The page's count: CappedCountPagination counts up to 10,000 (+1 to know if more follow).
        return f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} {where} LIMIT {CAP + 1}) AS page", params_of

    def rule_keys(where: str) -> ByKeys:
        # A rule search's page: its keys from the rule table, then its events (ByKeys).
        return ByKeys(f"SELECT event_id, time FROM {RULES_TABLE} {where} ORDER BY time DESC, event_id DESC LIMIT 50")

    def rule_count(where: str, params_of) -> tuple[str, object]:
        # A rule search's count from the rule table alone (AuditEventFilter.rule_rows_to_count).
        return f"SELECT count(*) FROM (SELECT 1 FROM {RULES_TABLE} {where} LIMIT {CAP + 1}) AS page", params_of

    found: dict[str, tuple[str, object]] = {
        "everything: page": page("", lambda: ()),
        "everything: count": count("", lambda: ()),
        "a 7-day window: page": page(f"WHERE true {in_range}", week),
        "a 7-day window: count": count(f"WHERE true {in_range}", week),
        "an agent: page": page("WHERE agent_id = %s", lambda: (agent(),)),
        "an agent: count": count("WHERE agent_id = %s", lambda: (agent(),)),
        "an agent in 7 days: page": page(f"WHERE agent_id = %s {in_range}", lambda: (agent(), *week())),
        "an agent in 7 days: count": count(f"WHERE agent_id = %s {in_range}", lambda: (agent(), *week())),
        "session timeline (agent, session), by seq": (
            f"SELECT id, seq, time, tool, effect FROM {TABLE} WHERE agent_id = %s AND session_id = %s "
            "ORDER BY seq LIMIT 1000", lambda: _session_of(row())),
        "a tool: page": page("WHERE tool = %s", lambda: (tool(),)),
        "a tool: count": count("WHERE tool = %s", lambda: (tool(),)),
        "a tool in 24 h: page": page(f"WHERE tool = %s {in_range}", lambda: (tool(), *day())),
        "a tool in 24 h: count": count(f"WHERE tool = %s {in_range}", lambda: (tool(), *day())),
        "denies: page": page("WHERE effect = 'deny'", lambda: ()),
        "denies: count": count("WHERE effect = 'deny'", lambda: ()),
        "approvals asked in 24 h: page": page(f"WHERE effect = 'require_approval' {in_range}", day),
        "approvals asked in 24 h: count": count(f"WHERE effect = 'require_approval' {in_range}", day),
        "a kind (results) in 24 h: page": page(f"WHERE kind = 'result' {in_range}", day),
        "a kind (results) in 24 h: count": count(f"WHERE kind = 'result' {in_range}", day),
        "a rule: page": (rule_keys("WHERE rule_id = %s"), lambda: (rule(),)),
        "a rule: page (before: joined to events)": (
            f"SELECT e.id, e.time, e.agent_id {rule_join} {by_rule_key}", lambda: (rule(),)),
        "a rule: count (rule rows)": rule_count("WHERE rule_id = %s", lambda: (rule(),)),
        "a rule: count (before: joined to events)": (
            f"SELECT count(*) FROM (SELECT 1 {rule_join} LIMIT {CAP + 1}) AS page", lambda: (rule(),)),
        "3 commonest rules: page": (rule_keys("WHERE rule_id = %s"), lambda: (f"rule-{random.randrange(3)}",)),
        "3 commonest rules: page (before: joined to events)": (
            f"SELECT e.id, e.time, e.agent_id {rule_join} {by_rule_key}", lambda: (f"rule-{random.randrange(3)}",)),
        "3 commonest rules: count (rule rows)": rule_count(
            "WHERE rule_id = %s", lambda: (f"rule-{random.randrange(3)}",)),
        "3 commonest rules: count (before: joined to events)": (
            f"SELECT count(*) FROM (SELECT 1 {rule_join} LIMIT {CAP + 1}) AS page",
            lambda: (f"rule-{random.randrange(3)}",)),
        "a rule in 7 days: page": (rule_keys(f"WHERE rule_id = %s {in_range}"), lambda: (rule(), *week())),
        "a rule in 7 days: page (before: joined to events)": (
            f"SELECT e.id, e.time, e.agent_id {rule_join} {rule_in_range} {by_rule_key}",
            lambda: (rule(), *(w := week()), *w)),
        "a rule in 7 days: count (rule rows)": rule_count(f"WHERE rule_id = %s {in_range}", lambda: (rule(), *week())),
        "an agent's denies: page": page("WHERE agent_id = %s AND effect = 'deny'", lambda: (agent(),)),
        "an agent's denies: count": count("WHERE agent_id = %s AND effect = 'deny'", lambda: (agent(),)),
        "an agent's calls of a tool: page": page("WHERE agent_id = %s AND tool = %s", lambda: (agent(), tool())),
        "an agent's calls of a tool: count": count("WHERE agent_id = %s AND tool = %s", lambda: (agent(), tool())),
        "a tool's denies in 7 days: page": page(f"WHERE tool = %s AND effect = 'deny' {in_range}",
                                                lambda: (tool(), *week())),
        "a tool's denies in 7 days: count": count(f"WHERE tool = %s AND effect = 'deny' {in_range}",
                                                  lambda: (tool(), *week())),
        # With an agent, filters.py adds the predicate of the index of events naming a rule.
        "an agent's events naming a rule: page": (
            f"SELECT e.id, e.time, e.agent_id {rule_join} AND e.agent_id = %s {names_a_rule} {by_rule_key}",
            lambda: (rule(), agent())),
        "an agent's events naming a rule: count": (
            f"SELECT count(*) FROM (SELECT 1 {rule_join} AND e.agent_id = %s {names_a_rule} LIMIT {CAP + 1}) AS page",
            lambda: (rule(), agent())),
        "an agent's events naming a rule: page (before: no rule_ids predicate)": (
            f"SELECT e.id, e.time, e.agent_id {rule_join} AND e.agent_id = %s {by_rule_key}",
            lambda: (rule(), agent())),
        "an agent's events naming a rule: count (before: no rule_ids predicate)": (
            f"SELECT count(*) FROM (SELECT 1 {rule_join} AND e.agent_id = %s LIMIT {CAP + 1}) AS page",
            lambda: (rule(), agent())),
        "a record by hash (every partition)": (
            f"SELECT id FROM {TABLE} WHERE record_hash = %s", lambda: (_hash_of(row()),)),
        "a record id of an agent (every partition)": (
            f"SELECT id FROM {TABLE} WHERE agent_id = %s AND record_id = %s", lambda: _record_of(row())),
    }
    return found, described


def measure(args) -> None:
    with connect() as conn, conn.cursor() as cur:
        found, described = searches(cur)
        print(f"\nAudit search: {described}, PostgreSQL, {os.cpu_count()} CPUs (shared), load "
              f"{os.getloadavg()[0]:.1f}, up to {args.repeat} runs each (random parameters, at most "
              f"{args.budget:.0f} s a search)\n")
        print(f"{'search':<52} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rows/run':>9} {'load':>5}")
        for name, (sql, params_of) in found.items():
            if args.only and args.only not in name:
                continue
            latencies, rows = _timed(cur, sql, params_of, args.repeat, args.budget)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(f"{name:<52} {len(latencies):>5} {statistics.median(latencies):>8.1f} {p99:>8.1f} "
                  f"{latencies[-1]:>8.1f} {rows / len(latencies):>9.1f} {os.getloadavg()[0]:>5.1f}", flush=True)


def explain(args) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the searches whose name contains --only, one draw each."""
    with connect() as conn, conn.cursor() as cur:
        found, described = searches(cur)
        print(described)
        for name, (sql, params_of) in found.items():
            if args.only in name:
                params = params_of()
                if isinstance(sql, ByKeys):
                    lines = [line for line, in sql.run(cur, params, explain="EXPLAIN (ANALYZE, BUFFERS) ")]
                else:
                    cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                    lines = [line for line, in cur.fetchall()]
                print(f"\n-- {name} {params}\n" + "\n".join(lines), flush=True)


CAP = 10_000  # controlplane/audit/api/pagination.py's COUNT_CAP


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
    """Drop the oldest month (events and rule rows) as retention does, beside a DELETE of one
    day of it (rolled back), and check the append-only guarantees a role with the app role's
    grants (SELECT, INSERT on the parents) meets before and after."""
    with connect() as conn, conn.cursor() as cur:
        start = partitions.monthly_partitions(cur, TABLE)[0][1]
        name, rule_name = partitions.partition_name(TABLE, start), partitions.partition_name(RULES_TABLE, start)
        cur.execute(f"SELECT (SELECT count(*) FROM {name}), (SELECT count(*) FROM {rule_name})")
        rows, rule_rows = cur.fetchone()
        print(f"\nRetention of {name}: {rows:,} events, {rule_rows:,} rule rows in {rule_name}; load "
              f"{os.getloadavg()[0]:.1f}")
        app = _app_role(cur)
        _app_role_refusals(cur, app, name, rule_name, start)
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
        print(f"DELETE of one day ({deleted:,} rows) {delete_seconds:.2f} s (rolled back); "
              f"warden_audit_drop_partitions {drop_seconds * 1000:.0f} ms, dropped {', '.join(dropped)}")
        cur.execute("SELECT to_regclass(%s), to_regclass(%s)", [name, rule_name])
        print(f"after: {name} {'gone' if cur.fetchone()[0] is None else 'STILL THERE'}, ", end="")
        cur.execute(f"SELECT to_regclass(%s) IS NULL, (SELECT count(*) FROM {RULES_TABLE} WHERE time >= %s "
                    "AND time < %s)", [rule_name, start, partitions.next_month(start)])
        gone, left = cur.fetchone()
        print(f"{rule_name} {'gone' if gone else 'STILL THERE'}, rule rows of that month left: {left:,}")
        _app_role_refusals(cur, app, *(partitions.partition_name(t, partitions.next_month(start))
                                       for t in (TABLE, RULES_TABLE)), partitions.next_month(start))
        cur.execute(f"DROP OWNED BY {app}; DROP ROLE {app}")


def _app_role(cur) -> str:
    """A role granted what the app role has on the audit tables (SELECT, INSERT on the
    parents), named after this database (roles are the cluster's)."""
    cur.execute("SELECT current_database()")
    app = f"{_ident_part(cur.fetchone()[0])}_bench_app"
    cur.execute(f"DROP ROLE IF EXISTS {app}; CREATE ROLE {app} NOLOGIN")
    cur.execute(f"GRANT SELECT, INSERT ON {TABLE}, {RULES_TABLE} TO {app}")
    return app


def _ident_part(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"database name {name!r}: letters, digits and _ only")
    return name


def _app_role_refusals(cur, app: str, name: str, rule_name: str, start: datetime) -> None:
    """Each write the app role must not make, tried as it (rolled back): prints refused or ALLOWED."""
    attempts = {
        "DELETE through the parent": f"DELETE FROM {TABLE} WHERE time < '{start.isoformat()}'::timestamptz + interval '1 hour'",
        "UPDATE through the parent": f"UPDATE {TABLE} SET tool = 'x' WHERE time < '{start.isoformat()}'::timestamptz + interval '1 hour'",
        "DELETE rule rows": f"DELETE FROM {RULES_TABLE} WHERE time < '{start.isoformat()}'::timestamptz + interval '1 day'",
        "DELETE on the partition": f"DELETE FROM {name}",
        "TRUNCATE the partition": f"TRUNCATE {name}",
        "TRUNCATE the rule partition": f"TRUNCATE {rule_name}",
        "DETACH the partition": f"ALTER TABLE {TABLE} DETACH PARTITION {name}",
        "DROP the partition": f"DROP TABLE {name}",
        "DROP the rule partition": f"DROP TABLE {rule_name}",
        "warden_audit_drop_partitions": f"SELECT warden_audit_drop_partitions('{TABLE}', now() - interval '1 year')",
    }
    results = []
    for what, sql in attempts.items():
        cur.execute("BEGIN")
        cur.execute(f"SET LOCAL ROLE {app}")
        try:
            cur.execute(sql)
            results.append(f"{what}: ALLOWED")
        except psycopg.Error as exc:
            results.append(f"{what}: refused ({type(exc).__name__})")
        cur.execute("ROLLBACK")
    print(f"app role on {name}: " + "; ".join(results))


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
    meas.add_argument("--budget", type=float, default=60, help="seconds a search is repeated at most")
    meas.add_argument("--only", default="", help="the searches whose name contains this")
    expl = sub.add_parser("explain")
    expl.add_argument("--only", required=True, help="the searches whose name contains this")
    sub.add_parser("retention")
    args = parser.parse_args()
    {"generate": generate, "measure": measure, "explain": explain, "retention": retention}[args.command](args)


if __name__ == "__main__":
    main()
