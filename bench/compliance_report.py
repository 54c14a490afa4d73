"""Gap reports over a large audit log: time to build a report and to render its PDF.

Needs PostgreSQL (DATABASE_URL). Creates a scratch database `warden_bench_compliance_<pid>`
on that server, migrates it, seeds a deployment through the services (environment, tool
catalog, agents with keys, a published signed bundle, a kill-switch drill), then inserts
1,000,000 audit events and 100,000 OPA decision logs with INSERT … SELECT generate_series
(the append-only trigger allows inserts), signs real checkpoints over the events, and
times, per framework, the report build (evidence, assessment, PDF) and the PDF render
alone. The scratch database is dropped at the end. Prints a table; asserts nothing.
Targets (shared/DESIGN.md): report <= 30 s, PDF <= 5 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/compliance_report.py \
        [--events 1000000] [--agents 50] [--no-checkpoints]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SETUP_WARNING_SECONDS = 600


def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.pop("REDIS_URL", None)  # builds run in this process; no broker needed
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()


def seed_deployment(agents: int):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from agents_sdk.identity import AgentIdentity
    from controlplane.bundles import services as bundle_services
    from controlplane.identity import services as identity_services
    from controlplane.policies import services as policy_services

    admin = get_user_model().objects.create_user(username="bench-admin")
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    environment = bundle_services.create_environment(name="prod", by=admin, position=2)
    for tool in (
        {"name": "lookup", "scopes": ["read:tickets"], "category": "other"},
        {"name": "payment_create", "scopes": ["payments:create"], "category": "payment"},
        {"name": "file_delete", "scopes": ["write:files"], "category": "file"},
        {"name": "email_send", "scopes": ["email:send"], "category": "email"},
        {"name": "git_push", "scopes": ["git:push"], "category": "git_push"},
        {"name": "db_drop_table", "scopes": ["db:write"], "category": "database", "irreversible": True},
        {"name": "http_request", "scopes": ["net:http"], "category": "network"},
    ):
        policy_services.create_tool(by=admin, **tool)
    registered = []
    for n in range(agents):
        identity = AgentIdentity.create(f"bench-agent-{n}", "owner@example.com", ["read:tickets"])
        agent = identity_services.register_agent(
            name=identity.name, owner_email="owner@example.com", by=admin, environments=["prod"], team="bench",
            description="Benchmark agent.", risk_tier="high" if n == 0 else "limited", scopes=["read:tickets"],
        )
        identity_services.add_agent_key(agent, public_key=identity.public_key_b64, by=admin)
        registered.append((agent, identity.key_id))
    drill = registered[-1][0]
    identity_services.suspend_agent(drill, by=admin, reason="drill")
    identity_services.resume_agent(drill, by=admin, reason="drill over")
    bundle_services.publish_policies(environment, by=admin, message="bench")
    environment.refresh_from_db()
    return admin, environment, registered


def seed_events(registered, events: int, environment) -> None:
    from django.db import connection

    from controlplane.audit.models import Batch

    batches = [Batch.objects.create(agent=agent, key_id=key_id, body=b"{}", record_count=0, byte_count=2,
                                    status="verified") for agent, key_id in registered]
    agent_ids = [str(agent.pk) for agent, _ in registered]
    key_ids = [key_id for _, key_id in registered]
    batch_ids = [b.pk for b in batches]
    with connection.cursor() as cursor:
        # One statement: events spread over the last ~80 days, round-robin over the agents.
        cursor.execute(
            """
            INSERT INTO audit_auditevent (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect,
                rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at)
            SELECT md5('bench' || g)::uuid,
                   (%(agents)s::uuid[])[1 + g %% %(n)s],
                   (%(keys)s::text[])[1 + g %% %(n)s],
                   's-' || (g / 100), g %% 100,
                   (ARRAY['intent','decision','result','output'])[1 + g %% 4],
                   now() - make_interval(secs => g * 7),
                   (ARRAY['lookup','payment_create','file_delete','email_send'])[1 + (g / 4) %% 4],
                   CASE WHEN g %% 4 = 1 THEN (ARRAY['allow','deny','require_approval'])[1 + g %% 3] ELSE '' END,
                   '[]'::jsonb, '{"args": {"ticket": 1}}'::jsonb,
                   CASE WHEN g %% 10 = 0 THEN '["/args/api_key"]'::jsonb ELSE '[]'::jsonb END,
                   md5('prev' || g) || md5('p' || g), md5('hash' || g) || md5('h' || g), ''::bytea,
                   (%(batches)s::bigint[])[1 + g %% %(n)s],
                   now() - make_interval(secs => g * 7)
            FROM generate_series(1, %(events)s) AS g
            """,
            {"agents": agent_ids, "keys": key_ids, "batches": batch_ids, "n": len(agent_ids), "events": events},
        )
        cursor.execute(
            """
            INSERT INTO opa_decisionlog (decision_id, environment_id, instance_id, path, input, result, bundles,
                labels, erased, masked, timestamp, received_at, event)
            SELECT 'bench-' || g, %(env)s, 'opa-1', 'warden/decision', '{}'::jsonb, '{"allow": true}'::jsonb,
                   '{}'::jsonb, '{}'::jsonb, '[]'::jsonb, '[]'::jsonb, now() - make_interval(secs => g * 60),
                   now(), '{}'::jsonb
            FROM generate_series(1, %(n)s) AS g
            """,
            {"env": str(environment.pk), "n": events // 10},
        )
        cursor.execute("ANALYZE audit_auditevent; ANALYZE opa_decisionlog")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--no-checkpoints", action="store_true", help="skip signing checkpoints over the events")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("bench/compliance_report.py needs DATABASE_URL pointing at PostgreSQL", file=sys.stderr)
        return 2

    import psycopg

    name = f"warden_bench_compliance_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        setup_django(base_url.rsplit("/", 1)[0] + "/" + name)
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args) -> int:
    from django.core.management import call_command

    from controlplane.audit.checkpoints import create_checkpoints
    from controlplane.compliance import package, services
    from controlplane.compliance.catalog import FRAMEWORK_IDS
    from controlplane.compliance.pdf import render_report_pdf

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    admin, environment, registered = seed_deployment(args.agents)
    seeded = time.perf_counter()
    seed_events(registered, args.events, environment)
    inserted = time.perf_counter()
    if not args.no_checkpoints:
        create_checkpoints()
    checkpointed = time.perf_counter()
    print(f"setup: migrate + deployment {seeded - started:.1f} s; {args.events:,} events + {args.events // 10:,} "
          f"decision logs inserted in {inserted - seeded:.1f} s; checkpoints signed in {checkpointed - inserted:.1f} s")

    # Time the build here, not inside request_gap_report's on-commit enqueue (nor notices).
    from controlplane.core import tasks as core_tasks

    core_tasks.send_now = lambda *args, **kwargs: None
    # And time the PDF rendered inside the build apart from the evidence and assessment.
    pdf_seconds = []
    render = services.render_pdf

    def timed_render(report):
        t = time.perf_counter()
        try:
            return render(report)
        finally:
            pdf_seconds.append(time.perf_counter() - t)

    services.render_pdf = timed_render
    rows = []
    for framework in FRAMEWORK_IDS:
        report = services.request_gap_report(framework=framework, environment=environment, by=admin)
        t0 = time.perf_counter()
        report = services.build_gap_report(report.pk)
        built = time.perf_counter() - t0
        t1 = time.perf_counter()
        pdf = render_report_pdf(report)
        rendered = time.perf_counter() - t1
        t2 = time.perf_counter()
        zipped = package.build_package(report, services.report_pdf(report))
        packaged = time.perf_counter() - t2
        rows.append((framework, report.status, built - pdf_seconds[-1], built, rendered, len(pdf), report.summary,
                     report.score, packaged, len(zipped)))

    print()
    print(f"{'framework':<10} {'status':<7} {'evidence s':>10} {'build+PDF s':>11} {'PDF alone s':>11} "
          f"{'PDF KiB':>8} {'package s':>9} {'zip KiB':>7}  {'met/part/gap/n.t./manual/n.a.':<30} score  cov.  "
          "build/30 s  PDF/5 s")
    for framework, status, evidence, built, rendered, size, summary, score, packaged, zipped in rows:
        counts = "/".join(str(summary.get(k, 0)) for k in ("met", "partial", "gap", "not_tested", "manual",
                                                           "not_applicable"))
        print(f"{framework:<10} {status:<7} {evidence:>10.2f} {built:>11.2f} {rendered:>11.2f} {size / 1024:>8.0f} "
              f"{packaged:>9.2f} {zipped / 1024:>7.0f}  {counts:<30} {score!s:>5} {summary.get('coverage')!s:>5}  "
              f"{built / 30:>10.2f}  {rendered / 5:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
