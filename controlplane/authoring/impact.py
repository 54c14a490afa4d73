"""Replaying inputs against two policies and counting what changes.

Recorded traffic repeats itself (the same agent calls the same tool with the same
arguments all day), so inputs are replayed once per distinct canonical JSON and counted
with their weight: 100,000 recorded decisions cost as many evaluations as they have
distinct inputs. Each side is the full decision (library and organisation modules) with
the environment's current registry data, so only the policy change shows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
SAMPLES_PER_TRANSITION = 5


@dataclass
class ReplayInput:
    source: str  # decision_log, intent or library
    ref: str  # the record's id, for the console to link
    input: dict
    weight: int = 1


@dataclass
class ImpactResult:
    total: int = 0
    unique: int = 0
    relaxations: int = 0
    transitions: Counter = field(default_factory=Counter)
    by_rule: Counter = field(default_factory=Counter)
    by_agent: Counter = field(default_factory=Counter)
    by_tool: Counter = field(default_factory=Counter)
    samples: list = field(default_factory=list)

    def changes(self) -> dict:
        return {
            "transitions": dict(self.transitions), "by_rule": dict(self.by_rule.most_common(50)),
            "by_agent": dict(self.by_agent.most_common(50)), "by_tool": dict(self.by_tool.most_common(50)),
            "new_holds": sum(n for key, n in self.transitions.items() if key.endswith("->require_approval")),
        }


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def deduplicate(inputs: Iterable[ReplayInput]) -> list[ReplayInput]:
    """One ReplayInput per distinct input, carrying how many records had it (the first
    record's source and id stand for the rest)."""
    seen: dict[str, ReplayInput] = {}
    for item in inputs:
        key = canonical(item.input)
        if key in seen:
            seen[key].weight += item.weight
        else:
            seen[key] = item
    return list(seen.values())


def _name(value, key: str) -> str:
    node = value.get(key) if isinstance(value, dict) else None
    found = node.get("id" if key == "agent" else "tool") if isinstance(node, dict) else None
    return found if isinstance(found, str) else "(none)"


def is_relaxation(before: dict, after: dict) -> bool:
    """Less strict, or as strict while a denial or hold went away (it would decide alone once
    the other reason is fixed)."""
    if STRICTNESS[after["effect"]] < STRICTNESS[before["effect"]]:
        return True
    gone = {r["rule"] for r in before.get("reasons", [])} - {r["rule"] for r in after.get("reasons", [])}
    if after["effect"] == "deny":
        gone.discard("default-deny")  # shown only while no rule denies: a new denial replaces it
    return bool(gone) and before["effect"] != "allow" and after["effect"] != "allow"


def replay(
    items: list[ReplayInput], before: Callable[[dict], dict], after: Callable[[dict], dict],
    *, progress: Callable[[int], None] | None = None, every: int = 2000,
) -> ImpactResult:
    """Decide every input with `before` and `after`; count and sample what differs."""
    result = ImpactResult(unique=len(items))
    per_transition: Counter = Counter()
    for done, item in enumerate(items, start=1):
        result.total += item.weight
        was, now = before(item.input), after(item.input)
        was_rules = {r["rule"] for r in was.get("reasons", [])}
        now_rules = {r["rule"] for r in now.get("reasons", [])}
        if was["effect"] == now["effect"] and was_rules == now_rules:
            if progress and done % every == 0:
                progress(done)
            continue
        transition = f"{was['effect']}->{now['effect']}"
        relaxed = is_relaxation(was, now)
        result.transitions[transition] += item.weight
        if relaxed:
            result.relaxations += item.weight
        for rule in sorted(was_rules ^ now_rules):
            result.by_rule[rule] += item.weight
        result.by_agent[_name(item.input, "agent")] += item.weight
        result.by_tool[_name(item.input, "action")] += item.weight
        if per_transition[transition] < SAMPLES_PER_TRANSITION:
            per_transition[transition] += 1
            result.samples.append({
                "transition": transition, "relaxation": relaxed, "source": item.source, "ref": item.ref,
                "records": item.weight, "input": item.input,
                "before": {"effect": was["effect"], "reasons": was.get("reasons", [])},
                "after": {"effect": now["effect"], "reasons": now.get("reasons", [])},
                "rules_added": sorted(now_rules - was_rules), "rules_removed": sorted(was_rules - now_rules),
            })
        if progress and done % every == 0:
            progress(done)
    if progress:
        progress(len(items))
    result.samples.sort(key=lambda s: (not s["relaxation"], s["transition"]))
    return result
