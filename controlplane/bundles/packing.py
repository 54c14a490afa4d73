"""A bundle's tar.gz at a cost proportional to what changed since the last build.

A gzip file may hold several members one after the other; every reader of bundles reads
them all (Go's gzip.Reader, which OPA uses, is multistream by default, as are Python's gzip
and tarfile). So the tar stream is compressed in runs: each large, stable run of bytes
(a policy file, a chunk of about CHUNK_AGENTS agents of data.json, see `Chunked`) is
compressed once per process and its member reused while its bytes stay the same; the small
runs between them (tar headers, the manifest, the signatures) are compressed afresh. After
a suspension at 100,000 agents one chunk of data.json is compressed again, not 9 MB.

The uncompressed tar is byte for byte what `tarfile` writes (PAX headers, sorted names,
fixed times and owners, two zero blocks and padding to tarfile's record size).
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# Runs at least this long are cached; shorter runs are joined and compressed each time.
CACHED_RUN_BYTES = 2048
_CACHED_MEMBERS = 50_000


class Chunked(bytes):
    """Bytes that also carry the runs they were joined from (`pieces`), so the packer can
    compress each run once and reuse it. Equal to b"".join(pieces)."""

    pieces: tuple[bytes, ...]

    def __new__(cls, pieces: Iterable[bytes]) -> Chunked:
        kept = tuple(piece for piece in pieces if piece)
        joined = super().__new__(cls, b"".join(kept))
        joined.pieces = kept
        return joined


def cuts_after(key: str, *, every: int) -> bool:
    """Whether a run ends after the entry `key`: about one key in `every`, chosen by the key's
    hash (content-defined), so an entry added or removed changes one run, not every run after it."""
    return hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()[0] * every // 256 == 0


def join_runs(fragments: Iterable[tuple[bytes, bool]]) -> Iterator[bytes]:
    """Encoded entries (in key order, each with cuts_after of its key) joined with commas,
    in runs."""
    run: list[bytes] = []
    first = True
    for fragment, cut in fragments:
        run.append(fragment)
        if cut:
            yield (b"" if first else b",") + b",".join(run)
            first, run = False, []
    if run:
        yield (b"" if first else b",") + b",".join(run)


def chunks_of(fragments: Iterable[tuple[str, bytes]], *, every: int) -> Iterator[bytes]:
    """join_runs of (key, encoded entry) pairs in key order."""
    return join_runs((fragment, cuts_after(key, every=every)) for key, fragment in fragments)


class _Members:
    """Per process: {sha1 of a run: the run as one compressed gzip member}, least recently used out."""

    def __init__(self) -> None:
        self._members: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def member(self, run: bytes, level: int) -> bytes:
        key = hashlib.sha1(run, usedforsecurity=False).digest() + bytes([level])
        with self._lock:
            cached = self._members.get(key)
            if cached is not None:
                self._members.move_to_end(key)
                return cached
        compressed = gzip.compress(run, compresslevel=level, mtime=0)
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


def _runs(files: dict[str, bytes]) -> Iterator[tuple[bytes, bool]]:
    """The tar stream as (run, cacheable) in order."""
    offset = 0
    for name in sorted(files):
        content = files[name]
        header = _header(name, len(content))
        yield header, False
        offset += len(header)
        for piece in getattr(content, "pieces", (content,)):
            yield piece, len(piece) >= CACHED_RUN_BYTES
            offset += len(piece)
        padding = -len(content) % BLOCK
        yield b"\0" * padding, False
        offset += padding
    end = 2 * BLOCK
    end += -(offset + end) % RECORD
    yield b"\0" * end, False


def pack_tar_gz(files: dict[str, bytes], *, level: int) -> bytes:
    """A reproducible tar.gz of `files` (names without the leading slash), as members."""
    out: list[bytes] = []
    fresh: list[bytes] = []
    for run, cacheable in _runs(files):
        if not cacheable:
            fresh.append(run)
            continue
        if fresh:
            out.append(gzip.compress(b"".join(fresh), compresslevel=level, mtime=0))
            fresh = []
        out.append(members.member(run, level))
    if fresh:
        out.append(gzip.compress(b"".join(fresh), compresslevel=level, mtime=0))
    return b"".join(out)
