"""One agent of the three-agent test, as its own process (no Django).

    python agent_process.py delegate KEY_FILE AUDIENCE AUDIENCE_KEY_ID SESSION SCOPES TOOLS CONSTRAINTS [PARENT_TOKEN]
        signs a grant (narrowing PARENT_TOKEN's last link when given) and prints the chain
    python agent_process.py act KEY_FILE SIDECAR_URL SESSION TOKEN
        reads one JSON call per stdin line ({"tool", "args", "token"?}) and prints the decision
"""

from __future__ import annotations

import json
import sys

from agents_sdk.delegation import decode_chain, encode_chain, issue_grant
from agents_sdk.guard import Guard, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity


def delegate(key_file, audience, audience_key_id, session, scopes, tools, constraints, parent_token=None) -> None:
    me = AgentIdentity.load(key_file)
    chain = decode_chain(parent_token) if parent_token else []
    parent = chain[-1] if chain else None
    grant = issue_grant(
        me, issuer=me.name, audience=audience, audience_key_id=audience_key_id, scopes=json.loads(scopes),
        tools=json.loads(tools), constraints=json.loads(constraints) or None, session=session, parent=parent,
        parent_session=None if parent else f"{session}-parent",
    )
    print(encode_chain([*chain, grant]))


def act(key_file, sidecar_url, session, token) -> None:
    me = AgentIdentity.load(key_file)
    guard = Guard(me, OPAHTTPBackend(sidecar_url, timeout=5), environment="prod", session_id=session)
    print("ready", flush=True)
    for line in sys.stdin:
        call = json.loads(line)
        decision = guard.check(call["tool"], call["args"], delegation=call.get("token", token))
        print(json.dumps({"effect": decision.effect, "reasons": [r.as_dict() for r in decision.reasons]}), flush=True)


if __name__ == "__main__":
    {"delegate": delegate, "act": act}[sys.argv[1]](*sys.argv[2:])
