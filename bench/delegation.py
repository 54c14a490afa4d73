"""Cost of verifying delegation chains, per link, and what a chain adds to a Guard decision.

Rows:
- verify_chain, cold (no cache): the full check (decode, form, Ed25519 signature, hashes,
  attenuation, time) of chains of 1..4 links; the per-link figure is the mean divided by
  the number of links;
- delegation_input with the ChainCache warm (what every decision after the first pays for
  the same chain until the next bundle): hash the token, look up, re-check time and session;
- Guard.check with the shipped pack, without a chain and with a 2-link chain (cached),
  interleaved in one run so the machine's load hits both alike.

Prints p50/p99/mean in microseconds; asserts nothing.

    python bench/delegation.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents_sdk.delegation import ChainCache, delegation_input, encode_chain, verify_chain  # noqa: E402
from agents_sdk.guard import EmbeddedBackend, Guard  # noqa: E402
from agents_sdk.identity import AgentIdentity  # noqa: E402
from agents_sdk.tests.delegation_fixtures import Team  # noqa: E402
from agents_sdk.tests.signed_bundles import library_modules  # noqa: E402

NAMES = ["orchestrator", "researcher", "executor", "worker-a", "worker-b"]


def long_team() -> tuple[Team, dict[str, AgentIdentity]]:
    team = Team()
    for name in NAMES[3:]:
        identity = AgentIdentity.create(name, "team@example.com", ["read:docs"])
        team.ids[name] = identity
        team.registry["agents"][name] = {"status": "active", "scopes": ["read:docs"], "key_ids": [identity.key_id]}
        team.registry["delegation"]["keys"][identity.key_id] = {"agent": name, "public_key": identity.public_key_b64}
    for issuer, audience in zip(NAMES, NAMES[1:], strict=False):
        team.registry["delegation"]["rules"][issuer] = {"may_delegate_to": [audience]}
    team.registry["delegation"]["max_depth"] = 8
    return team, team.ids


def chain_of(team: Team, links: int) -> tuple[str, str, str]:
    now = int(time.time())
    chain: list[dict] = []
    for index in range(links):
        chain.append(team.grant(NAMES[index], NAMES[index + 1], ["read:docs"], f"s-{index}",
                                parent=chain[-1] if chain else None, now=now,
                                parent_session=None if chain else "s-root"))
    return encode_chain(chain), NAMES[links], f"s-{links - 1}"


def timed(function, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        function()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def row(label: str, samples: list[float], links: int | None = None) -> None:
    samples = sorted(samples)
    mean = statistics.fmean(samples)
    per_link = f"{mean / links:10.1f}" if links else " " * 10
    print(f"{label:<44}{samples[len(samples) // 2]:10.1f}{samples[int(len(samples) * 0.99)]:10.1f}{mean:10.1f}{per_link}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    team, _ = long_team()
    print(f"{'µs':<44}{'p50':>10}{'p99':>10}{'mean':>10}{'per link':>10}")
    for links in (1, 2, 3, 4):
        token, agent, session = chain_of(team, links)
        row(f"verify_chain cold, {links} link(s)", timed(
            lambda t=token, a=agent, s=session: verify_chain(t, team.registry, agent=a, session_id=s), rounds), links)
    token, agent, session = chain_of(team, 2)
    cache = ChainCache()
    base = {"agent": {"id": agent}, "action": {"tool": "doc_search", "args": {}},
            "context": {"session_id": session, "delegation": token}}
    delegation_input(base, team.registry, cache=cache)
    row("delegation_input, cache warm, 2 links", timed(lambda: delegation_input(base, team.registry, cache=cache), rounds))

    backend = EmbeddedBackend.from_modules(library_modules(), {"warden_registry": team.registry})
    guard = Guard(team.ids[agent], backend, environment="prod", session_id=session)
    guard.check("doc_search", {"query": "q"}, delegation=token)
    plain, chained = [], []
    for _ in range(rounds):  # interleaved: the same load on both
        started = time.perf_counter_ns()
        guard.check("doc_search", {"query": "q"})
        plain.append((time.perf_counter_ns() - started) / 1000)
        started = time.perf_counter_ns()
        guard.check("doc_search", {"query": "q"}, delegation=token)
        chained.append((time.perf_counter_ns() - started) / 1000)
    row("Guard.check, no chain", plain)
    row("Guard.check, 2-link chain (cached)", chained)


if __name__ == "__main__":
    main()
