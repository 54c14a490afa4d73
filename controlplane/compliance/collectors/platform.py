"""Evidence from the registry and the deployment: identities, risk tiers, people's roles,
documentation, encryption; and the kinds Warden cannot produce yet (anomaly detection,
incident response), which it says so about instead of guessing."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from controlplane.accounts.roles import ALL_ROLES, Role
from controlplane.compliance.collectors.registry import collector
from controlplane.compliance.evidence import GAP, MANUAL, MET, NOT_TESTED, PARTIAL, Evidence, ObjectRef, ref


@collector("agent_identity")
def agent_identity(context) -> Evidence:
    """Every agent that may act has an accountable owner who is an active user, and a
    registered, unrevoked key."""
    from django.contrib.auth import get_user_model

    kind = "agent_identity"
    env = context.environment.name
    live = context.live_agents
    population = f"live (not revoked) agents of {env}"
    active_emails = {e.lower() for e in get_user_model().objects.filter(is_active=True)
                     .exclude(email="").values_list("email", flat=True)}
    keyless = [a for a in live if not a.active_keys]
    ownerless = [a for a in live if not (a.owner_email or "").strip()]
    unknown_owner = [a for a in live if a not in ownerless and a.owner_email.lower() not in active_emails]
    objects = [ref(a, detail=f"owner {a.owner_email or 'none'}"
                   f"{'' if a.owner_email.lower() in active_emails else ' (no active user)'}, "
                   f"{a.active_keys} active key(s)") for a in live]
    figures = {"agents": len(live), "without_key": len(keyless), "without_owner": len(ownerless),
               "owner_not_an_active_user": len(unknown_owner)}
    if not live:
        return Evidence(kind, NOT_TESTED, f"No agent runs in {env}: no instance to test in the period.", objects,
                        figures=figures, population=population, population_size=0)
    missing = ([f"{a.name} has no active key" for a in keyless] + [f"{a.name} has no owner" for a in ownerless]
               + [f"{a.name}'s owner {a.owner_email} is not an active Warden user" for a in unknown_owner])
    bad = {a.pk for a in keyless + ownerless}
    if bad or unknown_owner:
        status = GAP if len(bad) == len(live) else PARTIAL
        return Evidence(kind, status, f"{len(live)} agent(s); {len(bad)} lack a key or an owner, "
                        f"{len(unknown_owner)} have an owner who is not an active user.",
                        objects, missing, "Register a key for each agent (POST /api/v1/agents/{name}/keys/), set "
                        "its owner_email to an active user's address, and suspend agents nobody owns.", figures,
                        population=population, population_size=len(live))
    return Evidence(kind, MET, f"All {len(live)} agent(s) have an owner who is an active user and at least one "
                    "registered, unrevoked key.", objects, figures=figures, population=population,
                    population_size=len(live))


@collector("risk_classification")
def risk_classification(context) -> Evidence:
    """Each agent's classification was assessed by a named person, with a rationale and a
    date. An unreviewed classification (the registry's default tier) is a gap, not "minimal"."""
    kind = "risk_classification"
    live = context.live_agents
    population = f"live agents of {context.environment.name}"
    objects, missing = [], []
    assessed = 0
    for agent in live:
        c = context.classifications.get(agent.pk)
        if c is None or c.status != "assessed":
            objects.append(ref(agent, detail=f"unreviewed (registry tier {agent.risk_tier})"))
            missing.append(f"{agent.name}: classification never assessed")
            continue
        problems = [what for what, ok in (("rationale", c.rationale.strip()), ("assessor", c.assessed_by_id),
                                          ("date", c.assessed_at)) if not ok]
        route = c.high_risk_route + (f" {c.annex_reference}" if c.annex_reference else "")
        objects.append(ref(agent, detail=f"assessed: route {route}, by "
                           f"{getattr(c.assessed_by, 'username', '?')} on "
                           f"{c.assessed_at:%Y-%m-%d}" if c.assessed_at else f"assessed: route {route}"))
        if problems:
            missing.append(f"{agent.name}: assessment lacks {', '.join(problems)}")
        else:
            assessed += 1
    figures = {"agents": len(live), "assessed": assessed, "unreviewed": len(live) - assessed}
    if not live:
        return Evidence(kind, NOT_TESTED, "No agent to classify in the environment.", objects, figures=figures,
                        population=population, population_size=0)
    fix = ("Assess each agent (PUT /api/v1/compliance/classifications/{agent}/) with status assessed, the "
           "high-risk route, a rationale; the assessor and date are recorded.")
    if not assessed:
        return Evidence(kind, GAP, f"None of {len(live)} agent(s) has an assessed classification.", objects,
                        missing, fix, figures, population=population, population_size=len(live))
    if missing:
        return Evidence(kind, PARTIAL, f"{assessed} of {len(live)} agent(s) have an assessed classification.",
                        objects, missing, fix, figures, population=population, population_size=len(live))
    return Evidence(kind, MET, f"All {len(live)} agent(s) were classified by a named person with a rationale and "
                    "a date.", objects, figures=figures, population=population, population_size=len(live))


@collector("model_inventory")
def model_inventory(context) -> Evidence:
    """The models each agent is built on (provider, model, version), from its classification."""
    kind = "model_inventory"
    live = context.live_agents
    population = f"live agents of {context.environment.name}"
    objects, missing = [], []
    for agent in live:
        used = getattr(context.classifications.get(agent.pk), "models_used", None) or []
        complete = [m for m in used if isinstance(m, dict) and all(str(m.get(k, "")).strip()
                                                                     for k in ("provider", "model", "version"))]
        objects.append(ref(agent, detail="; ".join(f"{m['provider']} {m['model']} {m['version']}"
                                                   for m in complete) or "no model recorded"))
        if not complete or len(complete) != len(used):
            missing.append(f"{agent.name}: models used (provider, model, version) not fully recorded")
    figures = {"agents": len(live), "without_inventory": len(missing)}
    if not live:
        return Evidence(kind, NOT_TESTED, "No agent in the environment.", objects, figures=figures,
                        population=population, population_size=0)
    fix = "Record each agent's models in its classification (models_used: provider, model, version)."
    if len(missing) == len(live):
        return Evidence(kind, GAP, "No agent's models are inventoried.", objects, missing, fix, figures,
                        population=population, population_size=len(live))
    if missing:
        return Evidence(kind, PARTIAL, f"{len(live) - len(missing)} of {len(live)} agent(s) inventoried.", objects,
                        missing, fix, figures, population=population, population_size=len(live))
    return Evidence(kind, MET, f"Every agent's models are inventoried ({len(live)} agent(s)).", objects,
                    figures=figures, population=population, population_size=len(live))


@collector("role_based_access")
def role_based_access(context) -> Evidence:
    """People reach the console only through a role; an active user without one is a loose end."""
    kind = "role_based_access"
    users = list(
        get_user_model().objects.filter(is_active=True)
        .annotate(roles=Count("groups", filter=Q(groups__name__in=ALL_ROLES))).order_by("username")
    )
    roleless = [u for u in users if not u.roles and not u.is_superuser]
    admins = get_user_model().objects.filter(is_active=True).filter(
        Q(is_superuser=True) | Q(groups__name=Role.ADMIN)).distinct().count()
    objects = [ObjectRef("auth.user", str(u.pk), u.get_username(), "no role") for u in roleless]
    figures = {"active_users": len(users), "without_role": len(roleless), "admins": admins,
               "approvers": get_user_model().objects.filter(is_active=True, groups__name=Role.APPROVER).count()}
    if roleless:
        return Evidence(kind, PARTIAL, f"{len(roleless)} of {len(users)} active user(s) hold no role.", objects,
                        [f"user {u.get_username()} is active without a role" for u in roleless],
                        "Give each person a role (admin, policy_author, approver, auditor) or deactivate the account.",
                        figures)
    return Evidence(kind, MET, f"All {len(users)} active user(s) act through a role; {admins} administrator(s).",
                    objects, figures=figures)


@collector("documentation")
def documentation(context) -> Evidence:
    """Warden holds the facts technical documentation is built from (each agent's purpose,
    owner, team, scopes, risk tier, policy history); the document itself lives elsewhere, so
    this evidence is partial at best."""
    kind = "documentation"
    live = context.live_agents
    undocumented = [a for a in live if not a.description.strip() or not a.team.strip()]
    objects = [ref(a, detail="described" if a not in undocumented else "no description or team") for a in live]
    figures = {"agents": len(live), "undocumented": len(undocumented)}
    missing = [f"{a.name} has no description or team" for a in undocumented]
    missing.append("the technical documentation itself (e.g. Annex IV) is kept outside Warden: attest it")
    status = GAP if live and len(undocumented) == len(live) else PARTIAL
    return Evidence(kind, status, f"{len(live) - len(undocumented)} of {len(live)} agent(s) are described in the "
                    "registry; policy history is kept in full.", objects, missing,
                    "Describe every agent (purpose, team) in the registry and keep its technical documentation "
                    "current, referencing this report.", figures)


def _database_tls() -> bool | None:
    """Whether this very database connection is encrypted, as PostgreSQL reports it (not
    what the configuration asks for); None where the server cannot say."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        row = cursor.fetchone()
    return bool(row and row[0])


@collector("encryption_in_transit")
def encryption_in_transit(context) -> Evidence:
    """Facts as they are when the report runs: the live database connection's TLS state, the
    broker URL actually in use; TLS at the proxy is not visible to the control plane."""
    kind = "encryption_in_transit"
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    db_tls = _database_tls()
    checks = {
        "secure session cookies (production mode)": bool(getattr(settings, "SESSION_COOKIE_SECURE", False)),
        "this database connection is encrypted (pg_stat_ssl)": bool(db_tls),
        "broker connection over TLS (rediss://)": broker.startswith("rediss://") or broker.startswith("memory://"),
    }
    details = {
        "secure session cookies (production mode)": "yes" if checks["secure session cookies (production mode)"]
        else "no",
        "this database connection is encrypted (pg_stat_ssl)": "unknown (not PostgreSQL)" if db_tls is None
        else ("ssl=true" if db_tls else "ssl=false"),
        "broker connection over TLS (rediss://)": broker.split("://")[0] + "://" if broker else "none",
    }
    objects = [ObjectRef("setting", name, details[name]) for name in checks]
    missing = [name for name, ok in checks.items() if not ok]
    missing.append("TLS between agents, engines and the control plane is terminated by your proxy: attest it")
    status = GAP if all(not ok for ok in checks.values()) else PARTIAL
    return Evidence(kind, status, f"{sum(checks.values())} of {len(checks)} transport facts observed by Warden "
                    "are secure.", objects, missing,
                    "Run with WARDEN_PRODUCTION=1, sslmode=verify-full in DATABASE_URL, rediss:// for Redis, and "
                    "HTTPS in front of the control plane.", population="the control plane's own connections",
                    population_size=len(checks))


@collector("encryption_at_rest")
def encryption_at_rest(context) -> Evidence:
    kind = "encryption_at_rest"
    explicit = bool(os.environ.get("WARDEN_ENCRYPTION_KEY"))
    objects = [ObjectRef("setting", "WARDEN_ENCRYPTION_KEY", "set" if explicit else "derived from the secret key")]
    if not explicit:
        return Evidence(kind, PARTIAL, "Signing and checkpoint keys and sealed records are Fernet-encrypted, with a "
                        "key derived from WARDEN_SECRET_KEY.", objects,
                        ["a dedicated WARDEN_ENCRYPTION_KEY kept apart from the database",
                         "disk encryption of the database (attest)"],
                        "Set WARDEN_ENCRYPTION_KEY from a secret store.")
    return Evidence(kind, PARTIAL, "Signing and checkpoint keys and sealed records are encrypted with "
                    "WARDEN_ENCRYPTION_KEY.", objects, ["disk encryption of the database (attest)"],
                    "Attest the database's storage encryption.")


def _detection_model(name: str):
    """A model of the anomaly-detection app when it is installed (it is optional: reports
    work without it and say so)."""
    from django.apps import apps

    if not apps.is_installed("controlplane.detection"):
        return None
    try:
        return apps.get_model("detection", name)
    except LookupError:
        return None


@collector("anomaly_detection")
def anomaly_detection(context) -> Evidence:
    """Alerts raised on the environment's agents in the period, and whether people handled
    them. Without the detection app, Warden does not detect anomalies and says so."""
    kind = "anomaly_detection"
    alert_model = _detection_model("Alert")
    rate_rules = [r for r in context.rules if "rate" in r.id]
    rule_objects = [ObjectRef("policy.rule", r.id, r.title, f"{r.file}:{r.line}") for r in rate_rules]
    if alert_model is None:
        return Evidence(kind, MANUAL, "Warden's anomaly detection is not installed"
                        + (f"; {len(rate_rules)} rate-limit rule(s) bound call volume." if rate_rules else "."),
                        rule_objects,
                        ["alerts on unusual agent behaviour (SIEM, monitoring over /api/v1/audit/events/): attest"],
                        "Enable anomaly detection, or feed the audit and decision logs to your monitoring and attest "
                        "the alerting in place.")
    alerts = list(alert_model.objects.filter(agent_id__in=context.agent_ids, raised_at__gte=context.period_start,
                                             raised_at__lt=context.period_end).order_by("-raised_at")[:5000])
    population = f"alerts raised on {context.environment.name}'s agents in the period"
    unhandled = [a for a in alerts if a.acknowledged_at is None and a.closed_at is None]
    objects = [ref(a, detail=f"raised {a.raised_at:%Y-%m-%d %H:%M} UTC, "
                   f"{'closed' if a.closed_at else 'acknowledged' if a.acknowledged_at else 'open'}")
               for a in alerts] + rule_objects
    figures = {"alerts": len(alerts), "unhandled": len(unhandled)}
    if not context.agents:
        return Evidence(kind, NOT_TESTED, "No agent in the environment to watch.", objects, figures=figures,
                        population=population, population_size=0)
    if not alerts:
        return Evidence(kind, PARTIAL, "Anomaly detection runs, but raised no alert in the period: its operation "
                        "on real anomalies is not shown.", objects, ["an alert handled in the period (or a drill)"],
                        "Run a detection drill and handle the alert.", figures, population=population,
                        population_size=0)
    if unhandled:
        return Evidence(kind, PARTIAL, f"{len(unhandled)} of {len(alerts)} alert(s) were never acknowledged.",
                        objects, [f"alert {a.pk} was never acknowledged" for a in unhandled[:20]],
                        "Acknowledge and triage every alert.", figures, population=population,
                        population_size=len(alerts))
    return Evidence(kind, MET, f"{len(alerts)} alert(s) raised in the period, each acknowledged or closed.",
                    objects, figures=figures, population=population, population_size=len(alerts))


@collector("incident_response")
def incident_response(context) -> Evidence:
    """Incidents of the environment's agents in the period and their reporting clocks, from
    the detection app's incident register when it is installed."""
    kind = "incident_response"
    incident_model = _detection_model("Incident")
    if incident_model is None:
        return Evidence(kind, MANUAL, "Warden keeps the evidence an incident needs (quarantine, kill switch, "
                        "change log); its incident register is not installed.", [],
                        ["an incident register with triage and reporting deadlines: attest"],
                        "Keep incidents in your incident-management tool and attest the process.")
    incidents = list(incident_model.objects.filter(agents__in=context.agent_ids, aware_at__gte=context.period_start,
                                                   aware_at__lt=context.period_end)
                     .distinct().prefetch_related("clocks").order_by("-aware_at")[:2000])
    population = f"incidents involving {context.environment.name}'s agents, aware in the period"
    late = [(i, c) for i in incidents for c in i.clocks.all()
            if (c.met_at or context.now) > c.due_at]
    objects = [ref(i, detail=f"{i.status}, aware {i.aware_at:%Y-%m-%d %H:%M} UTC") for i in incidents]
    figures = {"incidents": len(incidents), "late_clocks": len(late)}
    if not incidents:
        return Evidence(kind, NOT_TESTED, "No incident occurred in the period: the response process did not "
                        "operate.", objects, figures=figures, population=population, population_size=0)
    if late:
        return Evidence(kind, GAP, f"{len(late)} reporting deadline(s) missed.", objects,
                        [f"incident {i.pk}: {c.basis} due {c.due_at:%Y-%m-%d %H:%M} UTC" for i, c in late[:20]],
                        "Report overdue incidents now and review the reporting process.", figures,
                        population=population, population_size=len(incidents))
    return Evidence(kind, MET, f"{len(incidents)} incident(s) in the period, every reporting deadline met or "
                    "running.", objects, figures=figures, population=population, population_size=len(incidents))


@collector("session_controls")
def session_controls(context) -> Evidence:
    """Warden's own session and API-token lifetimes and password rules, as configured now."""
    from controlplane.accounts.models import APIToken

    kind = "session_controls"
    age = int(getattr(settings, "SESSION_COOKIE_AGE", 0) or 0)
    renew = bool(getattr(settings, "SESSION_SAVE_EVERY_REQUEST", False))
    validators = [v["NAME"].rsplit(".", 1)[-1] for v in getattr(settings, "AUTH_PASSWORD_VALIDATORS", [])]
    live_tokens = APIToken.objects.filter(revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=context.now))
    endless = live_tokens.filter(expires_at__isnull=True).count()
    objects = [ObjectRef("setting", "SESSION_COOKIE_AGE", f"{age} s"),
               ObjectRef("setting", "SESSION_SAVE_EVERY_REQUEST", "idle timeout" if renew else "absolute timeout"),
               ObjectRef("setting", "AUTH_PASSWORD_VALIDATORS", ", ".join(validators) or "none")]
    missing = []
    if not age or age > 8 * 3600:
        missing.append(f"console sessions last {age} s: set WARDEN_SESSION_SECONDS to 8 hours or less")
    if endless:
        missing.append(f"{endless} active API token(s) never expire")
    if not validators:
        missing.append("no password validators are configured")
    missing.append("automatic log-off in the systems holding ePHI is outside Warden: attest it")
    return Evidence(kind, PARTIAL if len(missing) == 1 else GAP if not age else PARTIAL,
                    f"Console sessions end after {age} s {'idle' if renew else ''}; {live_tokens.count()} active API "
                    f"token(s), {endless} without expiry; {len(validators)} password validator(s).", objects, missing,
                    "Bound sessions and tokens, and attest the log-off of the systems holding ePHI.",
                    {"session_seconds": age, "tokens_without_expiry": endless},
                    population="Warden's console sessions and API tokens", population_size=live_tokens.count())
