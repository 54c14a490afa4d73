"""An example agent governed by Warden through the policy engine in its pod (a real OPA or
`warden sidecar`, both on 127.0.0.1:8181): every tool call is decided before it runs, the
decision is signed and chained, and the records are shipped to the control plane.

deploy/k8s/agents and deploy/compose.yaml run it; `make prodlike` runs it against the
local topology. Environment: AGENT_KEY_FILE (the identity, registered beforehand),
WARDEN_URL, WARDEN_ENVIRONMENT, POLICY_ENGINE_URL, AGENT_SPOOL_DIR, AGENT_ROUNDS (0: forever),
AGENT_INTERVAL_SECONDS.
"""

from __future__ import annotations

import json
import os
import sys
import time

import agents_sdk as warden

CALLS = (("ticket_read", {"id": 4711}), ("http_request", {"url": "https://evil.test/"}))


def main() -> int:
    identity = warden.AgentIdentity.load(os.environ["AGENT_KEY_FILE"])
    spool = os.environ.get("AGENT_SPOOL_DIR", "/var/spool/agent")
    shipper = warden.Shipper(identity, os.environ["WARDEN_URL"], spool_dir=spool).start()
    # Records are signed by a separate signer process off the tool calls' path; the spool beside
    # the shipper's keeps what it has not signed yet across a crash (docs/signed-records.md).
    signer = warden.ActionSigner(
        identity, sink=shipper.submit, keep_log=False, spool_dir=os.path.join(spool, "records")
    )
    engine = warden.OPAHTTPBackend(os.environ.get("POLICY_ENGINE_URL", "http://127.0.0.1:8181"))
    guard = warden.Guard(identity, engine, environment=os.environ["WARDEN_ENVIRONMENT"], signer=signer)
    rounds = int(os.environ.get("AGENT_ROUNDS", "0"))
    done = 0
    try:
        while rounds == 0 or done < rounds:
            for tool, args in CALLS:
                decision = guard.check(tool, args)
                print(
                    json.dumps(
                        {"tool": tool, "effect": decision.effect, "rules": [reason.rule for reason in decision.reasons]}
                    ),
                    flush=True,
                )
            done += 1
            if rounds == 0 or done < rounds:
                time.sleep(float(os.environ.get("AGENT_INTERVAL_SECONDS", "10")))
    finally:
        guard.close()
        signer.close()  # everything signed and handed to the shipper; the signer process ends
        shipped = shipper.close(timeout=30)
        print(json.dumps({"shipped": shipper.stats()["sent"], "all_acknowledged": shipped}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
