"""Asking the environment's active bundle what it decides, with synthetic probe calls.

Whether a payment tool waits for approval depends on the tool catalog, the environment's
settings and every rule in the bundle (the library's and the organisation's). Reading the
rules cannot settle that; evaluating them can. A probe compiles the bundle's own policy
files with its own data.json, adds a probe agent (and a few probe tools) to a copy of the
data, and evaluates `data.warden.decision` as an engine would. Nothing is stored and no
engine sees the probe.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from controlplane.policies.models import Tool, ToolCategory
from controlplane.policies.services import compile_modules

PROBE_AGENT = "warden-compliance-probe"
SUSPENDED_PROBE_AGENT = "warden-compliance-probe-suspended"
NOOP_TOOL = "warden-probe-noop"
SCOPED_TOOL = "warden-probe-scoped"
NETWORK_TOOL = "warden-probe-http"
SHELL_TOOL = "warden-probe-shell"
PROBE_SCOPE = "warden-probe:scope"
PROBE_HOST = "compliance-probe.invalid"

# Reasons that say the probe itself was refused, not that a rule gated the action.
PROBE_FAILURES = frozenset({"unknown-agent", "unknown-tool", "missing-scope", "malformed-input", "agent-not-active"})

# Names and scopes that betray a tool's risk when its category does not.
_PAYMENT = re.compile(r"pay|refund|charge|payout|invoice|transfer|billing|stripe", re.IGNORECASE)
_EMAIL = re.compile(r"e-?mail|smtp|sendgrid|mailgun", re.IGNORECASE)
_PUSH = re.compile(r"\bpush|git[_.-]?push", re.IGNORECASE)
_DELETE = re.compile(r"delete|drop|truncate|purge|destroy|remove|wipe|unlink|\brm\b", re.IGNORECASE)


class PolicyProbe:
    """The active bundle's policies compiled with its data plus probe agents and tools."""

    def __init__(self, policy_files: dict[str, str], registry: dict, *, environment: str):
        self.environment = environment
        data = copy.deepcopy(registry) if registry else {}
        tools = data.setdefault("tools", {})
        tools.update({
            NOOP_TOOL: {"scopes": [], "category": "other", "irreversible": False},
            SCOPED_TOOL: {"scopes": [PROBE_SCOPE], "category": "other", "irreversible": False},
            NETWORK_TOOL: {"scopes": [], "category": "network", "irreversible": False},
            SHELL_TOOL: {"scopes": [], "category": "shell", "irreversible": False},
        })
        all_scopes = sorted({s for spec in tools.values() for s in spec.get("scopes", []) if s != PROBE_SCOPE})
        agents = data.setdefault("agents", {})
        base = {"owner": "compliance@warden.invalid", "team": "", "risk_tier": "minimal", "scopes": all_scopes,
                "key_ids": [], "egress": {"allow_hosts": []}, "shell": {"allow_commands": []}}
        agents[PROBE_AGENT] = {**base, "status": "active"}
        agents[SUSPENDED_PROBE_AGENT] = {**base, "status": "suspended"}
        self.scopes = all_scopes
        self.policy = compile_modules(policy_files, {"warden_registry": data})

    def decide(self, tool: str, args: dict | None = None, *, agent: str = PROBE_AGENT) -> dict:
        return self.trial(tool, args, agent=agent)["decision"]

    def trial(self, tool: str, args: dict | None = None, *, agent: str = PROBE_AGENT) -> dict:
        """A probe as the report prints it: the exact input, the effect and the rules that
        decided, so an auditor can re-perform it against the same bundle."""
        decision_input = {
            "agent": {"id": agent, "name": agent, "owner": "compliance@warden.invalid", "scopes": self.scopes},
            "action": {"type": "tool_call", "tool": tool, "args": args or {}},
            "context": {"session_id": "warden-compliance-probe", "environment": self.environment},
        }
        decision = self.policy.decide(decision_input)
        if not isinstance(decision, dict):
            decision = {"allow": False, "effect": "deny", "reasons": []}
        return {"input": decision_input, "effect": decision.get("effect", "deny"), "rules": rule_ids(decision),
                "decision": decision}


def rule_ids(decision: dict) -> list[str]:
    return [r.get("rule", "") for r in decision.get("reasons") or [] if isinstance(r, dict)]


@dataclass
class ToolProbe:
    tool: Tool
    risks: list[str]
    args: dict
    effect: str
    rules: list[str] = field(default_factory=list)
    input: dict = field(default_factory=dict)

    def as_probe(self) -> dict:
        return {"input": self.input, "effect": self.effect, "rules": self.rules,
                "why": f"{self.tool.name}: {'/'.join(self.risks)}"}

    @property
    def gated(self) -> bool:
        return self.effect in ("deny", "require_approval") and not self.inconclusive

    @property
    def inconclusive(self) -> bool:
        return self.effect != "allow" and not (set(self.rules) - PROBE_FAILURES - {"default-deny"})


def tool_risks(tool: Tool, settings: dict) -> tuple[list[str], dict]:
    """Why a catalog tool is high-risk (empty if it is not), and arguments that exercise that risk."""
    risks, args = [], {}
    words = " ".join([tool.name, *tool.scopes])
    # A tool whose scopes are all read: can neither pay, send, push nor delete: matching its
    # name (invoice_read) against a risk pattern would be a false positive.
    if tool.scopes and all(str(s).startswith("read:") for s in tool.scopes):
        words = ""
    protected_paths = [p for p in settings.get("protected_paths") or [] if isinstance(p, str)]
    if tool.irreversible:
        risks.append("irreversible")
    if tool.category == ToolCategory.PAYMENT or _PAYMENT.search(words):
        risks.append("payment" if tool.category == ToolCategory.PAYMENT else "payment (by name or scope)")
        args.update({"amount_cents": 100, "currency": "EUR"})
    if tool.category == ToolCategory.EMAIL or (_EMAIL.search(words) and tool.category != ToolCategory.NETWORK):
        risks.append("email" if tool.category == ToolCategory.EMAIL else "email (by name or scope)")
        args.update({"to": [f"someone@{PROBE_HOST}"], "subject": "probe"})
    if tool.category == ToolCategory.GIT_PUSH or _PUSH.search(words):
        branches = [b for b in settings.get("protected_branches") or ["main"] if isinstance(b, str)]
        risks.append("git_push" if tool.category == ToolCategory.GIT_PUSH else "git_push (by name or scope)")
        args["branch"] = branches[0].replace("*", "probe") if branches else "main"
    destructive = tool.name in (settings.get("destructive_file_tools") or [])
    if destructive or (tool.category == ToolCategory.FILE and _DELETE.search(words)):
        risks.append("file_delete")
        prefix = protected_paths[0] if protected_paths else "/prod/"
        args["path"] = prefix.rstrip("/") + "/warden-compliance-probe"
    if tool.category == ToolCategory.DATABASE and _DELETE.search(words):
        risks.append("database_delete")
        args.update({"query": "DELETE FROM warden_compliance_probe", "table": "warden_compliance_probe"})
    return risks, args


def probe_high_risk_tools(probe: PolicyProbe, tools: list[Tool], registry: dict) -> list[ToolProbe]:
    """Every high-risk catalog tool and what the active bundle decides for a call to it."""
    results = []
    for tool in tools:
        risks, args = tool_risks(tool, registry)
        if not risks:
            continue
        trial = probe.trial(tool.name, args)
        results.append(ToolProbe(tool=tool, risks=risks, args=args, effect=trial["effect"], rules=trial["rules"],
                                 input=trial["input"]))
    return results
