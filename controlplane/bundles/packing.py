"""A bundle's tar.gz at a cost proportional to what changed since the last build.

A gzip file may hold several members one after the other; every reader of bundles reads
them all (Go's gzip.Reader, which OPA uses, is multistream by default, as are Python's gzip
and tarfile). So the tar stream is compressed in runs: each large, stable run of bytes
(a policy file, a run of about CHUNK_AGENTS agents of data.json kept by a `RunList`) is
compressed once per process and its member reused while its bytes stay the same; the small
runs between them (tar headers, the manifest, the signatures) are compressed afresh. After
a suspension at 100,000 agents one run of data.json is compressed again, not 9 MB, and a
file made of runs (`Pieces`) is never joined: it is hashed and packed run by run.

The uncompressed tar is byte for byte what `tarfile` writes (PAX headers, sorted names,
fixed times and owners, two zero blocks and padding to tarfile's record size).
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# Runs at least this long are cached; shorter runs are joined and compressed each time.
CACHED_RUN_BYTES = 2048
# Runs that are not `Run`s (policy files): by content hash, per process.
_CACHED_MEMBERS = 2_000


class Run(bytes):
    """A run of a file's bytes that stays the same object while its content does (kept by
    `RunList`): the packer stores its compressed member on it, so an unchanged run is never
    hashed or compressed again, and the member goes away with the run."""

    member: tuple[int, bytes, bytes] | None = None  # (gzip level, the run as one gzip member, its SHA-256)


class Pieces:
    """A file's bytes as the runs they are made of, never joined for a build: the packer
    compresses run by run, and `sha256` resumes from the hash state the previous file of the
    same `lineage` (an environment's data.json) had before the first run that differs, so a
    change near the end of 30 MB rehashes only the bytes after it."""

    __slots__ = ("pieces", "lineage", "_size", "_sha256")

    def __init__(self, pieces: Iterable[bytes], *, lineage: str | None = None) -> None:
        self.pieces = tuple(piece for piece in pieces if piece)
        self.lineage = lineage
        self._size = sum(len(piece) for piece in self.pieces)
        self._sha256: str | None = None

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pieces):
            other = bytes(other)
        return isinstance(other, bytes) and len(other) == self._size and bytes(self) == other

    __hash__ = None  # type: ignore[assignment]

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes (memoized; incremental within a lineage, see the class)."""
        if self._sha256 is None:
            self._sha256 = _hash_states.sha256(self.pieces, self.lineage)
        return self._sha256


class _HashStates:
    """Per process and lineage: the pieces last hashed and the SHA-256 state before each."""

    _LINEAGES = 32

    def __init__(self) -> None:
        self._last: OrderedDict[str, tuple[tuple[bytes, ...], list]] = OrderedDict()
        self._lock = threading.Lock()

    def sha256(self, pieces: tuple[bytes, ...], lineage: str | None) -> str:
        with self._lock:
            old, states = self._last.get(lineage, ((), [hashlib.sha256()])) if lineage else ((), [hashlib.sha256()])
        same = 0
        for before, now in zip(old, pieces):
            if before is not now and before != now:
                break
            same += 1
        kept = states[: same + 1]
        state = kept[-1].copy()
        for piece in pieces[same:]:
            state.update(piece)
            kept.append(state.copy())
        if lineage:
            with self._lock:
                self._last[lineage] = (pieces, kept)
                self._last.move_to_end(lineage)
                while len(self._last) > self._LINEAGES:
                    self._last.popitem(last=False)
        return state.hexdigest()

    def clear(self) -> None:
        with self._lock:
            self._last.clear()


_hash_states = _HashStates()


def cuts_after(key: str, *, every: int) -> bool:
    """Whether a run ends after the entry `key`: about one key in `every`, chosen by the key's
    hash (content-defined), so an entry added or removed changes one run, not every run after it."""
    return hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()[0] * every // 256 == 0


class RunList:
    """Entries (key → encoded fragment) in key order, joined by commas in runs that end after
    the keys `cuts_after` chooses: the `pieces` of a JSON object's members.

    `update` rebuilds only the runs that hold a changed key, and the run after each (an
    added or removed cut key splits or merges them), so one change costs one run of work and
    every other run stays the same `Run` object, with its compressed member. A run's
    fragments are sliced back out of it by their lengths: they are not kept twice."""

    def __init__(self, *, every: int) -> None:
        self.every = every
        self.runs: list[Run] = []
        self._keys: list[tuple[str, ...]] = []  # per run, its keys in order
        self._sizes: list[tuple[int, ...]] = []  # per run, each fragment's length
        self._firsts: list[str] = []

    @property
    def pieces(self) -> list[bytes]:
        return [b"{", *self.runs, b"}"]

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys)

    def _fragments(self, index: int) -> dict[str, bytes]:
        run = self.runs[index]
        at = 1 if run[:1] == b"," else 0  # a fragment starts with the key's quote, never a comma
        fragments = {}
        for key, size in zip(self._keys[index], self._sizes[index]):
            fragments[key] = bytes(run[at:at + size])
            at += size + 1
        return fragments

    def _index(self, key: str) -> int:
        return max(bisect.bisect_right(self._firsts, key) - 1, 0)

    def get(self, key: str) -> bytes | None:
        if not self.runs:
            return None
        return self._fragments(self._index(key)).get(key)

    def _split(self, items: Iterable[tuple[str, bytes]]) -> Iterator[tuple[tuple[str, ...], tuple[int, ...], Run]]:
        keys: list[str] = []
        fragments: list[bytes] = []
        for key, fragment in items:
            keys.append(key)
            fragments.append(fragment)
            if cuts_after(key, every=self.every):
                yield tuple(keys), tuple(map(len, fragments)), Run(b"," + b",".join(fragments))
                keys, fragments = [], []
        if keys:
            yield tuple(keys), tuple(map(len, fragments)), Run(b"," + b",".join(fragments))

    def build(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Replace every entry with `items`, in strictly increasing key order, consumed as they
        come: one run's fragments in memory at a time (a cold encode of 100,000 agents)."""
        runs: list[Run] = []
        keys: list[tuple[str, ...]] = []
        sizes: list[tuple[int, ...]] = []
        last: str | None = None

        def ordered() -> Iterator[tuple[str, bytes]]:
            nonlocal last
            for key, fragment in items:
                if last is not None and key <= last:
                    raise ValueError(f"entries out of order: {key!r} after {last!r}")
                last = key
                yield key, fragment

        for run_keys, run_sizes, run in self._split(ordered()):
            keys.append(run_keys)
            sizes.append(run_sizes)
            runs.append(run)
        if runs:
            runs[0] = Run(runs[0][1:])  # the object's first member has no comma before it
        self.runs, self._keys, self._sizes = runs, keys, sizes
        self._firsts = [run_keys[0] for run_keys in keys]

    def update(self, changes: dict[str, bytes | None]) -> dict[str, tuple[bytes | None, bytes | None]]:
        """Set (or, for None, remove) these entries; returns {key: (old, new)} of the
        entries whose bytes changed."""
        if not changes:
            return {}
        by_run: dict[int, dict[str, bytes | None]] = {}
        for key, fragment in changes.items():
            by_run.setdefault(self._index(key) if self.runs else 0, {})[key] = fragment
        affected = sorted({i for index in by_run for i in (index, index + 1) if i < len(self.runs)} or {0})
        blocks: list[list[int]] = []
        for index in affected:
            if blocks and blocks[-1][1] == index:
                blocks[-1][1] = index + 1
            else:
                blocks.append([index, index + 1])
        runs: list[Run] = []
        keys: list[tuple[str, ...]] = []
        sizes: list[tuple[int, ...]] = []
        changed: dict[str, tuple[bytes | None, bytes | None]] = {}
        done = 0
        for start, stop in blocks:
            runs += self.runs[done:start]
            keys += self._keys[done:start]
            sizes += self._sizes[done:start]
            entries: dict[str, bytes] = {}
            for index in range(start, min(stop, len(self.runs))):
                entries.update(self._fragments(index))
            for index in range(start, stop):
                for key, fragment in by_run.get(index, {}).items():
                    old = entries.pop(key, None)
                    if fragment is not None:
                        entries[key] = fragment
                    if old != fragment:
                        changed[key] = (old, fragment)
            # A run the change did not touch (the one after a changed run, usually) stays the same object.
            previous = {self._keys[index]: self.runs[index] for index in range(start, min(stop, len(self.runs)))}
            for run_keys, run_sizes, run in self._split(sorted(entries.items())):
                kept = previous.get(run_keys)
                keys.append(run_keys)
                sizes.append(run_sizes)
                runs.append(kept if kept is not None and kept == run else run)
            done = max(stop, done)
        runs += self.runs[done:]
        keys += self._keys[done:]
        sizes += self._sizes[done:]
        if runs and runs[0][:1] == b",":  # the object's first member has no comma before it
            runs[0] = Run(runs[0][1:])
        self.runs, self._keys, self._sizes = runs, keys, sizes
        self._firsts = [run_keys[0] for run_keys in keys]
        return changed


class _Members:
    """Per process: {sha1 of a run: (the run as one gzip member, its SHA-256)}, least recently used out."""

    def __init__(self) -> None:
        self._members: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def member(self, run: bytes, level: int) -> tuple[bytes, bytes]:
        key = hashlib.sha1(run, usedforsecurity=False).digest() + bytes([level])
        with self._lock:
            cached = self._members.get(key)
            if cached is not None:
                self._members.move_to_end(key)
                return cached
        compressed = _compress(run, level)
        with self._lock:
            self._members[key] = compressed
            while len(self._members) > _CACHED_MEMBERS:
                self._members.popitem(last=False)
        return compressed

    def clear(self) -> None:
        with self._lock:
            self._members.clear()


members = _Members()


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name="/" + name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _runs(files: Mapping[str, bytes | Pieces]) -> Iterator[tuple[bytes, bool]]:
    """The tar stream as (run, cacheable) in order."""
    offset = 0
    for name in sorted(files):
        content = files[name]
        header = _header(name, len(content))
        yield header, False
        offset += len(header)
        pieces: Iterable[bytes] = content.pieces if isinstance(content, Pieces) else (content,)
        for piece in pieces:
            yield piece, len(piece) >= CACHED_RUN_BYTES
            offset += len(piece)
        padding = -len(content) % BLOCK
        yield b"\0" * padding, False
        offset += padding
    end = 2 * BLOCK
    end += -(offset + end) % RECORD
    yield b"\0" * end, False


def _compress(run: bytes, level: int) -> tuple[bytes, bytes]:
    member = gzip.compress(run, compresslevel=level, mtime=0)
    return member, hashlib.sha256(member).digest()


def _member(run: bytes, level: int) -> tuple[bytes, bytes]:
    if isinstance(run, Run):
        if run.member is None or run.member[0] != level:
            run.member = (level, *_compress(run, level))
        return run.member[1:]
    return members.member(run, level)


class Packed(NamedTuple):
    """An archive as its gzip members (each a complete gzip file, most shared with earlier
    archives: never joined here) and the SHA-256 of each member."""

    members: tuple[bytes, ...]
    digests: tuple[bytes, ...]

    @property
    def digest(self) -> str:
        """The SHA-256 of the members' SHA-256s: names these bytes as well as a hash of the
        whole archive would (the packer is deterministic), hashing only the members
        compressed now."""
        return hashlib.sha256(b"".join(self.digests)).hexdigest()

    @property
    def size(self) -> int:
        return sum(len(member) for member in self.members)

    def joined(self) -> bytes:
        return b"".join(self.members)


def pack_members(files: Mapping[str, bytes | Pieces], *, level: int) -> Packed:
    """A reproducible tar.gz of `files` (names without the leading slash), as members."""
    out: list[bytes] = []
    digests: list[bytes] = []
    fresh: list[bytes] = []

    def flush() -> None:
        member, digest = _compress(b"".join(fresh), level)
        out.append(member)
        digests.append(digest)
        fresh.clear()

    for run, cacheable in _runs(files):
        if not cacheable:
            fresh.append(run)
            continue
        if fresh:
            flush()
        member, digest = _member(run, level)
        out.append(member)
        digests.append(digest)
    if fresh:
        flush()
    return Packed(tuple(out), tuple(digests))


def pack(files: dict[str, bytes | Pieces], *, level: int) -> tuple[bytes, str]:
    """The archive of `pack_members`, joined, and its digest (`Packed.digest`)."""
    packed = pack_members(files, level=level)
    return packed.joined(), packed.digest


def pack_tar_gz(files: dict[str, bytes | Pieces], *, level: int) -> bytes:
    """The archive of `pack`."""
    return pack_members(files, level=level).joined()
