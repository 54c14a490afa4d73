"""Bundle archives stored as content-addressed gzip members (docs/opa.md, "Bundle layout").

An archive is a run of gzip members (controlplane/bundles/packing.py); most of them are
shared with the archive built before it (every unchanged run of data.json, every policy
file) and between the combined bundle and its registry part. A row keeps its archive as
the list of its members' SHA-256 digests (`Bundle.members`, `BundlePart.members`); each
member is stored once, in `ArchiveMember`, keyed by its digest. So a registry change
writes the members it compressed anew (one run of agents, the headers, manifest and
signatures) and two lists of digests, not two archives of the whole registry.

Why readers can never see a torn archive: a member's bytes never change and are never
deleted, and a row's list of digests is replaced whole in one UPDATE. A reader holding
any list (an instance loaded before a rebuild re-stamped its row, a query racing a
rebuild) reads exactly the archive that list named, complete and signed. Nothing is
remembered per process about which members are stored: a rebuild that rolls back takes
its members with it, and the next build checks the database again.

Serving reads an archive as its members (`ArchiveCache`), never joined: each member is held
once per process however many cached archives list it (the combined bundle and its registry
part, and successive versions of both, share all but a few), a new version reads from the
database only the members it does not share, and the response is written member by member.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from django.db import connection
from django.apps import apps
from django.db.models import Model

from controlplane.bundles.packing import Packed


def _member_model() -> type[Model]:
    # Looked up by name: the models read archives through this module (no import cycle).
    return apps.get_model("bundles", "ArchiveMember")

DIGEST_BYTES = 32
# Members per query, reading an archive: bounds the rows held at once besides the result.
_READ_BATCH = 64
_LOOKUP_BATCH = 1000


class MissingMember(LookupError):
    """An archive lists a member that is not stored (never expected: members are never deleted)."""


def digests_of(members: bytes | memoryview) -> list[str]:
    raw = bytes(members)
    if len(raw) % DIGEST_BYTES:
        raise ValueError(f"a list of member digests is {len(raw)} bytes, not a multiple of {DIGEST_BYTES}")
    return [raw[at:at + DIGEST_BYTES].hex() for at in range(0, len(raw), DIGEST_BYTES)]


def write_members(packed: Packed) -> int:
    """Store the members of `packed` not stored yet, in the caller's transaction; returns
    how many bytes that wrote."""
    by_digest: dict[str, bytes] = {}
    for member, digest in zip(packed.members, packed.digests, strict=True):
        by_digest.setdefault(digest.hex(), member)
    wanted = list(by_digest)
    present: set[str] = set()
    for start in range(0, len(wanted), _LOOKUP_BATCH):
        batch = wanted[start:start + _LOOKUP_BATCH]
        present.update(_member_model().objects.filter(digest__in=batch).values_list("digest", flat=True))
    missing = [(digest, by_digest[digest]) for digest in wanted if digest not in present]
    if not missing:
        return 0
    if connection.vendor == "postgresql":
        import psycopg  # binary parameters: Django's client-side binding would quote the bytes as text

        table = connection.ops.quote_name(_member_model()._meta.db_table)
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            # A concurrent build storing the same member: its row wins, the bytes are the same.
            cursor.executemany(f"INSERT INTO {table} (digest, data) VALUES (%s, %b) ON CONFLICT (digest) DO NOTHING",
                               missing)
    else:
        _member_model().objects.bulk_create([_member_model()(digest=d, data=data) for d, data in missing],
                                          ignore_conflicts=True)
    return sum(len(data) for _, data in missing)


def read_members(members: bytes | memoryview, known: Callable[[str], bytes | None] = lambda digest: None
                 ) -> tuple[bytes, ...]:
    """The members a list of member digests names, in order: those `known(digest)` gives,
    the others read from the database; MissingMember rather than a partial archive,
    ValueError if a stored member's bytes do not hash to its digest."""
    digests = digests_of(members)
    found: dict[str, bytes] = {}
    for digest in digests:
        data = known(digest)
        if data is not None:
            found[digest] = data
    wanted = [digest for digest in dict.fromkeys(digests) if digest not in found]
    for start in range(0, len(wanted), _READ_BATCH):
        batch = wanted[start:start + _READ_BATCH]
        for digest, data in _member_model().objects.filter(digest__in=batch).values_list("digest", "data"):
            data = bytes(data)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"archive member {digest} does not match its digest")
            found[digest] = data
    missing = next((digest for digest in digests if digest not in found), None)
    if missing is not None:
        raise MissingMember(f"archive member {missing} is not stored")
    return tuple(found[digest] for digest in digests)


def read_archive(members: bytes | memoryview) -> bytes:
    """The complete archive a list of member digests names, joined (see read_members)."""
    return b"".join(read_members(members))


def archive_of(model: type[Model], pk) -> tuple[bytes, str]:
    """(the complete archive, its ETag) of one Bundle or BundlePart row, read together."""
    stored, members, etag = model._default_manager.values_list("archive", "members", "etag").get(pk=pk)
    return (read_archive(members) if members else bytes(stored)), etag


def members_of(model: type[Model], pk: object) -> tuple[bytes, bytes, str]:
    """(the list of member digests, the archive stored whole when that list is empty, the
    ETag) of one Bundle or BundlePart row; the digests and the ETag are read together."""
    members, etag = model._default_manager.values_list("members", "etag").get(pk=pk)
    members = bytes(members or b"")
    if members:
        return members, b"", etag
    # Written before members (migration 0005): the only case that reads the column.
    return b"", bytes(model._default_manager.values_list("archive", flat=True).get(pk=pk)), etag


class ArchiveCache:
    """Per process: archives as their members (to be served, never joined), by a key naming
    their bytes (a row and its ETag).

    A member is held once however many cached archives list it, and a new archive reads from
    the database only the members no cached archive holds: after a registry change, the
    runs of data.json it did not touch are already here. Bounded by the bytes of the distinct
    members held and by `max_entries`, least recently used out; the archive just read is
    always kept, even alone beyond `max_bytes` (it is being served)."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._archives: OrderedDict[Hashable, tuple[tuple[str, ...], tuple[bytes, ...]]] = OrderedDict()
        # digest → [member, how many cached archives list it]
        self._members: dict[str, list[Any]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bytes, ...] | None:
        with self._lock:
            entry = self._archives.get(key)
            if entry is None:
                return None
            self._archives.move_to_end(key)
            return entry[1]

    def _known(self, digest: str) -> bytes | None:
        with self._lock:
            held = self._members.get(digest)
        return None if held is None else held[0]

    def load(self, key: Hashable, members: bytes, whole: bytes = b"") -> tuple[bytes, ...]:
        """The archive listed by `members` (or stored `whole`), read as read_members reads
        it and kept under `key`."""
        chunks = read_members(members, self._known) if members else (whole,)
        digests = tuple(digests_of(members)) if members else (f"whole:{key!r}",)
        with self._lock:
            if key in self._archives:
                self._archives.move_to_end(key)
                return self._archives[key][1]
            for digest, chunk in zip(digests, chunks, strict=True):
                held = self._members.get(digest)
                if held is None:
                    self._members[digest] = [chunk, 1]
                    self._bytes += len(chunk)
                else:
                    held[1] += 1
            self._archives[key] = (digests, chunks)
            while len(self._archives) > 1 and (len(self._archives) > self.max_entries or self._bytes > self.max_bytes):
                _, (dropped, _) = self._archives.popitem(last=False)
                for digest in dropped:
                    held = self._members[digest]
                    held[1] -= 1
                    if not held[1]:
                        del self._members[digest]
                        self._bytes -= len(held[0])
            return chunks

    @property
    def held_bytes(self) -> int:
        """The bytes of the distinct members held."""
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._archives.clear()
            self._members.clear()
            self._bytes = 0
