"""Destinations are read at any depth of a call's arguments (lists, objects), within bounds:
property tests over generated argument shapes."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.detection.engine.features import (
    MAX_DESTINATIONS,
    MAX_WALK_DEPTH,
    destinations_of,
    observation_of,
)

NEUTRAL_KEYS = st.sampled_from(["message", "params", "request", "items", "options", "headers", "x"])
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
domains = st.builds(lambda a, b: f"{a}.{b}.example", labels, labels)

# (arguments with one destination at the top, the destination expected)
direct = st.one_of(
    st.builds(lambda d: ({"url": f"https://{d}/upload"}, f"host:{d}"), domains),
    st.builds(lambda d: ({"to": [f"eve@{d}"]}, f"email:{d}"), domains),
    st.builds(lambda d: ({"recipients": [{"address": f"eve@{d}", "name": "Eve"}]}, f"email:{d}"), domains),
    st.builds(lambda d: ({"webhook": {"method": "POST", "target": f"https://{d}/h"}}, f"host:{d}"), domains),
    st.builds(lambda d: ({"host": d}, f"host:{d}"), domains),
    st.builds(lambda a, b: ({"repository": f"{a}/{b}"}, f"repo:{a}/{b}"), labels, labels),
)


def wrap(value, path):
    """``value`` nested under ``path``: a key (object) or None (a one-item list)."""
    for step in reversed(path):
        value = [value] if step is None else {step: value}
    return value


# The deepest direct case puts its string three levels down ({"recipients": [{"address": …}]}).
paths = st.lists(st.one_of(st.none(), NEUTRAL_KEYS), max_size=MAX_WALK_DEPTH - 3)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(["to", "url", "host", "repo", "cc"])),
                      children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=60, deadline=None)
@given(direct, paths)
def test_a_destination_is_found_at_any_depth_within_the_bound(case, path):
    args, expected = case
    assert destinations_of(args) == [expected]
    assert destinations_of(wrap(args, path)) == [expected]


@settings(max_examples=50, deadline=None)
@given(direct, direct, st.lists(st.one_of(st.none(), NEUTRAL_KEYS), max_size=MAX_WALK_DEPTH - 4))
def test_destinations_next_to_neutral_data_keep_their_order_and_are_not_repeated(first, second, path):
    args = {"a": wrap(first[0], path), "b": [second[0], second[0]], "body": "hello to you"}
    assert destinations_of(args) == list(dict.fromkeys([first[1], second[1]]))


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_any_json_shape_gives_well_formed_bounded_destinations(value):
    found = destinations_of(value if isinstance(value, dict) else {"x": value})
    assert len(found) <= MAX_DESTINATIONS and len(set(found)) == len(found)
    for destination in found:
        kind, _, name = destination.partition(":")
        assert kind in ("host", "email", "repo") and name and name.isprintable()
        assert kind == "repo" or not any(c.isspace() for c in name)


def test_a_destination_nested_past_the_depth_bound_is_not_read():
    args = {"to": ["eve@deep.example"]}
    # the address string sits two levels under its path: the key "to", then the list
    assert destinations_of(wrap(args, ["x"] * (MAX_WALK_DEPTH - 2))) == ["email:deep.example"]
    assert destinations_of(wrap(args, ["x"] * (MAX_WALK_DEPTH - 1))) == []


def test_words_under_a_destination_key_are_not_taken_for_hosts():
    args = {"webhook": {"method": "POST", "retries": "3"}, "host": {"kind": "primary"}, "to": {"name": "Eve"}}
    assert destinations_of(args) == []


def test_huge_and_wide_arguments_are_walked_within_the_item_budget_quickly():
    wide = {"items": [{"to": f"u{i}@d{i}.example"} for i in range(100_000)]}
    started = time.perf_counter()
    found = destinations_of(wide)
    assert len(found) == MAX_DESTINATIONS and time.perf_counter() - started < 0.5
    hidden = {"items": [{"x": "y"}] * 5000 + [{"to": "eve@late.example"}]}
    assert destinations_of(hidden) == []  # past the item budget


def test_an_intent_with_nested_recipients_is_observed_with_them():
    payload = {"tool": "send_email", "args": {"message": {"to": [{"email": "eve@exfil.example"}], "body": "x"}}}
    obs = observation_of(agent="a", kind="intent", payload=payload, tool="send_email", time=None, session_id="s",
                         record_id="r")
    assert obs.destinations == ["email:exfil.example"]
