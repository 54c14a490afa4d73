"""Audit ingestion end to end on this machine: API → durable → verified and stored.

Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL). Creates a scratch database
`warden_bench_audit_<pid>` on that server, migrates it, starts the ASGI app (uvicorn, one
process, 127.0.0.1 only) and one Celery worker with N pool processes on a private queue
(N = each of --processes, default 1 then 2, a fresh database each), signs the records
beforehand, then times: the uploads (each batch signed with the agent's key,
gzip, answered 202 after the batch is durable) and the moment the last batch is
verified and its events stored. CPU per event of the worker, the server and PostgreSQL
(what other jobs on a shared machine change little, unlike the wall-clock rate), the load
average, and, once the worker is stopped, one more batch verified in this process: the CPU
of its checks and of its store, and its queries. Prints a table per N and a summary;
asserts nothing. Targets (shared/DESIGN.md, issue 16): >= 10,000 verified events/s with two
worker processes, <= 120 µs of worker CPU per event.

    DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python bench/audit_ingest.py \
        [--records 50000] [--batch 2000] [--sessions 500] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEADLINE_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(port: int) -> None:
    """The ASGI app under uvicorn; mounts the audit API if controlplane/urls.py does not yet."""
    import django
    import uvicorn
    django.setup()
    from controlplane.asgi import application

    uvicorn.run(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--processes", "--concurrency", default="1,2",
                        help="pool processes of the one worker, comma-separated: one run each (default 1,2)")
    parser.add_argument("--superuser", action="store_true",
                        help="run the server and worker as DATABASE_URL's user, not as the app role "
                             "of `manage.py setup_db_roles` (the default, as deployed)")
    args = parser.parse_args()
    counts = [int(n) for n in str(args.processes).split(",")]
    if len(counts) == 1:
        args.concurrency = counts[0]
        status, (rate, worker_us) = bench_once(args)
        print(f"RESULT {counts[0]} {rate:.1f} {worker_us:.1f}", flush=True)
        return status
    # One process per run: Django reads DATABASE_URL (each run's own database) once.
    summary = []
    for processes in counts:
        command = [sys.executable, __file__, "--records", str(args.records), "--batch", str(args.batch),
                   "--sessions", str(args.sessions), "--processes", str(processes)]
        done = subprocess.run(command + (["--superuser"] if args.superuser else []), stdout=subprocess.PIPE,
                              text=True, check=False)
        lines = done.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")), flush=True)
        if done.returncode:
            return done.returncode
        summary += [line.split()[1:] for line in lines if line.startswith("RESULT ")]
    print("\nsummary (targets: >= 10,000 events/s with 2 processes, <= 120 µs worker CPU per event)")
    for processes, rate, worker_us in summary:
        print(f"  {processes} worker process(es): {float(rate):,.0f} events/s end to end, "
              f"{float(worker_us):.0f} µs worker CPU per event")
    return 0


def bench_once(args) -> tuple[int, tuple[float, float]]:
    """One run with `args.concurrency` pool processes in a fresh database: (status, (events/s, worker µs/event))."""
    base_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base_url.startswith("postgres") or not redis_url:
        print("bench/audit_ingest.py needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2, (0.0, 0.0)

    import psycopg

    # BENCH_DB_PREFIX: a prefix for the scratch database and roles (shared servers).
    name = f"{os.environ.get('BENCH_DB_PREFIX', 'warden_bench_audit')}_{os.getpid()}_{args.concurrency}"
    admin_url = base_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = base_url.rsplit("/", 1)[0] + "/" + name
    queue = f"warden-bench-audit-{os.getpid()}-{args.concurrency}"
    witness = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}-witness.jsonl"
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "WARDEN_AUDIT_QUEUE": queue,
           "WARDEN_LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "controlplane.settings",
           "WARDEN_AUDIT_WITNESS_PATH": str(witness)}
    os.environ.update(env)
    processes: list[subprocess.Popen] = []
    roles = {"owner": f"{name}_owner", "app": f"{name}_app", "retention": f"{name}_retention"}
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if not args.superuser:
            # As deployed: the server and the worker connect as the app role (no UPDATE or
            # DELETE on audit rows), so the figures include what the real privileges cost.
            call_command("setup_db_roles", stdout=open(os.devnull, "w"), **roles)  # noqa: SIM115
            parts = urlsplit(db_url)
            env = {**env, "DATABASE_URL": urlunsplit(parts._replace(netloc=f"{roles['app']}@{parts.hostname}:"
                                                                           f"{parts.port or 5432}"))}
        rows, rates = run(args, env, queue, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not args.superuser:
                for role in roles.values():
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        witness.unlink(missing_ok=True)
    width = max(len(label) for label, _ in rows)
    print(f"\naudit ingestion ({args.records} records, batches of {args.batch}, {args.sessions} sessions, "
          f"1 worker x {args.concurrency} process(es), {os.cpu_count()} CPUs, "
          f"as {'the superuser' if args.superuser else 'the app role'})")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return 0, rates


def run(args, env, queue, processes) -> tuple[list[tuple[str, str]], tuple[float, float]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agents_sdk.identity import AgentIdentity
    from agents_sdk.records import ActionSigner, canonical_json, signing_bytes
    from agents_sdk.shipper import batch_body
    from controlplane.audit.models import AuditEvent, Batch, BatchStatus
    from controlplane.identity.models import Agent, AgentKey

    identity = AgentIdentity.create("bench-bot", "bench@example.com")
    agent = Agent.objects.create(name="bench-bot", owner_email="bench@example.com")
    AgentKey.objects.create(key_id=identity.key_id, agent=agent, public_key=identity.public_key_b64)

    signer = ActionSigner(identity, keep_log=False)
    records = []
    while len(records) < args.records:
        n = len(records) // 4
        with signer.session(session_id=f"session-{n % args.sessions}") as session:
            records.append(session.intent("refund", {"ticket": n, "amount_cents": 1250, "card_number": "4242"}))
            records.append(session.decision("allow", reasons=[{"rule": "refunds-under-50-eur", "message": "ok",
                                                                "controls": ["soc2.cc7.2"]}]))
            records.append(session.result("refunded", ticket=n))
            records.append(session.output(f"done {n}"))
    records = records[: args.records]
    lines = [canonical_json(r) for r in records]
    bodies = [gzip.compress(batch_body(lines[i:i + args.batch]), 5) for i in range(0, len(lines), args.batch)]

    # Signature verification alone, and the whole per-record check (form, key, canonical JSON, verify).
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(identity.public_key_b64))
    sample = records[:3000]
    prepared = [(base64.b64decode(r["signature"]), signing_bytes(r)) for r in sample]
    start = time.process_time()  # CPU time: the wall clock counts other jobs too
    for signature, message in prepared:
        public.verify(signature, message)
    verify_us = (time.process_time() - start) / len(prepared) * 1e6

    port = int(os.environ.get("BENCH_PORT") or free_port())
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], cwd=ROOT, env=env, start_new_session=True,
    )
    processes.append(server)
    worker_log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"{queue}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("celery")), "-A", "controlplane", "worker", "-Q", queue,
         "-c", str(args.concurrency), "-l", "warning", "-n", f"{queue}@%h", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    processes.append(worker)
    wait_for_port(port)
    # Warm up the worker (imports, first connection) with one small batch, excluded from the timing.
    warm = ActionSigner(identity)
    with warm.session(session_id="warm-up") as session:
        session.output("warm")
    post(port, identity, gzip.compress(batch_body([canonical_json(r) for r in warm.session_log()])))
    deadline = time.monotonic() + 60
    while Batch.objects.exclude(status=BatchStatus.VERIFIED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    baseline = AuditEvent.objects.count()
    load_before = os.getloadavg()[0]
    cpu_before = {"worker": tree_cpu(worker.pid), "server": tree_cpu(server.pid), "postgres": backends_cpu()}
    backends: dict[int, float] = {}  # connections last a task or a request: sample them while they live
    start = time.perf_counter()
    batch_ids = []
    for body in bodies:
        batch_ids.append(post(port, identity, body))
        backends.update(backends_cpu())
    acknowledged = time.perf_counter() - start
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        backends.update(backends_cpu())
        if not Batch.objects.filter(pk__in=batch_ids).exclude(status=BatchStatus.VERIFIED).exists():
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    cpu_after = {"worker": tree_cpu(worker.pid), "server": tree_cpu(server.pid), "postgres": backends}
    stored = AuditEvent.objects.count() - baseline
    total_us = sum(cpu_used(cpu_before[w], cpu_after[w]) for w in cpu_before) / max(stored, 1) * 1e6
    capacity = (os.cpu_count() or 1) * 1e6 / max(total_us, 1e-9)
    quarantined = sum(Batch.objects.filter(pk__in=batch_ids).values_list("quarantined_count", flat=True))

    # The worker's path once more, in this process (the worker stopped): its CPU split and its
    # queries, figures other jobs on the machine do not change (load inflates CPU time a little).
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)
    profile = verify_in_process(identity, args.batch)

    worker_us = cpu_used(cpu_before["worker"], cpu_after["worker"]) / max(stored, 1) * 1e6
    return [
        ("records stored as events", f"{stored:,} (quarantined {quarantined})"),
        ("uploads answered 202 (durable)", (f"{len(batch_ids)} batches in {acknowledged:.2f} s = "
                                           f"{args.records / acknowledged:,.0f} records/s")),
        ("end to end: API → verified + stored", f"{elapsed:.2f} s = {stored / elapsed:,.0f} events/s  (target 10,000 with 2 processes)"),
        *(
            (f"CPU per event: {who}", f"{cpu_used(cpu_before[who], cpu_after[who]) / max(stored, 1) * 1e6:.0f} µs")
            for who in ("worker", "server", "postgres")
        ),
        ("CPU per event, all three", f"{total_us:.0f} µs  (= {capacity:,.0f} events/s if the {os.cpu_count()} "
                                     "cores were ours alone)"),
        ("Ed25519 verify alone, CPU per record", f"{verify_us:.0f} µs  (= {1e6 / verify_us:,.0f}/s on one core)"),
        ("in process: checks (form, key, JSON, verify, seal)", f"{profile['check']:.0f} µs per record"),
        ("in process: chain + store (one transaction, COPY)", f"{profile['store']:.0f} µs per record"),
        ("in process: queries per batch", f"{profile['queries']} for {args.batch} records "
                                          f"({profile['queries'] / args.batch:.4f} per event)"),
        ("load average (1 min) before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f}  "
                                                "(CPU per event is what load does not change)"),
    ], (stored / elapsed, worker_us)


def verify_in_process(identity, size: int) -> dict[str, float]:
    """One fresh batch through `verify_batch` here: CPU per record of its two phases, and queries."""
    from django.db import connection

    from agents_sdk.records import ActionSigner, canonical_json
    from agents_sdk.shipper import batch_body
    from controlplane.audit import ingestion, verification
    from controlplane.core import tasks as core_tasks
    from controlplane.identity.models import Agent

    signer = ActionSigner(identity, keep_log=False)
    records = []
    while len(records) < size:
        with signer.session(session_id=f"in-process-{len(records) // 4}") as session:
            records.append(session.intent("refund", {"ticket": 1, "amount_cents": 1250, "card_number": "4242"}))
            records.append(session.decision("allow", reasons=[{"rule": "r", "message": "ok", "controls": []}]))
            records.append(session.result("refunded"))
            records.append(session.output("done"))
    core_tasks.send_now = lambda *args, **kwargs: None  # nobody consumes the queue any more
    batch = ingestion.ingest_batch(agent=Agent.objects.get(name="bench-bot"), key_id=identity.key_id,
                                   body=batch_body([canonical_json(r) for r in records[:size]]))
    spent = {"check": 0.0, "store": 0.0}

    def timed(name, function):
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start
        return run

    queries = []
    verification._check_records = timed("check", verification._check_records)
    verification._store = timed("store", verification._store)
    with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
        verification.verify_batch(batch.pk)
    return {"check": spent["check"] / size * 1e6, "store": spent["store"] / size * 1e6, "queries": len(queries)}


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and its descendants, by pid (Linux /proc)."""
    found: dict[int, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            found[current] = proc_cpu(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def proc_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_cpu() -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving the bench database, but this process's own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    found = {}
    for pid in pids:
        try:
            found[pid] = proc_cpu(pid)
        except (OSError, ValueError):  # a server on another host, or gone
            continue
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples by the processes sampled at the second (new ones count whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def post(port: int, identity, body: bytes) -> int:
    import json

    from agents_sdk.shipper import request_headers

    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", **request_headers(identity, body)}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/api/v1/audit/batches/", body=body, headers=headers)
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 202:
        raise RuntimeError(f"upload answered {response.status}: {answer[:300]!r}")
    return json.loads(answer)["batch_id"]


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


if __name__ == "__main__":
    sys.exit(main())
