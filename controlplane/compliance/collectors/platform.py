"""Evidence from the registry and the deployment: identities, risk tiers, people's roles,
documentation, encryption; and the kinds Warden cannot produce yet (anomaly detection,
incident response), which it says so about instead of guessing."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from controlplane.accounts.roles import ALL_ROLES, Role
from controlplane.compliance.collectors import collector
from controlplane.compliance.evidence import GAP, MANUAL, MET, PARTIAL, Evidence, ObjectRef, ref
from controlplane.identity.models import RiskTier


@collector("agent_identity")
def agent_identity(context) -> Evidence:
    """Every agent that may act has an accountable owner and a registered, unrevoked key."""
    kind = "agent_identity"
    live = context.live_agents
    keyless = [a for a in live if not a.active_keys]
    ownerless = [a for a in live if not (a.owner_email or "").strip()]
    objects = [ref(a, detail=f"owner {a.owner_email or 'none'}, {a.active_keys} active key(s)") for a in live]
    figures = {"agents": len(live), "without_key": len(keyless), "without_owner": len(ownerless)}
    if not live:
        return Evidence(kind, MET, f"No agent runs in {context.environment.name}.", objects, figures=figures)
    missing = [f"{a.name} has no active key" for a in keyless] + [f"{a.name} has no owner" for a in ownerless]
    if missing:
        status = GAP if len({a.pk for a in keyless + ownerless}) == len(live) else PARTIAL
        return Evidence(kind, status, f"{len(live)} agent(s); {len(set(keyless + ownerless))} lack a key or an owner.",
                        objects, missing, "Register a key for each agent (POST /api/v1/agents/{name}/keys/) and set "
                        "its owner_email; suspend agents nobody owns.", figures)
    return Evidence(kind, MET, f"All {len(live)} agent(s) have an owner and at least one registered, unrevoked key.",
                    objects, figures=figures)


@collector("risk_classification")
def risk_classification(context) -> Evidence:
    kind = "risk_classification"
    live = context.live_agents
    valid = set(RiskTier.values)
    unclassified = [a for a in live if a.risk_tier not in valid]
    tiers = {tier: sum(1 for a in live if a.risk_tier == tier) for tier in RiskTier.values}
    objects = [ref(a, detail=f"risk tier {a.risk_tier}") for a in live]
    figures = {"agents": len(live), **{f"tier_{k}": v for k, v in tiers.items()}}
    if unclassified:
        return Evidence(kind, GAP, f"{len(unclassified)} agent(s) carry no valid risk tier.", objects,
                        [f"{a.name}: '{a.risk_tier}'" for a in unclassified],
                        "Set each agent's risk_tier (minimal, limited or high).", figures)
    return Evidence(kind, MET, "Every agent carries a risk tier: " + ", ".join(f"{v} {k}" for k, v in tiers.items())
                    + ".", objects, figures=figures)


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


@collector("encryption_in_transit")
def encryption_in_transit(context) -> Evidence:
    """What the control plane's own configuration shows; TLS at the proxy is not visible to it."""
    kind = "encryption_in_transit"
    db_options = settings.DATABASES["default"].get("OPTIONS", {})
    checks = {
        "production mode with secure cookies": bool(getattr(settings, "SESSION_COOKIE_SECURE", False)),
        "database connection requires TLS": settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") or
        db_options.get("sslmode") in ("require", "verify-ca", "verify-full"),
        "Redis over TLS (rediss://)": not os.environ.get("REDIS_URL") or os.environ["REDIS_URL"].startswith("rediss://"),
    }
    objects = [ObjectRef("setting", name, "yes" if ok else "no") for name, ok in checks.items()]
    missing = [name for name, ok in checks.items() if not ok]
    missing.append("TLS between agents, engines and the control plane is terminated by your proxy: attest it")
    status = GAP if all(not ok for ok in checks.values()) else PARTIAL
    return Evidence(kind, status, f"{sum(checks.values())} of {len(checks)} transport settings visible to Warden "
                    "are secure.", objects, missing,
                    "Run with WARDEN_PRODUCTION=1, sslmode=verify-full in DATABASE_URL, rediss:// for Redis, and "
                    "HTTPS in front of the control plane.")


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


@collector("anomaly_detection")
def anomaly_detection(context) -> Evidence:
    """Warden does not raise alerts on unusual behaviour yet; rate limits only bound volume."""
    rate_rules = [r for r in context.rules if "rate" in r.id]
    objects = [ObjectRef("policy.rule", r.id, r.title, f"{r.file}:{r.line}") for r in rate_rules]
    return Evidence("anomaly_detection", MANUAL, "Warden does not detect anomalies itself"
                    + (f"; {len(rate_rules)} rate-limit rule(s) bound call volume." if rate_rules else "."), objects,
                    ["alerts on unusual agent behaviour (SIEM, monitoring over /api/v1/audit/events/): attest"],
                    "Feed the audit and decision logs to your monitoring and attest the alerting in place.")


@collector("incident_response")
def incident_response(context) -> Evidence:
    return Evidence("incident_response", MANUAL, "Warden keeps the evidence an incident needs (quarantine, kill "
                    "switch, change log) but no incident register.", [],
                    ["an incident register with triage and reporting deadlines: attest"],
                    "Keep incidents in your incident-management tool and attest the process.")
