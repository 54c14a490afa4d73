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
"""

from __future__ import annotations

import hashlib

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


def read_archive(members: bytes | memoryview) -> bytes:
    """The complete archive a list of member digests names; MissingMember rather than a
    partial archive, ValueError if a stored member's bytes do not hash to its digest."""
    digests = digests_of(members)
    parts: list[bytes] = []
    for start in range(0, len(digests), _READ_BATCH):
        batch = digests[start:start + _READ_BATCH]
        rows = {digest: bytes(data) for digest, data in
                _member_model().objects.filter(digest__in=set(batch)).values_list("digest", "data")}
        for digest in batch:
            data = rows.get(digest)
            if data is None:
                raise MissingMember(f"archive member {digest} is not stored")
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"archive member {digest} does not match its digest")
            parts.append(data)
    return b"".join(parts)


def archive_of(model: type[Model], pk) -> tuple[bytes, str]:
    """(the complete archive, its ETag) of one Bundle or BundlePart row, read together."""
    stored, members, etag = model._default_manager.values_list("archive", "members", "etag").get(pk=pk)
    return (read_archive(members) if members else bytes(stored)), etag
