"""Delta bundles for the registry part (OPA's delta bundles, docs/opa.md "Delta bundles").

A poll of `bundles/<env>/registry?delta=1` whose `Prefer` lists `delta` and whose
If-None-Match names one of the environment's last DELTA_WINDOW registry parts is answered
with a delta bundle: `/.manifest` (the target part's manifest: same roots, the new revision
and metadata) and `/patch.json` (`{"data": [ops]}`, OPA's `upsert`/`remove` operations on
the agents and keys that changed), signed like a snapshot (`.signatures.json` over both
files; stock OPA ignores signatures on deltas, the SDK verifies them), with the target
part's ETag. Anything else gets the snapshot, as before.

Why an explicit `?delta=1`: OPA sends `Prefer: modes=snapshot,delta` on every long poll,
but refuses to activate a delta when the bundle has `persist: true`, so only a downloader
configured for deltas (persist off) may receive them.

The patch is computed once per (from, to) pair per process (every poller holding the
previous snapshot shares it):

- from what the builds recorded on the registry parts (BundlePart.previous_etag / changes:
  the agents and delegation keys that changed and their new entries), composed along the
  chain of parts from the one the poller holds to the active one: nothing is read or
  decoded, not even the snapshot;
- when a link recorded nothing (built by a process that had not encoded the registry
  before): the two snapshots' texts are compared entry by entry between their common
  prefix and suffix (`TextIndex`), so a suspension decodes one agent, not 100,000;
- otherwise (a change outside the agents object): both parts' data are decoded and diffed.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # C-accelerated, public since 2.6
from typing import Any

from agents_sdk.bundles.format import MANIFEST_FILE, canonical_json
from controlplane.bundles import archive as bundle_archive
from controlplane.bundles import storage
from controlplane.bundles.patches import DIFF_DEPTH, diff, pointer
from controlplane.bundles.models import Bundle, BundleActivation, BundlePart
from controlplane.bundles.signing import private_key_pem
from controlplane.opa import selectors

# Registry parts back from the active one a delta is served from (older: a snapshot).
DELTA_WINDOW = 32
# A delta larger than this share of the snapshot's data.json is not worth it: the snapshot.
MAX_DELTA_SHARE = 0.5
_CACHE_ENTRIES = 64

_deltas: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
_lock = threading.Lock()
_decoder = json.JSONDecoder()
# Canonical JSON (sorted keys) of {"warden_registry": {"agents": {...}, ...}}: "agents" sorts first.
AGENTS_START = '{"warden_registry":{"agents":{'


@dataclass(frozen=True)
class TextIndex:
    """A registry part's data.json text and where each agent entry starts in it (the last
    offset is the agents object's closing brace)."""

    etag: str
    text: str
    offsets: list[int]


def index_text(etag: str, text: str) -> TextIndex | None:
    """Scan the agents object of `text` entry by entry (None if it is not laid out as Warden writes it)."""
    if not text.startswith(AGENTS_START):
        return None
    offsets, at = [], len(AGENTS_START)
    if text[at] != "}":
        while True:
            offsets.append(at)
            at = _entry_end(text, at)
            if text[at] == "}":
                break
            at += 1  # the comma
    offsets.append(at)
    return TextIndex(etag, text, offsets)


def _entry_end(text: str, at: int) -> int:
    """The end of the `"name":{facts}` entry starting at `at`."""
    _, at = scanstring(text, at + 1)
    _, at = _decoder.raw_decode(text, at + 1)
    return at


def _entries(text: str, start: int, stop: int) -> tuple[dict[str, Any], list[int]]:
    """The agent entries from `start` to exactly `stop` (entry boundaries of `text`), and
    where each starts; ValueError when `stop` is not where an entry ends."""
    entries, offsets, at = {}, [], start
    while at < stop:
        offsets.append(at)
        name, value_at = scanstring(text, at + 1)
        entries[name], at = _decoder.raw_decode(text, value_at + 1)
        if text[at] == ",":
            at += 1
    if at != stop:
        raise ValueError("the changed text does not end at an entry boundary")
    return entries, offsets


def _common_prefix(a: str, b: str, limit: int) -> int:
    low, step = 0, 1 << 16
    while low + step <= limit and a[low : low + step] == b[low : low + step]:
        low += step
    high = min(low + step, limit)
    while low < high:  # the first differing index lies in [low, high]
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    end_a, end_b = len(a), len(b)
    low, step = 0, 1 << 16
    while low + step <= limit and a[end_a - low - step : end_a - low] == b[end_b - low - step : end_b - low]:
        low += step
    high = min(low + step, limit)
    while low < high:  # as _common_prefix, from the end
        middle = (low + high + 1) // 2
        if a[end_a - middle : end_a - low] == b[end_b - middle : end_b - low]:
            low = middle
        else:
            high = middle - 1
    return low


def text_patch(old: TextIndex, new_etag: str, new_text: str) -> tuple[list[dict], TextIndex] | None:
    """The ops from `old` to `new_text` and the index of `new_text`, decoding only the agent
    entries between their common prefix and suffix; None when the change is not confined to
    the agents object (the caller then diffs the decoded data)."""
    a, b = old.text, new_text
    if not b.startswith(AGENTS_START) or a == b:
        return None
    prefix = _common_prefix(a, b, min(len(a), len(b)))
    suffix = _common_suffix(a, b, min(len(a), len(b)) - prefix)
    offsets, shift = old.offsets, len(b) - len(a)
    if len(offsets) < 2 or prefix < len(AGENTS_START) or len(a) - suffix > offsets[-1]:
        return None  # no agents to anchor on, or something before or after the agents object changed
    # Old entries [first, last) hold every changed byte: those ending after the prefix and
    # starting before the suffix; the rest are byte for byte the same in both texts. A change
    # at the closing brace (an agent appended) starts in the last entry.
    first = min(bisect.bisect_right(offsets, prefix) - 1, len(offsets) - 2)
    last = bisect.bisect_left(offsets, len(a) - suffix, lo=first)
    last = min(max(last, first + 1), len(offsets) - 1)
    start, old_stop = offsets[first], offsets[last]
    new_stop = old_stop + shift
    try:
        before, _ = _entries(a, start, old_stop)
        after, new_offsets = _entries(b, start, new_stop)
    except (ValueError, IndexError):
        return None
    ops = diff(before, after, ["warden_registry", "agents"], DIFF_DEPTH - 2)
    index = TextIndex(new_etag, b, offsets[:first] + new_offsets + [o + shift for o in offsets[last:]])
    return ops, index


def wants_delta(prefer: str | None, query_string: str) -> bool:
    """The downloader opted in (`delta=1` in the resource) and accepts deltas (`Prefer`)."""
    if not prefer or "delta" not in prefer.lower():
        return False
    return any(pair in ("delta=1", "delta=true") for pair in query_string.split("&"))


def _files(archive: bytes) -> dict[str, bytes]:
    return bundle_archive.read_tar_gz(archive, max_bytes=1 << 30)


def delta_archive(environment_name: str, from_etag: str, to_part_id: str, to_etag: str) -> bytes | None:
    """The signed delta bundle from the registry part with ETag `from_etag` to the active
    one, or None when a snapshot must be sent (not in the window, nothing to patch, or the
    patch is not much smaller). Reads the snapshot only when the builds did not record what
    changed. Runs in a database thread."""
    key = (from_etag, to_etag)
    with _lock:
        if key in _deltas:
            _deltas.move_to_end(key)
            return _deltas[key]
    built = _build(environment_name, from_etag, int(to_part_id.removeprefix("part:")), to_etag)
    with _lock:
        _deltas[key] = built
        while len(_deltas) > _CACHE_ENTRIES:
            _deltas.popitem(last=False)
    return built


def recorded_changes(parts: dict[str, tuple[str, dict | None]], from_etag: str, to_etag: str) -> dict | None:
    """What changed from the registry part `from_etag` to `to_etag`, composed from what each
    build recorded (`parts`: {etag: (previous_etag, changes)}, the window's registry parts),
    later changes over earlier ones; None when a link of the chain recorded nothing."""
    chain: list[dict] = []
    etag, seen = to_etag, set()
    while etag != from_etag:
        if etag in seen or etag not in parts:
            return None
        seen.add(etag)
        previous, changes = parts[etag]
        if not previous or changes is None or changes.get("rest", True):
            return None
        chain.append(changes)
        etag = previous
    composed: dict = {"agents": {}, "keys": {}, "rest": False, "ops": []}
    for changes in reversed(chain):
        for section in ("agents", "keys"):
            composed[section].update(changes.get(section) or {})
        composed["ops"] += changes.get("ops") or []  # ops outside the entries, in order
    return composed


def _build(environment_name: str, from_etag: str, to_part_id: int, to_etag: str) -> bytes | None:
    recent = list(
        BundleActivation.objects.filter(environment__name=environment_name)
        .order_by("-activated_at", "-id")
        .values_list("bundle_id", flat=True)[:DELTA_WINDOW]
    )
    window = {
        etag: (previous, changes)
        for etag, previous, changes in BundlePart.objects.filter(kind=BundlePart.Kind.REGISTRY, bundle_id__in=recent)
        .values_list("etag", "previous_etag", "changes")
    }
    if from_etag not in window:
        return None
    size, manifest = BundlePart.objects.values_list("size", "manifest").get(pk=to_part_id)
    changes = recorded_changes(window, from_etag, to_etag)
    if changes is not None:
        # The builds recorded what changed since the part the poller holds: no decoding at all.
        ops = recorded_ops(changes)
        patch = canonical_json({"data": ops})
        if not ops or len(patch) > size:  # larger than the compressed snapshot: send that
            return None
        return _signed(to_part_id, {MANIFEST_FILE: canonical_json(manifest), "patch.json": patch})
    # Nothing recorded (a link built by a process that had not encoded the registry before):
    # compare the two snapshots' texts entry by entry between their common prefix and suffix;
    # decoding both whole held hundreds of MB of Python objects at 100,000 agents.
    new_files = _files(selectors.bundle_archive(f"part:{to_part_id}", to_etag))
    manifest_json, new_text = new_files[MANIFEST_FILE], new_files.pop("data.json", b"{}").decode("utf-8")
    del new_files
    source = BundlePart.objects.filter(kind=BundlePart.Kind.REGISTRY, etag=from_etag, bundle_id__in=recent)
    old_text = _files(storage.archive_of(BundlePart, source.values_list("pk", flat=True).first())[0]).get(
        "data.json", b"{}").decode("utf-8")
    old_index = index_text(from_etag, old_text)
    patched = text_patch(old_index, to_etag, new_text) if old_index is not None else None
    del old_index
    ops = patched[0] if patched is not None else diff(json.loads(old_text), json.loads(new_text))
    if not ops:
        return None  # an empty patch would be a snapshot erasing the data (OPA's Bundle.Type)
    patch = canonical_json({"data": ops})
    if len(patch) > MAX_DELTA_SHARE * len(new_text):
        return None
    return _signed(to_part_id, {MANIFEST_FILE: manifest_json, "patch.json": patch})


def recorded_ops(changes: dict) -> list[dict]:
    """OPA patch operations from what the build recorded on a registry part
    (BundlePart.changes: {"agents": {name: facts JSON text or None}, "keys": {...}})."""
    # Ops outside the agents and keys first (they never land on those objects), then the entries.
    ops: list[dict] = list(changes.get("ops") or [])
    for section, path in (
        ("agents", ["warden_registry", "agents"]),
        ("keys", ["warden_registry", "delegation", "keys"]),
    ):
        for name, value in sorted((changes.get(section) or {}).items()):
            if value is None:
                ops.append({"op": "remove", "path": pointer([*path, name])})
            else:
                ops.append({"op": "upsert", "path": pointer([*path, name]), "value": json.loads(value)})
    return ops


def _signed(to_part_id: int, files: dict[str, bytes]) -> bytes:
    """Sign with the key that signed the target snapshot, as build_archive signs."""
    bundle = Bundle.objects.select_related("signing_key").get(parts__id=to_part_id)
    key = bundle.signing_key
    pem = private_key_pem(key)
    payload = {
        "files": [
            {"name": name, "hash": bundle_archive.file_hash(name, content), "algorithm": bundle_archive.HASH_ALGORITHM}
            for name, content in sorted(files.items())
        ],
        "iss": "warden",
    }
    jws = bundle_archive.sign_rs256({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, payload, pem)
    return bundle_archive.pack_tar_gz({**files, ".signatures.json": canonical_json({"signatures": [jws]})})


def forget_cached_deltas() -> None:
    with _lock:
        _deltas.clear()
