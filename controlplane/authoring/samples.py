"""One worked rule per template, with the examples its author would give.

`python -m controlplane.authoring.samples` writes their generated modules and tests to
controlplane/authoring/generated/org/ (checked in): `make rego-test`-style runs and the
opa-oracle session test them under regorus and real OPA; a test checks they are current.
"""

from __future__ import annotations


def call(tool: str, args: dict, *, agent: str = "finance-bot", **context) -> dict:
    return {"agent": {"id": agent}, "action": {"type": "tool_call", "tool": tool, "args": args},
            "context": {"session_id": "s-1", "environment": "prod", "time": "2026-03-02T10:00:00Z", **context}}


SAMPLES: dict[str, dict] = {
    "block_tool": {
        "params": {
            "name": "no_prod_deletes", "owner": "security@example.com", "tools": ["file_delete"], "effect": "deny",
            "controls": ["eu_ai_act.art14", "soc2.CC6.1"], "when": {"path_prefixes": ["/prod/"], "environments": ["prod"]},
        },
        "examples": [
            {"description": "Deleting a production file is blocked", "expect": "deny", "input": call("file_delete", {"path": "/prod/db.sqlite"})},
            {"description": "A path that climbs out of /tmp is blocked too", "expect": "deny", "input": call("file_delete", {"path": "/tmp/../prod/x"})},
            {"description": "Deleting a temp file passes", "expect": "pass", "input": call("file_delete", {"path": "/tmp/x"})},
            {"description": "Staging is not covered", "expect": "pass", "environment": "staging", "input": call("file_delete", {"path": "/prod/x"}, environment="staging")},
        ],
    },
    "require_approval": {
        "params": {
            "name": "large_payments", "owner": "risk@example.com", "tools": ["pay_invoice"], "quorum": 2,
            "controls": ["eu_ai_act.art14"], "when": {"amount_over": {"limit": 10000, "currency": "EUR"}, "agent_teams": ["finance"]},
        },
        "examples": [
            {"description": "12,000 EUR by a finance agent waits", "expect": "hold", "agent": {"team": "finance"}, "input": call("pay_invoice", {"amount": 12000, "currency": "EUR"})},
            {"description": "An amount given as text waits too", "expect": "hold", "agent": {"team": "finance"}, "input": call("pay_invoice", {"amount": "12000", "currency": "EUR"})},
            {"description": "9,000 EUR passes", "expect": "pass", "agent": {"team": "finance"}, "input": call("pay_invoice", {"amount": 9000, "currency": "EUR"})},
            {"description": "Another team's agent is not covered", "expect": "pass", "agent": {"team": "support"}, "input": call("pay_invoice", {"amount": 12000, "currency": "EUR"})},
        ],
    },
    "rate_limit": {
        "params": {"name": "search_rate", "owner": "platform@example.com", "per": "agent", "window": "minute", "limit": 30, "tools": ["web_search"]},
        "examples": [
            {"description": "The 31st search in a minute is blocked", "expect": "deny", "input": call("web_search", {"q": "x"}, counters={"agent": {"calls_per_minute": 30}})},
            {"description": "The 10th passes", "expect": "pass", "input": call("web_search", {"q": "x"}, counters={"agent": {"calls_per_minute": 9}})},
        ],
    },
    "restrict_egress": {
        "params": {"name": "crm_egress", "owner": "security@example.com", "tools": ["http_request"], "allow_hosts": ["api.crm.example.com", "*.internal.example.com"]},
        "examples": [
            {"description": "A paste site is blocked", "expect": "deny", "input": call("http_request", {"url": "https://pastebin.com/raw/x"})},
            {"description": "The CRM API passes", "expect": "pass", "input": call("http_request", {"url": "https://api.crm.example.com/v1/x"})},
            {"description": "An internal subdomain passes", "expect": "pass", "input": call("http_request", {"url": "https://wiki.internal.example.com/"})},
            {"description": "Credentials in the URL do not hide the host", "expect": "deny", "input": call("http_request", {"url": "https://api.crm.example.com@evil.test/"})},
        ],
    },
    "mask_fields": {
        "params": {"name": "mask_iban", "owner": "privacy@example.com", "fields": ["iban", "account_holder"], "tools": ["pay_invoice"]},
        "examples": [
            {"description": "The IBAN is masked", "expect": "mask", "input": call("pay_invoice", {"iban": "DE89370400440532013000", "amount": 5})},
            {"description": "Other tools are not masked", "expect": "pass", "input": call("ticket_read", {"iban": "DE89370400440532013000"})},
        ],
    },
    "sequence_deny": {
        "params": {"name": "no_send_after_sensitive", "owner": "dpo@example.com", "tools": ["email_send"], "effect": "deny", "after_labels": ["sensitive"], "after_tools": ["hr_records_read"]},
        "examples": [
            {"description": "No e-mail after reading sensitive data", "expect": "deny", "input": call("email_send", {"to": "x@partner.test"}, session={"labels": ["sensitive"], "tools": []})},
            {"description": "No e-mail after reading HR records", "expect": "deny", "input": call("email_send", {"to": "x@partner.test"}, session={"tools": ["hr_records_read"]})},
            {"description": "E-mail in a clean session passes", "expect": "pass", "input": call("email_send", {"to": "x@partner.test"}, session={"labels": ["public"], "tools": ["ticket_read"]})},
        ],
    },
    "quiet_hours": {
        "params": {"name": "deploy_quiet_hours", "owner": "sre@example.com", "tools": ["deploy"], "effect": "hold", "window": {"from_hour": 22, "to_hour": 6}, "environments": ["prod"]},
        "examples": [
            {"description": "A deploy at 23:30 UTC waits", "expect": "hold", "input": call("deploy", {"service": "api"}, time="2026-03-02T23:30:00Z")},
            {"description": "A deploy at 01:00 local (+02:00) is 23:00 UTC and waits", "expect": "hold", "input": call("deploy", {"service": "api"}, time="2026-03-03T01:00:00+02:00")},
            {"description": "A deploy without a readable time waits", "expect": "hold", "input": call("deploy", {"service": "api"}, time="tonight")},
            {"description": "A deploy at 10:00 UTC passes", "expect": "pass", "input": call("deploy", {"service": "api"})},
        ],
    },
}


def generated_files() -> dict[str, str]:
    """{bundle path: source} of every sample's module and test module."""
    from controlplane.authoring.examples import example_tests
    from controlplane.authoring.templates import module_kind, module_source

    files = {}
    for key, sample in SAMPLES.items():
        name = sample["params"]["name"]
        files[f"org/{name}.rego"] = module_source(key, sample["params"])
        files[f"org/{name}_test.rego"] = example_tests(sample["params"], sample["examples"], module_kind(key, sample["params"]))
    return files


if __name__ == "__main__":
    import os
    from pathlib import Path

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    django.setup()
    root = Path(__file__).parent / "generated"
    for path, source in generated_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(source, encoding="utf-8")
        print(f"wrote {root / path}")
