"""What the demo is made of: environments, tools and agents (read by seed_demo)."""

DEMO_ENVIRONMENTS = ["dev", "staging", "prod"]

DEMO_TOOLS = [
    {"name": "ticket_read", "scopes": ["read:tickets"], "category": "other"},
    {"name": "ticket_update", "scopes": ["write:tickets"], "category": "other"},
    {"name": "email_send", "scopes": ["send:email"], "category": "email"},
    {"name": "invoice_read", "scopes": ["read:invoices"], "category": "other"},
    {"name": "payment_create", "scopes": ["write:payments"], "category": "payment", "irreversible": True,
     "calls_per_hour": 20},
    {"name": "file_read", "scopes": ["read:files"], "category": "file"},
    {"name": "file_delete", "scopes": ["write:files"], "category": "file"},
    {"name": "http_request", "scopes": ["net:http"], "category": "network"},
    {"name": "shell", "scopes": ["exec:shell"], "category": "shell"},
    {"name": "git_push", "scopes": ["write:repo"], "category": "git_push"},
    {"name": "db_delete_rows", "scopes": ["delete:db.records"], "category": "database", "irreversible": True},
]

DEMO_AGENTS = [
    {
        "name": "support-bot",
        "display_name": "Customer support assistant",
        "owner_email": "alice@example.com",
        "team": "support",
        "description": "Answers tickets and e-mails customers.",
        "scopes": ["read:tickets", "write:tickets", "send:email"],
        "risk_tier": "limited",
        "environments": ["dev", "prod"],
    },
    {
        "name": "billing-agent",
        "display_name": "Billing reconciliation agent",
        "owner_email": "bob@example.com",
        "team": "finance",
        "description": "Matches invoices to payments and issues refunds.",
        "scopes": ["read:invoices", "write:payments"],
        "risk_tier": "high",
        "environments": ["staging", "prod"],
    },
    {
        "name": "code-assistant",
        "display_name": "Repository maintenance agent",
        "owner_email": "carol@example.com",
        "team": "platform",
        "description": "Opens pull requests and runs the test suite.",
        "scopes": ["read:repo", "write:repo", "exec:shell", "read:files", "write:files", "net:http"],
        "risk_tier": "minimal",
        "environments": ["dev", "staging", "prod"],
        "egress_allow_hosts": ["*.github.com", "pypi.org"],
        "shell_allow_commands": ["pytest", "git status"],
    },
    {
        "name": "data-cleaner",
        "display_name": "Data retention cleaner",
        "owner_email": "dave@example.com",
        "team": "data",
        "description": "Deletes expired records. Suspended after deleting from the wrong table.",
        "scopes": ["read:db.records", "delete:db.records"],
        "risk_tier": "limited",
        "environments": ["prod"],
        "suspend_reason": "deleted rows outside its retention window; under review",
    },
]
