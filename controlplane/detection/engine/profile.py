"""One agent's baseline, learned continuously from its stream, and the detectors that
compare each new call or decision with it.

The state is a JSON object (stored in `detection.AgentBaseline.state`), updated one
observation at a time in event-time order, so detection is incremental and the same
code runs over weeks of simulated traffic in bench/detection_eval.py. Hourly figures
are bucketed by the time the agent signed the record (UTC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import controlplane.detection.engine.stats as stats
from controlplane.detection.engine.features import Observation

SEVERITIES = ("low", "medium", "high", "critical")
RANK = {name: i for i, name in enumerate(SEVERITIES)}
STATE_VERSION = 1
EVIDENCE_LIMIT = 20
MAX_TRACKED_SESSIONS = 500
MAX_PENDING_DESTINATIONS = 200
# Bounded state: past these, the longest-known entries are forgotten first (insertion order).
MAX_KNOWN_DESTINATIONS = 5000
MAX_KNOWN_PAIRS = 1000


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of the detectors (documented in docs/detection.md)."""

    warmup_hours: float = 72.0  # learn only, never alert, during the agent's first 3 days...
    warmup_calls: int = 200  # ...and its first 200 calls
    history_hours: int = 336  # two weeks of active hours per hourly series
    rate_floor: int = 30  # never a runaway alert below 30 calls of one tool in an hour
    rate_min_hours: int = 3  # nor before the agent has 3 closed active hours of history
    volume_floor: int = 1_000_000  # nor a volume alert below 1 MB in an hour
    new_destination_alert: int = 3  # calls to one new destination within the window: medium
    new_destination_bulk: int = 20  # ... or this many (or bulk_bytes): critical
    new_destination_bulk_bytes: int = 1_000_000
    new_destination_window: float = 3600.0  # a new destination is learned after this quietly
    denial_floor: int = 5
    denial_tail: float = 1e-6
    off_hours_share: float = 0.005  # an hour holding under 0.5 % of the agent's past calls
    off_hours_reads: int = 20
    chain_window: float = 900.0  # sensitive read → external send within 15 minutes, same session


@dataclass(slots=True)
class Finding:
    """What a detector saw: one sentence with the numbers, the baseline broken, the evidence."""

    detector: str
    severity: str
    subject: str
    summary: str
    baseline: dict
    observed: dict
    time: datetime
    records: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    events: list[int] = field(default_factory=list)


def empty_state() -> dict:
    return {
        "version": STATE_VERSION, "first_time": None, "last_time": None, "calls": 0, "decisions": 0,
        "tools": {}, "destinations": {}, "flagged_destinations": {}, "pending": {},
        "hour": None, "hour_tool_calls": {}, "hour_calls": 0, "hour_bytes": 0, "hour_decisions": 0,
        "hour_denials": 0, "hour_denied_tools": {}, "hour_reads": 0, "hour_evidence": {}, "fired": {},
        "history": {"calls": [], "bytes": [], "decisions": [], "denials": [], "tools": {}},
        "hour_of_day": [0] * 24, "chains": {}, "known_pairs": [], "tolerances": {}, "allowed_hours": [],
    }


def _hour_of(epoch: float) -> int:
    return int(epoch // 3600)


def _hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:00")


def _bytes(n: float) -> str:
    return f"{int(n):,} bytes"


class AgentProfile:
    """The baseline of one agent and its detectors. `observe` returns the findings an
    observation raises; `accept` folds a false-positive verdict back into the baseline."""

    def __init__(self, name: str, state: dict | None = None, settings: EngineSettings | None = None):
        self.name = name
        self.state = state if state and state.get("version") == STATE_VERSION else empty_state()
        self.settings = settings or EngineSettings()
        self._thresholds: dict[str, stats.Threshold] = {}

    # -- learning ---------------------------------------------------------------------

    @property
    def learning(self) -> bool:
        s = self.state
        if s["first_time"] is None:
            return True
        age_hours = (s["last_time"] - s["first_time"]) / 3600
        return age_hours < self.settings.warmup_hours or s["calls"] < self.settings.warmup_calls

    def _roll(self, epoch: float) -> None:
        """Close the current hour into the history when `epoch` falls in a later one."""
        s = self.state
        hour = _hour_of(epoch)
        if s["hour"] is None:
            s["hour"] = hour
            return
        if hour <= s["hour"]:
            return  # late records count in the open hour: detection never goes back in time
        if s["hour_calls"] or s["hour_decisions"]:
            limit = self.settings.history_hours
            history = s["history"]
            # An hour that raised an alert does not teach the baseline (an attack must not
            # raise the bar for the next one); a false-positive verdict teaches it instead.
            fired = s["fired"]
            anomalous = {"bytes": "data_volume:bytes_out" in fired, "decisions": "denial_probing:denials" in fired,
                         "denials": "denial_probing:denials" in fired, "calls": False}
            for key, value in (("calls", s["hour_calls"]), ("bytes", s["hour_bytes"]),
                               ("decisions", s["hour_decisions"]), ("denials", s["hour_denials"])):
                if not anomalous[key]:
                    history[key] = (history[key] + [value])[-limit:]
            peaks = s.setdefault("alerted_peaks", {})
            for key, value in (("data_volume:bytes_out", s["hour_bytes"]), ("denial_probing:denials", s["hour_denials"]),
                               *((f"call_rate:{t}", n) for t, n in s["hour_tool_calls"].items())):
                if key in fired:
                    peaks[key] = max(peaks.get(key, 0), value)  # the whole hour's figure, for a later verdict
            for tool in s["tools"]:
                if f"call_rate:{tool}" in fired:
                    continue
                series = history["tools"].get(tool, [])
                history["tools"][tool] = (series + [s["hour_tool_calls"].get(tool, 0)])[-limit:]
            s["hour_of_day"][s["hour"] % 24] += s["hour_calls"]
        s.update(hour=hour, hour_tool_calls={}, hour_calls=0, hour_bytes=0, hour_decisions=0, hour_denials=0,
                 hour_denied_tools={}, hour_reads=0, hour_evidence={}, fired={})
        self._thresholds.clear()
        self._expire_pending(epoch)

    def _expire_pending(self, epoch: float) -> None:
        s = self.state
        for destination, entry in list(s["pending"].items()):
            if epoch - entry["first"] >= self.settings.new_destination_window:
                del s["pending"][destination]
                if destination not in s["flagged_destinations"]:
                    self._learn_destination(destination, entry["first"])  # quiet novelty becomes normal

    def _learn_destination(self, destination: str, epoch: float) -> None:
        known = self.state["destinations"]
        known[destination] = epoch
        while len(known) > MAX_KNOWN_DESTINATIONS:
            known.pop(next(iter(known)))

    def _learn_pair(self, pair: str) -> None:
        pairs = self.state["known_pairs"]
        if pair not in pairs:
            pairs.append(pair)
            del pairs[:-MAX_KNOWN_PAIRS]

    def _evidence(self, key: str, obs: Observation) -> dict:
        entry = self.state["hour_evidence"].setdefault(key, {"records": [], "sessions": [], "events": []})
        _remember(entry, obs)
        return entry

    # -- observing --------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[Finding]:
        s = self.state
        epoch = obs.time.timestamp()
        if s["first_time"] is None:
            s["first_time"] = epoch
        s["last_time"] = max(epoch, s["last_time"] or epoch)
        self._roll(epoch)
        if obs.kind == "call":
            return self._observe_call(obs, epoch)
        if obs.kind == "decision":
            return self._observe_decision(obs)
        return []

    def _observe_call(self, obs: Observation, epoch: float) -> list[Finding]:
        s = self.state
        learning = self.learning
        findings: list[Finding] = []
        s["calls"] += 1
        s["hour_calls"] += 1
        s["hour_bytes"] += obs.bytes_out
        s["hour_tool_calls"][obs.tool] = s["hour_tool_calls"].get(obs.tool, 0) + 1
        if obs.tool not in s["tools"]:
            known = len(s["tools"])
            s["tools"][obs.tool] = epoch
            if not learning:
                findings.append(self._finding(
                    "new_tool", "low", obs.tool, obs,
                    f"{self.name} called {obs.tool} for the first time, after {s['calls'] - 1:,} calls "
                    f"with {known} known tools.",
                    baseline={"known_tools": known, "calls": s["calls"] - 1}, observed={"tool": obs.tool},
                ))
        for destination in obs.destinations:
            findings.extend(self._check_destination(destination, obs, epoch, learning))
        findings.extend(self._check_chain(obs, epoch, learning))
        if not learning:
            findings.extend(self._check_rate(obs))
            findings.extend(self._check_volume(obs))
            if obs.reads:
                findings.extend(self._check_off_hours(obs))
        return findings

    def _observe_decision(self, obs: Observation) -> list[Finding]:
        s = self.state
        s["decisions"] += 1
        s["hour_decisions"] += 1
        if obs.effect != "deny":
            return []
        s["hour_denials"] += 1
        s["hour_denied_tools"][obs.tool] = s["hour_denied_tools"].get(obs.tool, 0) + 1
        evidence = self._evidence("denial_probing", obs)
        if self.learning:
            return []
        denied, decided = s["hour_denials"], s["hour_decisions"]
        tolerance = s["tolerances"].get("denial_probing", 0)
        if denied < max(self.settings.denial_floor, tolerance):
            return []
        history = s["history"]
        past_decisions, past_denials = sum(history["decisions"]), sum(history["denials"])
        ratio = past_denials / past_decisions if past_decisions else 0.0
        chance = stats.denial_surprise(denied, decided, ratio)
        if chance >= self.settings.denial_tail:
            return []
        tools = len(s["hour_denied_tools"])
        return self._once(Finding(
            "denial_probing", "high", "denials", (
                f"{self.name} had {denied} of {decided} decisions denied ({tools} distinct tools) in the hour "
                f"from {_hour_label(s['hour'])} UTC; its baseline denial ratio is {ratio:.1%} over "
                f"{past_decisions:,} decisions, which makes this a 1-in-{_odds(chance)} hour."
            ),
            baseline={"denial_ratio": round(ratio, 5), "decisions": past_decisions, "tail_probability": chance},
            observed={"denied": denied, "decided": decided, "denied_tools": sorted(s["hour_denied_tools"])[:20]},
            time=obs.time, **_lists(evidence),
        ))

    # -- detectors --------------------------------------------------------------------

    def _check_destination(self, destination: str, obs: Observation, epoch: float, learning: bool) -> list[Finding]:
        s = self.state
        if destination in s["destinations"]:
            return []
        if learning:
            self._learn_destination(destination, epoch)
            return []
        pending = s["pending"]
        entry = pending.get(destination)
        if entry is None:
            if len(pending) >= MAX_PENDING_DESTINATIONS:
                return []  # a flood of new destinations is already alerting; do not grow the state
            entry = pending[destination] = {"first": epoch, "calls": 0, "bytes": 0, "records": [], "sessions": [],
                                            "events": []}
        entry["calls"] += 1
        entry["bytes"] += obs.bytes_out
        _remember(entry, obs)
        settings = self.settings
        if entry["calls"] >= settings.new_destination_bulk or entry["bytes"] >= settings.new_destination_bulk_bytes:
            severity = "critical"
        elif entry["calls"] >= settings.new_destination_alert:
            severity = "medium"
        else:
            return []
        flagged = s["flagged_destinations"]
        if RANK[severity] <= RANK.get(flagged.get(destination, ""), -1):
            return []
        flagged[destination] = severity
        minutes = (epoch - entry["first"]) / 60
        days = (s["last_time"] - s["first_time"]) / 86400
        return [Finding(
            "new_destination", severity, destination, (
                f"{self.name} made {entry['calls']} calls ({_bytes(entry['bytes'])} out) to {destination} in "
                f"{minutes:.0f} min, a destination not among the {len(s['destinations'])} it used in "
                f"{days:.1f} days of history."
            ),
            baseline={"known_destinations": len(s["destinations"]), "history_days": round(days, 2),
                      "alert_calls": settings.new_destination_alert, "bulk_calls": settings.new_destination_bulk},
            observed={"destination": destination, "calls": entry["calls"], "bytes": entry["bytes"],
                      "first_call": datetime.fromtimestamp(entry["first"], UTC).isoformat()},
            time=obs.time, **_lists(entry),
        )]

    def _check_chain(self, obs: Observation, epoch: float, learning: bool) -> list[Finding]:
        s = self.state
        chains = s["chains"]
        if obs.sensitive:
            chains.pop(obs.session_id, None)
            chains[obs.session_id] = {"time": epoch, "tool": obs.tool, "record": obs.record_id,
                                      "event": obs.event_id}
            while len(chains) > MAX_TRACKED_SESSIONS:
                chains.pop(next(iter(chains)))
            return []
        read = chains.get(obs.session_id)
        if not obs.destinations or read is None or epoch - read["time"] > self.settings.chain_window:
            return []
        pair = f"{read['tool']}>{obs.tool}"
        new_destinations = [d for d in obs.destinations if d not in s["destinations"]]
        if learning:
            self._learn_pair(pair)
            return []
        if pair in s["known_pairs"]:
            return []  # a workflow it always had (new recipients of it are the new-destination detector's)
        severity = "critical" if new_destinations else "high"
        destination = (new_destinations or obs.destinations)[0]
        why = "a sequence not in its baseline" + (", to a destination it never used" if new_destinations else "")
        finding = Finding(
            "sensitive_then_external", severity, pair, (
                f"{self.name} read sensitive data with {read['tool']} and {epoch - read['time']:.0f} s later sent "
                f"with {obs.tool} to {destination} in session {obs.session_id}: {why} "
                f"({len(s['known_pairs'])} known read-then-send sequences)."
            ),
            baseline={"known_sequences": len(s["known_pairs"]), "window_seconds": self.settings.chain_window},
            observed={"read_tool": read["tool"], "send_tool": obs.tool, "destinations": obs.destinations,
                      "seconds_apart": round(epoch - read["time"], 3)},
            time=obs.time, records=[read["record"], obs.record_id], sessions=[obs.session_id],
            events=[e for e in (read.get("event"), obs.event_id) if e is not None],
        )
        return self._once(finding)

    def _threshold(self, key: str, series: list, *, floor: float, volume: bool = False) -> stats.Threshold:
        threshold = self._thresholds.get(key)
        if threshold is None:
            compute = stats.volume_threshold if volume else stats.count_threshold
            threshold = self._thresholds[key] = compute(series, floor=floor)
        return threshold

    def _check_rate(self, obs: Observation) -> list[Finding]:
        s = self.state
        count = s["hour_tool_calls"][obs.tool]
        evidence = self._evidence(f"call_rate:{obs.tool}", obs)
        # No rate verdict before the agent has a few closed hours: its first hour is not a loop.
        if count < self.settings.rate_floor or len(s["history"]["calls"]) < self.settings.rate_min_hours:
            return []
        series = s["history"]["tools"].get(obs.tool, [])
        threshold = self._threshold(f"tool:{obs.tool}", series, floor=self.settings.rate_floor)
        limit = max(threshold.value, s["tolerances"].get(f"call_rate:{obs.tool}", 0))
        if count < limit:
            return []
        return self._once(Finding(
            "call_rate", "critical" if count >= 4 * limit else "high", obs.tool, (
                f"{self.name} called {obs.tool} {count} times in the hour from {_hour_label(s['hour'])} UTC, above its "
                f"threshold of {math.ceil(limit)} (median {threshold.median:g}/h, MAD {threshold.mad:.1f}, busiest "
                f"hour {threshold.peak:g}, over {threshold.hours} active hours)."
            ),
            baseline={"metric": f"calls of {obs.tool} per hour", **threshold.as_dict(), "threshold": math.ceil(limit)},
            observed={"calls": count, "hour": _hour_label(s["hour"])},
            time=obs.time, **_lists(evidence),
        ))

    def _check_volume(self, obs: Observation) -> list[Finding]:
        if not obs.bytes_out:
            return []
        s = self.state
        evidence = self._evidence("data_volume", obs)
        volume = s["hour_bytes"]
        if volume < self.settings.volume_floor:
            return []
        threshold = self._threshold("bytes", s["history"]["bytes"], floor=self.settings.volume_floor, volume=True)
        limit = max(threshold.value, s["tolerances"].get("data_volume", 0))
        if volume < limit:
            return []
        return self._once(Finding(
            "data_volume", "high", "bytes_out", (
                f"{self.name} sent {_bytes(volume)} in the hour from {_hour_label(s['hour'])} UTC, above its threshold "
                f"of {_bytes(limit)} (median {_bytes(threshold.median)}/h, busiest hour {_bytes(threshold.peak)}, "
                f"over {threshold.hours} active hours)."
            ),
            baseline={"metric": "bytes sent per hour", **threshold.as_dict(), "threshold": int(limit)},
            observed={"bytes": volume, "hour": _hour_label(s["hour"])},
            time=obs.time, **_lists(evidence),
        ))

    def _check_off_hours(self, obs: Observation) -> list[Finding]:
        s = self.state
        hour_of_day = s["hour"] % 24
        if hour_of_day in s["allowed_hours"]:
            return []
        share = stats.hour_share(s["hour_of_day"], hour_of_day)
        if share >= self.settings.off_hours_share:
            return []
        s["hour_reads"] += 1
        evidence = self._evidence("off_hours", obs)
        if s["hour_reads"] < self.settings.off_hours_reads:
            return []
        total = sum(s["hour_of_day"])
        return self._once(Finding(
            "off_hours", "high", f"hour:{hour_of_day:02d}", (
                f"{self.name} made {s['hour_reads']} read calls in the hour from {_hour_label(s['hour'])} UTC, an hour "
                f"of day that held {share:.2%} of its {total:,} past calls."
            ),
            baseline={"hour_share": round(share, 6), "past_calls": total, "share_below": self.settings.off_hours_share},
            observed={"reads": s["hour_reads"], "hour": _hour_label(s["hour"])},
            time=obs.time, **_lists(evidence),
        ))

    def _once(self, finding: Finding) -> list[Finding]:
        """At most one finding per detector and subject per hour, unless its severity rises."""
        fired = self.state["fired"]
        key = f"{finding.detector}:{finding.subject}"
        if RANK[finding.severity] <= fired.get(key, -1):
            return []
        fired[key] = RANK[finding.severity]
        return [finding]

    # -- feedback ---------------------------------------------------------------------

    def accept(self, detector: str, subject: str, observed: dict) -> None:
        """A person marked an alert a false positive: make the same behaviour normal for this agent."""
        s = self.state
        if detector == "new_destination":
            s["flagged_destinations"].pop(subject, None)
            s["pending"].pop(subject, None)
            self._learn_destination(subject, s["last_time"])
        elif detector == "sensitive_then_external":
            self._learn_pair(subject)
            for destination in observed.get("destinations", []):
                if isinstance(destination, str) and destination not in s["destinations"]:
                    self._learn_destination(destination, s["last_time"])
        elif detector in ("call_rate", "data_volume", "denial_probing"):
            # Tolerate the whole alerted hour (not only the count that crossed the threshold), with a margin.
            key, tolerance, figure, current = {
                "call_rate": (f"call_rate:{subject}", f"call_rate:{subject}", "calls",
                              s["hour_tool_calls"].get(subject, 0)),
                "data_volume": ("data_volume:bytes_out", "data_volume", "bytes", s["hour_bytes"]),
                "denial_probing": ("denial_probing:denials", "denial_probing", "denied", s["hour_denials"]),
            }[detector]
            peak = max(_number(observed.get(figure)), s.get("alerted_peaks", {}).get(key, 0), current)
            s["tolerances"][tolerance] = max(s["tolerances"].get(tolerance, 0), peak * 1.25)
        elif detector == "off_hours" and subject.startswith("hour:"):
            hour = int(subject[5:])
            if hour not in s["allowed_hours"]:
                s["allowed_hours"].append(hour)
        self._thresholds.clear()

    def _finding(self, detector, severity, subject, obs, summary, *, baseline, observed) -> Finding:
        return Finding(detector, severity, subject, summary, baseline, observed, obs.time,
                       records=[obs.record_id], sessions=[obs.session_id],
                       events=[obs.event_id] if obs.event_id is not None else [])


def _remember(entry: dict, obs: Observation) -> None:
    if len(entry["records"]) < EVIDENCE_LIMIT:
        entry["records"].append(obs.record_id)
        if obs.event_id is not None:
            entry["events"].append(obs.event_id)
    if obs.session_id not in entry["sessions"] and len(entry["sessions"]) < EVIDENCE_LIMIT:
        entry["sessions"].append(obs.session_id)


def _lists(entry: dict) -> dict:
    return {"records": list(entry["records"]), "sessions": list(entry["sessions"]), "events": list(entry["events"])}


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _odds(probability: float) -> str:
    return f"{1 / probability:.1e}" if probability > 0 else "∞"
