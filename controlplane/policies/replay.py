"""Replaying decisions against the policy before and after a change, to find relaxations.

Organisation policy can only add denials and holds, so a change relaxes a decision when it
removes or narrows one: the same input that was denied (or held) is now held (or allowed).
Such changes are flagged in the save answer and the change log, so a reviewer sees them.
The inputs are the newest recorded decisions (distinct inputs from the engines' decision
logs), the seeded decision corpus (agents_sdk.engine.corpus), which reaches every library
rule with hostile shapes, plus inputs built from the string literals the removed policy
compared against (tool names, amounts), so that the org rule's own cases are replayed.
"""

from __future__ import annotations

import itertools
import json
import re

from agents_sdk.engine import RegoEngineError
from agents_sdk.engine.corpus import DATA, corpus

REPLAY_SIZE = 300
STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
_LITERAL = re.compile(r'"([A-Za-z0-9_.:/@-]{1,64})"')


def _inputs_from_literals(sources: list[str]) -> list[dict]:
    """Inputs that name the tools and values an organisation module compares against."""
    literals = sorted({m for source in sources for m in _LITERAL.findall(source)})[:40]
    numbers = [0, 1, 10**3, 10**3 + 1, 10**6]
    inputs = []
    for tool, value in itertools.product(literals, literals[:10] + numbers):
        inputs.append({
            "agent": {"id": "support-bot"},
            "action": {"type": "tool_call", "tool": tool, "args": {"amount": value, "path": value, "to": value, "id": value}},
            "context": {"environment": "prod"},
        })
    return inputs


RECORDED_INPUTS = 2000


def recent_decision_inputs(limit: int = RECORDED_INPUTS) -> list[dict]:
    """Distinct inputs of the newest decisions engines logged (every environment): the
    traffic a change would really meet. The impact preview (controlplane.authoring) replays a
    whole window with each environment's own registry data; this is the quick look at save."""
    from controlplane.opa.models import DecisionLog  # policies sits below opa in the imports

    seen: dict[str, dict] = {}
    for value in DecisionLog.objects.filter(input__isnull=False).order_by("-timestamp").values_list("input", flat=True)[: limit * 5]:
        if isinstance(value, dict):
            seen.setdefault(json.dumps(value, sort_keys=True), value)
            if len(seen) >= limit:
                break
    return list(seen.values())


def storable(value):
    """`value` with every NUL character written as the six characters \\u0000: PostgreSQL's
    jsonb cannot hold NUL, and the corpus replays paths with one."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def relaxations(
    compile_policy, before: dict[str, str], after: dict[str, str], removed_sources: list[str], recorded: list[dict] | None = None,
) -> list[dict]:
    """Inputs whose decision is less strict under `after` than under `before`, or lost a
    denial or hold that another reason still covers.

    `compile_policy(modules, data)` compiles; each relaxation names the input, the effect
    before and after and the reasons that went away.
    """
    old, new = compile_policy(before, DATA), compile_policy(after, DATA)
    found = []
    for request in itertools.chain(recorded or [], corpus(count=REPLAY_SIZE), _inputs_from_literals(removed_sources)):
        try:
            was, now = old.decide(request), new.decide(request)
        except RegoEngineError:
            continue
        gone = sorted({r["rule"] for r in was["reasons"]} - {r["rule"] for r in now["reasons"]})
        # Less strict, or as strict for another reason while a denial or hold went away
        # (it would decide alone once the other reason is fixed).
        if STRICTNESS[now["effect"]] < STRICTNESS[was["effect"]] or (gone and now["effect"] != "allow" and was["effect"] != "allow"):
            found.append({"input": storable(request), "before": was["effect"], "after": now["effect"],
                          "reasons_removed": gone})
            if len(found) >= 20:
                break
    return found
