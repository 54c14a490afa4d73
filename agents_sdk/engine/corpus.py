"""A deterministic, seeded corpus of decision inputs: the differential test against real OPA
and the publish gate's replay of old and new policy (controlplane.policies.replay).

`corpus(seed, count)` yields the same inputs for the same seed on every machine (only
`random.Random(seed)` is used). Inputs are built from the registry below so that every rule
of the pack is reached, with hostile shapes mixed in: other JSON types where strings are
expected, Unicode look-alikes and case folds, NUL and control characters, very large and
very precise numbers, deep nesting, alternative argument names, and encoded secrets.
"""

from __future__ import annotations

import base64
import os
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

SEED = 20261130
SIZE = 12_000

# A longer or another oracle run than the default (docs/rego-engine.md, "Conformance with real
# OPA"): `WARDEN_ORACLE_CORPUS_SIZE=50000 nox -s opa-oracle`. Only the oracle reads them.
ORACLE_SEED_VARIABLE = "WARDEN_ORACLE_CORPUS_SEED"
ORACLE_SIZE_VARIABLE = "WARDEN_ORACLE_CORPUS_SIZE"


def oracle_corpus_settings(environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(seed, size) of the differential corpus the OPA oracle decides: SEED and SIZE unless
    the environment sets WARDEN_ORACLE_CORPUS_SEED or WARDEN_ORACLE_CORPUS_SIZE.

    Raises ValueError naming the variable when a value is not a whole number, or when the size
    is below SIZE (a smaller corpus no longer reaches every rule)."""
    settings = []
    for variable, default, least in ((ORACLE_SEED_VARIABLE, SEED, 0), (ORACLE_SIZE_VARIABLE, SIZE, SIZE)):
        text = environ.get(variable, "").strip()
        if not text:
            settings.append(default)
            continue
        if not re.fullmatch(r"-?[0-9]+", text):  # ASCII digits: int() also takes "1_000" and "１２"
            raise ValueError(f"{variable} must be a whole number, not {text!r}")
        value = int(text)
        if value < least:
            raise ValueError(f"{variable} must be at least {least}, not {value}")
        settings.append(value)
    return settings[0], settings[1]

REGISTRY: dict[str, Any] = {
    "agents": {
        "support-bot": {
            "status": "active",
            "owner": "alice@example.com",
            "scopes": ["read:tickets", "write:files", "net:http", "shell:exec", "payments:create", "email:send", "git:push", "db:write"],
            "egress": {"allow_hosts": ["*.example.com", "api.stripe.com"]},
            "shell": {"allow_commands": ["ls", "git status"]},
            "rate_limits": {"calls_per_minute": 60},
        },
        "suspended-bot": {"status": "suspended", "scopes": ["read:tickets"]},
        "revoked-bot": {"status": "revoked", "scopes": ["read:tickets"]},
        "orchestrator": {"status": "active", "scopes": ["read:tickets"]},
        "paused-orchestrator": {"status": "suspended", "scopes": ["read:tickets"]},
        "reader-bot": {"status": "active", "scopes": ["read:tickets"]},
    },
    "tools": {
        "ticket_read": {"scopes": ["read:tickets"]},
        "file_read": {"scopes": ["read:tickets"], "category": "file"},
        "file_write": {"scopes": ["write:files"], "category": "file"},
        "file_delete": {"scopes": ["write:files"], "category": "file"},
        "http_request": {"scopes": ["net:http"], "category": "network"},
        "shell": {"scopes": ["shell:exec"], "category": "shell"},
        "payment_create": {"scopes": ["payments:create"], "category": "payment", "rate_limits": {"calls_per_hour": 10}},
        "email_send": {"scopes": ["email:send"], "category": "email"},
        "git_push": {"scopes": ["git:push"], "category": "git_push"},
        "db_drop_table": {"scopes": ["db:write"], "irreversible": True},
        # A catalog argument schema (rego/warden/args_schema.rego).
        "ticket_update": {"scopes": ["read:tickets"], "args_schema": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "status": {"enum": ["open", "closed"]},
                           "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                           "note": {"type": ["string", "null"], "maxLength": 20}},
            "required": ["id"], "additionalProperties": False}},
        # Runs only in the sandbox (shell.rego, sandbox-required).
        "run_python": {"scopes": ["shell:exec"], "sandbox": {"required": True}},
    },
    # Agents the anomaly detector holds (approvals.rego, detector-hold).
    "held_agents": {"reader-bot": {"alert": 42}},
    "protected_paths": ["/prod/", "/etc/"],
    "destructive_file_tools": ["file_delete"],
    "protected_branches": ["main", "release/*"],
    "internal_email_domains": ["example.com"],
    "rate_limits": {"calls_per_minute": 120, "calls_per_hour": 2000},
    "approvals": {
        "apr-valid": {
            "agent_id": "support-bot", "tool": "file_delete", "args": {"path": "/prod/x"},
            "expires_at_ns": 4102444800000000000,
        },
        "apr-expired": {
            "agent_id": "support-bot", "tool": "file_delete", "args": {"path": "/prod/x"},
            "expires_at_ns": 946684800000000000,
        },
    },
}

DATA = {"warden_registry": REGISTRY}

# Organisation policy as the control plane accepts it (package warden.org.<name>), so the
# corpus also compares how engines collect organisation denials, holds and masks.
ORG_MODULES = {
    "org/sample.rego": """package warden.org.sample

import rego.v1

deny contains {"rule": "org-no-ticket-13", "message": "Ticket 13 is sealed", "controls": ["soc2.CC6.1"]} if {
	input.action.tool == "ticket_read"
	input.action.args.id == 13
}

approval_required contains {"rule": "org-srv-reads", "message": "Reads under /srv need approval"} if {
	input.action.tool == "file_read"
	startswith(input.action.args.path, "/srv/")
}

deny contains "a reason that is not an object" if input.action.args.id == "13"

mask contains "/action/args/id" if input.action.tool == "ticket_read"
""",
}

# Values of every JSON type, and numbers where engines' number models part ways.
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, -0.0, 1e308, 2**53 + 1, 2**64 + 1, 10**30, 100.000000000000001,
    "", " ", "\x00", "a\x00b", [], {}, [[]], {"": ""}, ["a", 1], {"path": "/prod/x"},
]
UNICODE_BITS = [
    "İ", "ı", "ß", "ﬁ", "Ｐ", "ｐｒｏｄ", "é", "e\u0301", "\u200b", "\u202e", "\ufeff", "٣", "߀", "Ⅸ", "Ａ",
    "\t", "\r\n", "\x7f", "\u0085", "\u2028", "😀", "ǅ",
]
HOSTS = [
    "api.example.com", "example.com", "evil.com", "api.stripe.com", "API.EXAMPLE.COM", "a.b.example.com",
    "localhost", "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::1]", "xn--80ak6aa92e.com",
    "exİmple.com", "example.com.", "exa\u0000mple.com", "ex\tample.com", "ｅｘａｍｐｌｅ.com", "api.example.com\\.evil.com",
]
URL_SHAPES = [
    "https://{h}/x", "http://{h}", "HTTPS://{h}:443/a?b#c", "https://user@{h}/", "https://{h}@evil.com/",
    "http://127.0.0.1\\@{h}/x", "http://localhost\\.{h}/", "https://{h}\\x", "ftp://{h}/", "//{h}/x", "https:/{h}",
    " https://{h}/", "https://{h}\n/", "https://{h}:99999/", "https://{h}#@evil.com", "https://evil.com?{h}",
    "https://{h}%2f@evil.com", "https://{h}/%00",
]
PATHS = [
    "/prod/x", "/prod", "/prod/", "/PROD/x", "/Prod/db", "/production/x", "/prod-backup/x", "/etc/passwd",
    "/tmp/x", "/tmp/../prod/x", "/prod/./x", "prod/x", "//prod/x", "/prod//x", "/ｐｒｏｄ/x", "/prod\x00/x",
    "/pro\u0064/x", "/p\u0280od/x", "/tmp/x\x00/../../prod", "\\prod\\x", "/prod\\x", " /prod/x", "/prod/x ",
    "/etc", "/ETC/shadow", "/srv/a/b", "",
]
BRANCHES = [
    "main", "master", "feature/x", "release/1.0", "release/2.0/hotfix", "refs/heads/main", "HEAD:main", "+main",
    "main:main", "HEAD:refs/heads/main", "Main", "MAIN", "release", "releases/1.0", "main ", "ma\x00in", "ｍａｉｎ",
    "refs/heads/release/1.0", ":main", "feature:main", "refs/tags/v1", "",
]
RECIPIENTS = [
    "bob@example.com", "x@evil.com", "BOB@EXAMPLE.COM", "x@evil.com, bob@example.com", "bob@example.com, x@evil.com",
    "bob@example.com\r\nBcc: x@evil.com", "x@example.com.evil.com", "x@evilexample.com", "\"x@example.com\" <x@evil.com>",
    "Bob <bob@example.com>", "bob@example.com;x@evil.com", "x@EXAMPLE.com", "x@exİmple.com", "x@ｅｘａｍｐｌｅ.com", "",
    "bob@example.com\x00@evil.com", "x@sub.example.com",
]
COMMANDS = [
    "ls", "ls -la", "git status", "git status; rm -rf /", "ls | sh", "ls && id", "ls $(id)", "ls `id`", "ls > /x",
    "rm -rf /", "  ls  ", "ls\nid", "ls\tid", "LS", "git  status", "ls\x00; id", "/bin/ls", "",
]
SECRETS = [
    "AKIAABCDEFGHIJKLMNOP", "ghp_" + "a" * 36, "xoxb-1234567890-abc", "sk_live_" + "a" * 20, "AIza" + "b" * 35,
    "-----BEGIN RSA PRIVATE KEY-----", "éAKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOPé", "xAKIAABCDEFGHIJKLMNOP",
    "٣ghp_" + "a" * 36, "token=ghp_" + "a" * 36 + "_x",
]
CARDS = [
    "4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111", "card 4111111111111111.", "é4111111111111111",
    "4111111111111111é", "4111111111111112", "١4111111111111111", "x4111111111111111", "5555555555554444",
    "41111111111111111111111",
]
ARG_NAMES = {
    "file": ["path", "paths", "file", "filename", "target", "dest", "src", "Path"],
    "network": ["url", "urls", "uri", "URL", "endpoint"],
    "email": ["to", "cc", "bcc", "reply_to", "recipients", "To"],
    "git_push": ["branch", "refspec", "ref", "branches", "remote_ref"],
    "shell": ["command", "cmd", "args", "Command"],
}


def _unicode_twist(rng: random.Random, text: str) -> str:
    if not text or rng.random() < 0.5:
        return text
    where = rng.randrange(len(text) + 1)
    return text[:where] + rng.choice(UNICODE_BITS) + text[where:]


def _shape(rng: random.Random, value: Any) -> Any:
    """The value as it is, or wrapped in the shapes an agent might use instead."""
    roll = rng.random()
    if roll < 0.6:
        return value
    if roll < 0.7:
        return [value]
    if roll < 0.75:
        return [value, value]
    if roll < 0.8:
        return {"value": value}
    if roll < 0.9:
        return rng.choice(ODD_VALUES)
    return _unicode_twist(rng, value) if isinstance(value, str) else value


def _nested(rng: random.Random, leaf: Any, depth: int) -> Any:
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {rng.choice(["a", "b", "~/", "k"]): leaf}
    return leaf


def _base64_shape(secret: str) -> str:
    """The secret base64-encoded, in a shape picked by its length (no draw: the corpus stays
    the same): as is, after bytes that are not UTF-8, inside text, or with padding bits set."""
    encoded = base64.b64encode(secret.encode()).decode()
    variant = len(secret) % 4
    if variant == 1:
        return base64.b64encode(b"\xff\xfe" + secret.encode()).decode()
    if variant == 2:
        return f"Authorization: Basic {encoded} (ci)"
    if variant == 3 and encoded.endswith("="):
        return encoded[: encoded.index("=") - 1] + "V" + encoded[encoded.index("="):]
    return encoded


def _args(rng: random.Random, category: str) -> Any:
    args: dict[str, Any] = {}
    if category == "file":
        args[rng.choice(ARG_NAMES["file"]) if rng.random() < 0.3 else "path"] = _shape(rng, rng.choice(PATHS))
        if rng.random() < 0.2:
            args["content"] = rng.choice(["data", rng.choice(SECRETS), rng.choice(CARDS)])
    elif category == "network":
        url = rng.choice(URL_SHAPES).replace("{h}", rng.choice(HOSTS))
        args[rng.choice(ARG_NAMES["network"]) if rng.random() < 0.3 else "url"] = _shape(rng, url)
    elif category == "email":
        for _ in range(rng.randint(1, 2)):
            field = rng.choice(ARG_NAMES["email"]) if rng.random() < 0.5 else "to"
            recipient: Any = _shape(rng, rng.choice(RECIPIENTS))
            if rng.random() < 0.1:
                recipient = [{"email": rng.choice(RECIPIENTS)}]
            args[field] = recipient
        args["subject"] = _unicode_twist(rng, "Hello")
    elif category == "git_push":
        args[rng.choice(ARG_NAMES["git_push"]) if rng.random() < 0.3 else "branch"] = _shape(rng, rng.choice(BRANCHES))
    elif category == "shell":
        args[rng.choice(ARG_NAMES["shell"]) if rng.random() < 0.2 else "command"] = _shape(rng, rng.choice(COMMANDS))
    elif category == "payment":
        args["amount"] = rng.choice([5, 100, 100.000000000000001, 2**64 + 1, -1, "100", 1e308])
        if rng.random() < 0.5:
            args["card"] = rng.choice(CARDS)
    else:
        args["id"] = rng.choice([7, "7", None, [7], 13, "13"])
    roll = rng.random()
    if roll < 0.08:
        secret = rng.choice(SECRETS)
        where = rng.random()
        if where < 0.3:
            args[secret] = "x"  # a secret as an object key
        elif where < 0.6:
            args["note"] = _base64_shape(secret)
        else:
            args["note"] = _nested(rng, _unicode_twist(rng, secret), rng.randint(0, 20))
    elif roll < 0.14:
        args["memo"] = _nested(rng, _unicode_twist(rng, rng.choice(CARDS)), rng.randint(0, 20))
    elif roll < 0.17:
        args["deep"] = _nested(rng, "plain text", rng.randint(10, 24))
    if rng.random() < 0.04:
        return rng.choice(ODD_VALUES)  # args that are not an object at all
    return args


def _agent(rng: random.Random) -> Any:
    roll = rng.random()
    agent_id: Any
    if roll < 0.75:
        agent_id = "support-bot"
    elif roll < 0.9:
        agent_id = rng.choice(list(REGISTRY["agents"]) + ["ghost-bot", "SUPPORT-BOT", "support-bot\x00"])
    else:
        agent_id = rng.choice(ODD_VALUES)
    agent: dict[str, Any] = {"id": agent_id, "name": "bot", "owner": "alice@example.com"}
    scopes_roll = rng.random()
    if scopes_roll < 0.2:
        agent["scopes"] = rng.sample(REGISTRY["agents"]["support-bot"]["scopes"], rng.randint(0, 4))
    elif scopes_roll < 0.25:
        agent["scopes"] = rng.choice(ODD_VALUES)
    if rng.random() < 0.02:
        return rng.choice(ODD_VALUES)
    return agent


def _context(rng: random.Random) -> Any:
    context: dict[str, Any] = {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"}
    if rng.random() < 0.1:
        context["on_behalf_of"] = rng.choice(
            [["orchestrator"], ["paused-orchestrator"], "paused-orchestrator", ["ghost"], [], [1], "orchestrator", {"id": "x"}]
        )
    if rng.random() < 0.1:
        context["counters"] = {
            rng.choice(["agent", "tool"]): {
                rng.choice(["calls_per_minute", "calls_per_hour"]): rng.choice([1, 59, 60, 61, 119, 120, 5000, 9, 10, 1e308, "999", 2**64])
            }
        }
    if rng.random() < 0.05:
        context["approval_token"] = rng.choice(["apr-valid", "apr-expired", "nope", 1, ["apr-valid"]])
    if rng.random() < 0.03:
        context["note"] = rng.choice(SECRETS)
    if rng.random() < 0.02:
        return rng.choice(ODD_VALUES)
    return context


def _delegation(rng: random.Random) -> Any:
    """input.delegation as verifiers write it, and shapes they never write (rego/warden/delegation.rego)."""
    facts: dict[str, Any] = {
        "verified": True, "chain": ["orchestrator", "support-bot"], "agents": ["orchestrator", "support-bot"],
        "origin": "orchestrator", "depth": 1, "grants": ["0" * 64], "session": "s-1",
        "scopes": rng.choice([["read:tickets"], ["read:tickets", "write:files", "payments:create", "email:send"], []]),
        "constraints": rng.choice([{}, {"path_prefix": "/data/"}, {"max_amount": 100}, {"recipient_domain": "example.com"},
                                   {"path_prefix": "/prod/", "max_amount": 0.5}]),
    }
    if rng.random() < 0.3:
        facts["tools"] = rng.choice([["ticket_read"], ["file_read", "file_write"], []])
    if rng.random() < 0.2:
        facts["agents"] = rng.choice([["paused-orchestrator", "support-bot"], ["ghost", "support-bot"], ["orchestrator", "reader-bot"]])
    if rng.random() < 0.1:
        return rng.choice([{**facts, "verified": "true"}, {**facts, "scopes": "read:tickets"}, "orchestrator", None, [facts]])
    return facts


def corpus(seed: int = SEED, count: int = SIZE) -> Iterator[dict[str, Any]]:
    """`count` decision inputs, the same for the same seed."""
    rng = random.Random(seed)
    # Delegation shapes from a stream of their own, so the other inputs stay as they were.
    delegation_rng = random.Random(seed + 18)
    # Argument schemas and encoded secrets from a third stream, for the same reason.
    extra_rng = random.Random(seed + 19)
    tools = [name for name in REGISTRY["tools"] if name not in ("ticket_update", "run_python")]
    for _ in range(count):
        roll = rng.random()
        tool: Any = rng.choice(tools) if roll < 0.92 else rng.choice(["unknown_tool", "FILE_DELETE", *ODD_VALUES])
        category = REGISTRY["tools"].get(tool, {}).get("category", "other") if isinstance(tool, str) else "other"
        if tool == "db_drop_table":
            category = "other"
        action: Any = {"type": "tool_call", "tool": tool, "args": _args(rng, category)}
        if rng.random() < 0.02:
            action = rng.choice(ODD_VALUES)
        request: Any = {"agent": _agent(rng), "action": action, "context": _context(rng)}
        if rng.random() < 0.01:
            request = rng.choice(ODD_VALUES)
        if isinstance(request, dict) and delegation_rng.random() < 0.08:
            request["delegation"] = _delegation(delegation_rng)
        elif isinstance(request, dict) and isinstance(request.get("context"), dict) and delegation_rng.random() < 0.01:
            request["context"]["delegation"] = "wdc1.W10"
        _schema_and_encodings(extra_rng, request)
        yield request


SCHEMA_VALUES: list[Any] = [
    7, 7.0, 7.5, "7", [7], None, True, {"$gt": 0}, 2**53, "open", "OPEN", ["open"], ["a"], ["a", 1], ["a"] * 4,
    "x" * 20, "x" * 21, "ｉｄ", "",
]


def _encoded(rng: random.Random, secret: str) -> str:
    """The secret base64 or base64url encoded, padded or not, glued to text or after an escape."""
    raw = rng.choice([b"", b"k=", b"token: ", b"\xc3\xa9"]) + secret.encode()
    text = (base64.urlsafe_b64encode if rng.random() < 0.5 else base64.b64encode)(raw).decode()
    if rng.random() < 0.4:
        text = text.rstrip("=")
    return rng.choice(["", "x", "ab-", "\n", "<", "é", "\u0008"]) + text + rng.choice(["", "?", "-x", " ok"])


def _schema_and_encodings(rng: random.Random, request: Any) -> None:
    if not isinstance(request, dict):
        return
    action, context = request.get("action"), request.get("context")
    roll = rng.random()
    if roll < 0.06 and isinstance(action, dict):
        keys = rng.sample(["id", "status", "labels", "note", "Id", "path", "ｉｄ"], rng.randint(0, 3))
        action["tool"], action["args"] = "ticket_update", {key: rng.choice(SCHEMA_VALUES) for key in keys}
    elif roll < 0.1 and isinstance(context, dict):
        context["memo"] = _nested(rng, _encoded(rng, rng.choice(SECRETS)), rng.randint(0, 3))
    elif roll < 0.14 and isinstance(action, dict) and isinstance(action.get("args"), dict):
        action["args"]["blob"] = _nested(rng, _encoded(rng, rng.choice(SECRETS)), rng.randint(0, 3))
    elif roll < 0.16 and isinstance(context, dict):
        context["memo"] = _encoded(rng, "not a credential at all, just text")
    elif roll < 0.19 and isinstance(action, dict) and isinstance(context, dict):
        action["tool"], action["args"] = "run_python", {"command": "ls"}
        context["sandboxed"] = rng.choice([True, False, "true", 1])


def decision_summary(decision: dict) -> tuple:
    """What must be identical across engines: effect, reason rule ids and obligations."""
    return (
        decision.get("effect"),
        tuple(sorted(reason.get("rule") for reason in decision.get("reasons", []))),
        repr(decision.get("obligations")),
    )
