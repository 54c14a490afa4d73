"""A real agent process for the approval end-to-end runs and bench/approvals.py.

    python tests/approvals/agent_process.py --url http://127.0.0.1:8000 --admin-token-file T \
        --workdir DIR --mode guard|langchain|mcp [--count N] [--replay]

It registers its own identity, pulls the environment's signed bundle (long polling), ships
its signed records, and makes ``--count`` held payments through the SDK: the plain Guard
decorator, a LangChain tool (``govern_tool``), or the MCP proxy in front of a real stdio MCP
server. Each call waits for a person (``on_approval="wait"``). Every payment that runs
appends a line to DIR/payments.log. With ``--replay`` it then presents the used grant again,
on this host (refused by the ledger) and, once the consumption reached the control plane,
as another host would (refused by the engine: ``consumed``). Events go to stdout as JSON lines.
No Django here: this is the agent's side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agents_sdk.approvals import ApprovalClient  # noqa: E402
from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey  # noqa: E402
from agents_sdk.errors import WardenError  # noqa: E402
from agents_sdk.guard import Decision, EmbeddedBackend, Guard  # noqa: E402
from agents_sdk.identity import AgentIdentity  # noqa: E402
from agents_sdk.records import ActionSigner  # noqa: E402
from agents_sdk.shipper import Shipper  # noqa: E402

IBAN = "DE89370400440532013000"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def api(url: str, token: str, path: str, body: dict | None = None) -> Any:
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST")
    request.add_header("Authorization", f"Token {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def record_payment(workdir: Path, amount: int) -> str:
    with (workdir / "payments.log").open("a") as log:
        log.write(json.dumps({"amount": amount, "at": time.time()}) + "\n")
    return f"paid {amount} EUR"


class Agent:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(args.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        token = Path(args.admin_token_file).read_text().strip()
        key_file = self.workdir / "agent.key"
        if key_file.exists():
            self.identity = AgentIdentity.load(key_file)
        else:
            name = args.name or f"e2e-{args.mode}-{uuid.uuid4().hex[:6]}"
            self.identity = AgentIdentity.create(name, "treasury@example.com", ["write:payments"])
            self.identity.register(args.url, token, environments=[args.env], risk_tier="high", timeout=120)
            self.identity.save(key_file)
        keys = api(args.url, token, "/api/v1/signing-keys/")
        keys = keys["results"] if isinstance(keys, dict) else keys
        (key,) = [k for k in keys if k["is_active"]]
        env_token = api(args.url, token, f"/api/v1/environments/{args.env}/tokens/", {"name": f"{self.identity.name}"})
        verification = VerificationConfig(keys={key["kid"]: VerificationKey.from_pem(key["kid"], key["public_key_pem"])},
                                          keyid=key["kid"])
        self.bundles = BundleClient(f"{args.url}/opa", f"bundles/{args.env}", token=env_token["token"],
                                    verification=verification, long_polling_timeout=20)
        self.backend = EmbeddedBackend(self.bundles)
        if not self.backend.wait_until_ready(60):
            raise SystemExit("no bundle")
        self.shipper = Shipper(self.identity, args.url, spool_dir=self.workdir / "ship-spool", flush_interval=0.2).start()
        self.signer = ActionSigner(self.identity, sink=self.shipper.submit)
        self.session_id = f"e2e-{uuid.uuid4()}"
        self.guard = Guard(
            self.identity, self.backend, environment=args.env, session_id=self.session_id, signer=self.signer,
            approvals=ApprovalClient(self.identity, args.url, spool_dir=self.workdir / "approval-spool",
                                     ledger_dir=self.workdir / "ledger"),
            on_approval="wait", approval_timeout=args.timeout,
        )
        emit("ready", agent=self.identity.name, session_id=self.session_id)

    def used_grants(self) -> list[str]:
        return [json.loads(p.read_text())["grant_id"] for p in sorted((self.workdir / "ledger").glob("*.used"))]

    # -- the three ways in -------------------------------------------------------------

    def run_guard(self, amount: int) -> str:
        @self.guard.tool(name="payment_create")
        def payment_create(amount: int, currency: str, iban: str) -> str:
            return record_payment(self.workdir, amount)

        return payment_create(amount, "EUR", IBAN)

    def run_langchain(self, amount: int) -> str:
        from langchain_core.tools import StructuredTool

        from agents_sdk.integrations.langchain import govern_tool

        def payment_create(amount: int, currency: str, iban: str) -> str:
            """Pay a supplier."""
            return record_payment(self.workdir, amount)

        tool = govern_tool(StructuredTool.from_function(payment_create), self.guard)
        return str(tool.invoke({"amount": amount, "currency": "EUR", "iban": IBAN}))

    def run_mcp(self, amount: int) -> str:
        return asyncio.run(self._mcp(amount))

    async def _mcp(self, amount: int) -> str:
        from mcp import Client, StdioServerParameters, types

        from agents_sdk.integrations.mcp_proxy import MCPProxy

        server = StdioServerParameters(command=sys.executable, args=[str(Path(__file__).with_name("mcp_payments.py")),
                                                                     str(self.workdir)])
        async with Client(server) as upstream:
            proxy = MCPProxy(self.guard, upstream, server_name="payments")
            params = types.CallToolRequestParams(name="payment_create",
                                                 arguments={"amount": amount, "currency": "EUR", "iban": IBAN})
            result = await proxy.call_tool(None, params)
            text = result.content[0].text if result.content else ""
            if result.is_error:
                raise WardenError(text)
            return text

    # -- the run ---------------------------------------------------------------------

    def call(self, amount: int) -> str:
        return getattr(self, f"run_{self.args.mode}")(amount)

    def main(self) -> int:
        for n in range(self.args.count):
            amount = self.args.amount + n
            emit("calling", amount=amount)
            try:
                result = self.call(amount)
            except WardenError as exc:
                traceback.print_exc()
                print(getattr(getattr(exc, "decision", None), "reasons", None), file=sys.stderr)
                emit("refused", amount=amount, error=f"{type(exc).__name__}: {exc}")
                continue
            emit("ran", amount=amount, result=result)
        if self.args.replay:
            self.replay()
        self.shipper.flush(timeout=30)
        emit("done", session_id=self.session_id, grants=self.used_grants())
        self.shipper.close(timeout=10)
        self.backend.close()
        return 0

    def replay(self) -> None:
        grants = self.used_grants()
        if not grants:
            emit("replay", outcome="no grant used")
            return
        grant = grants[-1]
        amount = self.args.amount + self.args.count - 1
        # 1. On this host: the ledger refuses a second use at once.
        self.guard.on_approval = "raise"
        with self.guard.context(approval_token=grant):
            try:
                emit("replay", where="same-host", outcome="ran", result=self.run_guard(amount))
            except WardenError as exc:
                emit("replay", where="same-host", outcome="refused", error=str(exc))
        # 2. Another host (a fresh ledger) once the consumption reached the control plane:
        # the engine refuses it from the bundle (`consumed`).
        self.shipper.flush(timeout=30)
        self.guard.approvals.ledger = type(self.guard.approvals.ledger)(self.workdir / "other-host-ledger")
        deadline = time.monotonic() + 30
        input = self.guard.build_input("payment_create", {"amount": amount, "currency": "EUR", "iban": IBAN},
                                       approval_token=grant)
        while time.monotonic() < deadline:  # unsigned probes: the engine's view of the grant
            decision = Decision.from_result(*self.backend.decide(input))
            if decision.effect == "deny" and "consumed" in decision.reasons[0].message:
                break
            time.sleep(0.1)
        with self.guard.context(approval_token=grant):
            try:
                emit("replay", where="other-host", outcome="ran", result=self.run_guard(amount))
            except WardenError as exc:
                emit("replay", where="other-host", outcome="refused", error=str(exc))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--admin-token-file", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--mode", choices=["guard", "langchain", "mcp"], default="guard")
    parser.add_argument("--env", default="prod")
    parser.add_argument("--name")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--amount", type=int, default=1200)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--replay", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(Agent(parse(sys.argv[1:])).main())
