"""Audit ingestion end to end on this machine: API → durable → verified and stored.

Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL). Creates a scratch database
`warden_bench_audit_<pid>` on that server, migrates it, starts the ASGI app (uvicorn, one
process, 127.0.0.1 only) and one Celery worker with N pool processes on a private queue
(N = each of --processes, default 1 then 2, a fresh database each), signs the records
beforehand, then times: the uploads (each batch signed with the agent's key,
gzip, answered 202 after the batch is durable) and the moment the last batch is
verified and its events stored. With --agents N the records come from N agents (each its
own key and sessions, batches interleaved as a fleet ships them): one agent's batches are
stored in order, so two worker processes overlap only their checks on one agent, and
everything on several. While the batches are processed, PostgreSQL's wait events of the
bench database are sampled (pg_stat_activity every 10 ms): where the processes block
each other (advisory claims, row locks, WAL). CPU per event of the worker, the server and PostgreSQL
(what other jobs on a shared machine change little, unlike the wall-clock rate), the load
average, and, once the worker is stopped, one more batch verified in this process: the CPU
of its checks and of its store, and its queries. Prints a table per N and a summary;
asserts nothing. Targets (shared/DESIGN.md, issue 16): >= 10,000 verified events/s with two
worker processes, <= 120 µs of worker CPU per event.

    DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python bench/audit_ingest.py \
        [--records 50000] [--batch 2000] [--sessions 500] [--processes 1,2] [--agents 1,8]
        [--instructions]

--instructions: the worker's instructions per event, counted by callgrind (valgrind) over one
more batch verified in a child process after the run (the count the machine's load does not
change; needs valgrind).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
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
    if len(sys.argv) == 5 and sys.argv[1] == "--count-instructions":
        return count_instructions(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--processes", "--concurrency", default="1,2",
                        help="pool processes of the one worker, comma-separated: one run each (default 1,2)")
    parser.add_argument("--agents", default="1",
                        help="agents the records come from, comma-separated: one run each per process count "
                             "(default 1; the sessions are spread over them)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the worker's instructions per event under callgrind (valgrind) after each run")
    parser.add_argument("--superuser", action="store_true",
                        help="run the server and worker as DATABASE_URL's user, not as the app role "
                             "of `manage.py setup_db_roles` (the default, as deployed)")
    args = parser.parse_args()
    counts = [int(n) for n in str(args.processes).split(",")]
    fleets = [int(n) for n in str(args.agents).split(",")]
    if len(counts) == 1 and len(fleets) == 1:
        args.concurrency, args.agents = counts[0], fleets[0]
        status, (rate, worker_us, instructions) = bench_once(args)
        print(f"RESULT {counts[0]} {fleets[0]} {rate:.1f} {worker_us:.1f} {instructions:.0f}", flush=True)
        return status
    # One process per run: Django reads DATABASE_URL (each run's own database) once.
    summary = []
    for agents in fleets:
        for processes in counts:
            command = [sys.executable, __file__, "--records", str(args.records), "--batch", str(args.batch),
                       "--sessions", str(args.sessions), "--processes", str(processes), "--agents", str(agents)]
            command += ["--superuser"] if args.superuser else []
            command += ["--instructions"] if args.instructions else []
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
            lines = done.stdout.splitlines()
            print("\n".join(line for line in lines if not line.startswith("RESULT ")), flush=True)
            if done.returncode:
                return done.returncode
            summary += [line.split()[1:] for line in lines if line.startswith("RESULT ")]
    print("\nsummary (targets: >= 10,000 events/s with 2 processes, <= 120 µs worker CPU per event)")
    for processes, agents, rate, worker_us, instructions in summary:
        counted = f", {float(instructions) / 1e6:.3f}M worker instructions per event" if float(instructions) else ""
        print(f"  {processes} worker process(es), {agents} agent(s): {float(rate):,.0f} events/s end to end, "
              f"{float(worker_us):.0f} µs worker CPU per event{counted}")
    return 0


def bench_once(args) -> tuple[int, tuple[float, float, float]]:
    """One run with `args.concurrency` pool processes and `args.agents` agents in a fresh
    database: (status, (events/s, worker µs/event, worker instructions/event or 0))."""
    base_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base_url.startswith("postgres") or not redis_url:
        print("bench/audit_ingest.py needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2, (0.0, 0.0, 0.0)

    import psycopg

    # BENCH_DB_PREFIX: a prefix for the scratch database and roles (shared servers).
    name = f"{os.environ.get('BENCH_DB_PREFIX', 'warden_bench_audit')}_{os.getpid()}_{args.concurrency}_{args.agents}"
    admin_url = base_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = base_url.rsplit("/", 1)[0] + "/" + name
    queue = f"warden-bench-audit-{os.getpid()}-{args.concurrency}-{args.agents}"
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
          f"{args.agents} agent(s), 1 worker x {args.concurrency} process(es), {os.cpu_count()} CPUs, "
          f"as {'the superuser' if args.superuser else 'the app role'})")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return 0, rates


def sign_records(signer, count: int, sessions: int, prefix: str = "session") -> list[dict]:
    """`count` records of one agent, four per turn (intent, decision, result, output), its
    turns spread over `sessions` sessions: each batch continues chains of the one before."""
    records: list[dict] = []
    while len(records) < count:
        n = len(records) // 4
        with signer.session(session_id=f"{prefix}-{n % sessions}") as session:
            records.append(session.intent("refund", {"ticket": n, "amount_cents": 1250, "card_number": "4242"}))
            records.append(session.decision("allow", reasons=[{"rule": "refunds-under-50-eur", "message": "ok",
                                                                "controls": ["soc2.cc7.2"]}]))
            records.append(session.result("refunded", ticket=n))
            records.append(session.output(f"done {n}"))
    return records[:count]


def fleet_bodies(identities, records: int, batch: int, sessions: int) -> list[tuple[object, bytes]]:
    """(identity, gzip body) of every batch, the agents' batches interleaved as a fleet ships
    them: each agent signs its share of the records over its share of the sessions."""
    from agents_sdk.records import ActionSigner, canonical_json
    from agents_sdk.shipper import batch_body

    queues = []
    for index, identity in enumerate(identities):
        share = records // len(identities) + (index < records % len(identities))
        signed = sign_records(ActionSigner(identity, keep_log=False), share, max(1, sessions // len(identities)))
        lines = [canonical_json(r) for r in signed]
        queues.append([(identity, gzip.compress(batch_body(lines[i:i + batch]), 5))
                       for i in range(0, len(lines), batch)])
    interleaved = []
    for turn in range(max(len(q) for q in queues)):
        interleaved += [q[turn] for q in queues if turn < len(q)]
    return interleaved


def run(args, env, queue, processes) -> tuple[list[tuple[str, str]], tuple[float, float, float]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agents_sdk.identity import AgentIdentity
    from agents_sdk.records import ActionSigner, canonical_json, signing_bytes
    from agents_sdk.shipper import batch_body
    from controlplane.audit.models import AuditEvent, Batch, BatchStatus
    from controlplane.identity.models import Agent, AgentKey

    identities = []
    for index in range(args.agents):
        identity = AgentIdentity.create(f"bench-bot-{index}", "bench@example.com")
        agent = Agent.objects.create(name=identity.name, owner_email="bench@example.com")
        AgentKey.objects.create(key_id=identity.key_id, agent=agent, public_key=identity.public_key_b64)
        identities.append(identity)
    identity = identities[0]
    bodies = fleet_bodies(identities, args.records, args.batch, args.sessions)

    # Signature verification alone, and the whole per-record check (form, key, canonical JSON, verify).
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(identity.public_key_b64))
    sample = sign_records(ActionSigner(identity, keep_log=False), 3000, 100, prefix="sample")
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
    # Warm up the worker's processes (imports, first connection) with a small batch per agent
    # (up to one per process), excluded from the timing.
    for warm_identity in (identities * args.concurrency)[:max(args.concurrency, 1)]:
        warm = ActionSigner(warm_identity)
        with warm.session(session_id=f"warm-up-{time.monotonic_ns()}") as session:
            session.output("warm")
        post(port, warm_identity, gzip.compress(batch_body([canonical_json(r) for r in warm.session_log()])))
    deadline = time.monotonic() + 60
    while Batch.objects.exclude(status=BatchStatus.VERIFIED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    baseline = AuditEvent.objects.count()
    load_before = os.getloadavg()[0]
    sampler = Sampler(os.environ["DATABASE_URL"])  # the superuser's: sees every backend's waits
    cpu_before = {"worker": tree_cpu(worker.pid), "server": tree_cpu(server.pid), "postgres": sampler.backends_cpu()}
    sampler.start()
    start = time.perf_counter()
    batch_ids = [post(port, sender, body) for sender, body in bodies]
    acknowledged = time.perf_counter() - start
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if not Batch.objects.filter(pk__in=batch_ids).exclude(status=BatchStatus.VERIFIED).exists():
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    backends = sampler.stop()
    cpu_after = {"worker": tree_cpu(worker.pid), "server": tree_cpu(server.pid), "postgres": backends}
    load_after = os.getloadavg()[0]
    stored = AuditEvent.objects.count() - baseline
    total_us = sum(cpu_used(cpu_before[w], cpu_after[w]) for w in cpu_before) / max(stored, 1) * 1e6
    capacity = (os.cpu_count() or 1) * 1e6 / max(total_us, 1e-9)
    quarantined = sum(Batch.objects.filter(pk__in=batch_ids).values_list("quarantined_count", flat=True))

    # The worker's path once more, in this process (the worker stopped): its CPU split and its
    # queries, figures other jobs on the machine do not change (load inflates CPU time a little).
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)
    profile = verify_in_process(identity, args.batch)
    instructions = instructions_per_event(identity, args.batch, env) if args.instructions else 0.0

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
        *((("worker instructions per event (callgrind)", f"{instructions / 1e6:.3f}M"),) if instructions else ()),
        ("Ed25519 verify alone, CPU per record", f"{verify_us:.0f} µs  (= {1e6 / verify_us:,.0f}/s on one core)"),
        ("in process: checks (form, key, JSON, verify, seal)", f"{profile['check']:.0f} µs per record"),
        ("in process: chain + store (one transaction, COPY)", f"{profile['store']:.0f} µs per record"),
        ("in process: queries per batch", f"{profile['queries']} for {args.batch} records "
                                          f"({profile['queries'] / args.batch:.4f} per event)"),
        ("PostgreSQL backends of the run, sampled", sampler.summary()),
        ("load average (1 min) before / after", f"{load_before:.2f} / {load_after:.2f}  "
                                                "(CPU per event is what load does not change)"),
    ], (stored / elapsed, worker_us, instructions)


class Sampler(threading.Thread):
    """Every 10 ms, on its own connection: what each active backend of the bench database
    waits for (pg_stat_activity; none = on CPU), and the CPU of every backend seen (the
    connections last a task or a request, so they are read while they live)."""

    QUERY = (
        "SELECT pid, state, wait_event_type, wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 48) "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    )

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__(daemon=True)
        from django.db import connection

        with connection.cursor() as cursor:  # this process's own polling connection: not counted
            cursor.execute("SELECT pg_backend_pid()")
            self._own = cursor.fetchone()[0]
        self._conn = psycopg.connect(url, autocommit=True)
        self._done = threading.Event()
        self.waits: dict[str, int] = {}
        self.samples = 0
        self.cpu: dict[int, float] = {}

    def backends_cpu(self) -> dict[int, float]:
        found = {}
        for pid, *_ in self._conn.execute(self.QUERY).fetchall():
            if pid != self._own:
                try:
                    found[pid] = proc_cpu(pid)
                except (OSError, ValueError):  # a server on another host, or gone
                    continue
        return found

    def run(self) -> None:
        while not self._done.is_set():
            rows = self._conn.execute(self.QUERY).fetchall()
            self.samples += 1
            for pid, state, kind, event, query in rows:
                if pid == self._own:
                    continue
                try:
                    self.cpu[pid] = proc_cpu(pid)
                except (OSError, ValueError):
                    pass
                if state != "active":
                    continue
                what = f"{kind}:{event}" if kind else "CPU (no wait)"
                if kind == "Lock" or kind == "LWLock":  # which statement waits: a claim, a row lock…
                    what += f" [{re.sub(r'[0-9]+', 'N', query.strip())}]"  # one line for every batch's claim
                self.waits[what] = self.waits.get(what, 0) + 1
            self._done.wait(0.01)

    def stop(self) -> dict[int, float]:
        self._done.set()
        self.join(5)
        cpu = {**self.cpu, **self.backends_cpu()}
        self._conn.close()
        return cpu

    def summary(self) -> str:
        """The most frequent states of active backends, as backends busy per sample."""
        ranked = sorted(self.waits.items(), key=lambda item: -item[1])[:8]
        lines = [f"{self.samples} samples; active backends on average (state: mean count)"]
        lines += [f"    {count / max(self.samples, 1):5.2f}  {what}" for what, count in ranked]
        return "\n".join(lines)


def verify_in_process(identity, size: int) -> dict[str, float]:
    """One fresh batch through `verify_batch` here: CPU per record of its two phases, and queries."""
    from django.db import connection

    from controlplane.audit import verification

    batch_id = stored_batch(identity, size, "in-process")
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
    check, store = verification._check_records, verification._store
    verification._check_records = timed("check", check)
    verification._store = timed("store", store)
    try:
        with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
            verification.verify_batch(batch_id)
    finally:
        verification._check_records, verification._store = check, store
    return {"check": spent["check"] / size * 1e6, "store": spent["store"] / size * 1e6, "queries": len(queries)}


def stored_batch(identity, size: int, prefix: str) -> int:
    """A batch of `size` fresh records of `identity` stored as the API stores it, not enqueued."""
    from agents_sdk.records import ActionSigner, canonical_json
    from agents_sdk.shipper import batch_body
    from controlplane.audit import ingestion
    from controlplane.core import tasks as core_tasks
    from controlplane.identity.models import Agent

    records = sign_records(ActionSigner(identity, keep_log=False), size, max(1, size // 4), prefix=prefix)
    core_tasks.send_now = lambda *args, **kwargs: None  # nobody consumes the queue any more
    body = gzip.compress(batch_body([canonical_json(r) for r in records]), 5)
    batch = ingestion.ingest_batch(agent=Agent.objects.get(name=identity.name), key_id=identity.key_id,
                                   body=body, content_encoding="gzip")
    return batch.pk


def instructions_per_event(identity, size: int, env: dict[str, str]) -> float:
    """Instructions per event of `verify_batch` over one fresh batch of `size` records, in a
    child process (as the worker connects) under callgrind, after a first small batch that
    warms it up (imports, connection, cached statements); 0 if valgrind is missing."""
    import shutil
    import tempfile

    if shutil.which("valgrind") is None:
        print("--instructions: valgrind is not installed", file=sys.stderr)
        return 0.0
    warm = stored_batch(identity, 40, "callgrind-warm")
    measured = stored_batch(identity, size, "callgrind")
    with tempfile.TemporaryDirectory() as scratch:
        out = f"{scratch}/callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--zero-before=math_gcd", "--dump-before=math_lgamma",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--count-instructions", str(warm),
             str(measured), out],
            cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        dump = Path(f"{out}.1")
        totals = [line for line in dump.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
        kept = Path(os.environ.get("TMPDIR", "/tmp")) / f"audit_ingest.callgrind.{os.getpid()}"
        shutil.copyfile(dump, kept)
        print(f"callgrind profile of the measured batch: {kept} (callgrind_annotate --inclusive=yes)", flush=True)
        return int(totals[0].split()[1]) / size


def count_instructions(warm: int, measured: int, out: str) -> int:
    """Under callgrind: verify batch `warm`, then batch `measured` between the two markers
    (math.gcd zeroes the counters, math.lgamma dumps them)."""
    import math

    import django

    django.setup()
    from controlplane.audit import verification

    verification.verify_batch(warm)
    math.gcd(1, 1)
    outcome = verification.verify_batch(measured)
    math.lgamma(1.0)
    return 0 if outcome is not None and outcome.events else 1


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
