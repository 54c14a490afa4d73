"""A real agent process for the end-to-end test: only agents_sdk, no Django.

`traffic`: sign one intent/decision/result per call with the agent's own key and ship them
to the control plane through the SDK's disk-spooled shipper, then exit once acknowledged.
`decide`: pull the environment's signed bundle over OPA's bundle protocol, verify it, and
print the embedded Rego engine's decision for one call of this agent (JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey
from agents_sdk.engine import RegoEngine
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.shipper import Shipper


def traffic(args, identity: AgentIdentity) -> int:
    shipper = Shipper(identity, args.url, args.spool, batch_size=200, flush_interval=0.1).start()
    signer = ActionSigner(identity, sink=shipper.submit, keep_log=False)
    with signer.session(session_id=args.session) as session:
        for i in range(args.calls):
            session.intent("http_request", {"url": f"https://{args.host}/v1/items/{i}", "method": "POST",
                                            "body": "row," * 50})
            session.decision("allow", reasons=[])
            session.result("201 Created")
    delivered = shipper.flush(timeout=60)
    shipper.close()
    return 0 if delivered else 3


def decide(args, identity: AgentIdentity) -> int:
    pem = Path(args.pem).read_text()
    verification = VerificationConfig(keys={args.kid: VerificationKey.from_pem(args.kid, pem)}, keyid=args.kid)
    client = BundleClient(f"{args.url}/opa", f"bundles/{args.environment}", token=args.token,
                          verification=verification)
    client.poll_once()
    bundle = client.active
    policy = RegoEngine().compile(bundle.modules, bundle.data)
    decision = policy.decide({
        "agent": {"id": identity.name, "name": identity.name, "owner": identity.owner, "scopes": list(identity.scopes)},
        "action": {"type": "tool_call", "tool": "http_request", "args": {"url": f"https://{args.host}/"}},
        "context": {"session_id": "decide", "environment": args.environment, "time": "2026-11-30T12:00:00Z"},
    })
    print(json.dumps({"revision": bundle.revision, "decision": decision}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["traffic", "decide"])
    parser.add_argument("--identity", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--spool", default="")
    parser.add_argument("--session", default="main")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--environment", default="prod")
    parser.add_argument("--token", default="")
    parser.add_argument("--kid", default="")
    parser.add_argument("--pem", default="")
    args = parser.parse_args()
    identity = AgentIdentity.load(args.identity)
    return traffic(args, identity) if args.phase == "traffic" else decide(args, identity)


if __name__ == "__main__":
    sys.exit(main())
