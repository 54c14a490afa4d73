"""What each search index costs ingestion: the PostgreSQL backend's CPU time and WAL per
event of a COPY of event batches into a month that already holds `--preload` events (issue
#20: the indexes of two filters, migration 0012, beside the others).

    DATABASE_URL=postgres://.../h7 .venv/bin/python bench/audit_index_cost.py [--preload 1000000]

Uses a table of its own laid out as the live one (partitions.create_table, AUDIT_COST_TABLE),
logged like the live partitions; per configuration (every index; without one of the added
ones; without all four) it drops the indexes left out, COPYs `--batches` batches of
`--batch` new events (rows shaped as bench/audit_scale.py's FILL), and reads the backend's
CPU time (/proc/<pid>/stat: same machine) and WAL written. Rounds interleave the
configurations. Prints; asserts nothing. CPU time, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import audit_scale  # noqa: E402  (FILL, connect)

from controlplane.audit import partitions  # noqa: E402

TABLE = os.environ.get("AUDIT_COST_TABLE", "audit_cost_events")
MONTH = datetime(2026, 1, 1, tzinfo=UTC)
ADDED = ("agent_tool", "agent_effect", "tool_effect", "agent_rules")


def backend_cpu(cur) -> float:
    """Seconds of CPU the connection's backend has used (utime + stime)."""
    cur.execute("SELECT pg_backend_pid()")
    fields = Path(f"/proc/{cur.fetchone()[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    per_config = args.batch * args.batches
    configs = {"every index": (), **{f"without {name}": (name,) for name in ADDED}, "without the four": ADDED}
    total = args.preload + per_config * len(configs) * args.rounds
    with audit_scale.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}, {partitions.rule_table(TABLE)} CASCADE")
        partitions.create_table(cur, TABLE)
        cur.execute(partitions.partition_sql(TABLE, MONTH))
        # Every row the run will COPY, made once (times spread over the month, in order).
        cur.execute("DROP TABLE IF EXISTS audit_cost_source")
        cur.execute(f"CREATE UNLOGGED TABLE audit_cost_source (LIKE {TABLE} INCLUDING DEFAULTS)")
        cur.execute(audit_scale.FILL.format(
            stage="audit_cost_source", offset=0, agents=audit_scale.AGENTS, rows=total,
            session=audit_scale.SESSION_LENGTH, tools=audit_scale.TOOLS, rules=audit_scale.RULES,
            start=MONTH.isoformat(), end=partitions.next_month(MONTH).isoformat()))
        cur.execute(f"INSERT INTO {TABLE} SELECT * FROM audit_cost_source WHERE id <= %s", [args.preload])
        cur.execute(f"VACUUM ANALYZE {TABLE}")
        print(f"{args.preload:,} events preloaded; batches of {args.batch:,}, {args.batches} a configuration, "
              f"{args.rounds} rounds; load {os.getloadavg()[0]:.1f}", flush=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        next_id = args.preload
        for _ in range(args.rounds):
            for name, left_out in configs.items():
                cur.execute(partitions.index_sql(TABLE, TABLE))  # every index back
                for suffix in left_out:
                    cur.execute(f"DROP INDEX {TABLE}_{suffix}")
                batches = []
                for _ in range(args.batches):
                    # As COPY text, as ingestion sends it (storage.event_copy_rows).
                    with cur.copy(f"COPY (SELECT * FROM audit_cost_source WHERE id > {next_id} "
                                  f"AND id <= {next_id + args.batch} ORDER BY id) TO STDOUT") as copy:
                        batches.append(b"".join(bytes(chunk) for chunk in copy))
                    next_id += args.batch
                cur.execute("SELECT pg_current_wal_lsn()")
                lsn = cur.fetchone()[0]
                cpu = backend_cpu(cur)
                for data in batches:
                    with conn.transaction():
                        with cur.copy(f"COPY {TABLE} FROM STDIN") as copy:
                            copy.write(data)
                cpu = backend_cpu(cur) - cpu
                cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn])
                wal = float(cur.fetchone()[0])
                results[name].append((cpu / per_config * 1e6, wal / per_config))
        print(f"{'configuration':<26} {'CPU µs/event (median, runs)':>40} {'WAL B/event':>12}")
        for name, runs in results.items():
            cpu = [r[0] for r in runs]
            print(f"{name:<26} {statistics.median(cpu):>10.1f}  ({', '.join(f'{c:.1f}' for c in cpu)})"
                  f"{'':>6} {statistics.median(r[1] for r in runs):>12.0f}")
        print(f"load {os.getloadavg()[0]:.1f}")
        cur.execute(f"DROP TABLE {TABLE}, {partitions.rule_table(TABLE)}, audit_cost_source CASCADE")


if __name__ == "__main__":
    main()
