"""The per-process cache of archives served (controlplane/bundles/storage.py, ArchiveCache):
archives kept as their members, each member held once whatever number of archives list it,
bounded by the bytes of those members."""

from __future__ import annotations

import os

import pytest

from controlplane.bundles import packing, storage
from controlplane.bundles.models import ArchiveMember


def _stored(files: dict[str, bytes]) -> packing.Packed:
    packed = packing.pack_members(files, level=6)
    storage.write_members(packed)
    return packed


def _run(seed: int) -> bytes:
    # Incompressible and long enough to be a member of its own (packing.CACHED_RUN_BYTES).
    return os.urandom(4096) + bytes([seed])


def _listing(packed: packing.Packed) -> bytes:
    return b"".join(packed.digests)


def _distinct_bytes(*archives: packing.Packed) -> int:
    """The bytes of the distinct members of `archives` (the tar's end is the same member in many)."""
    distinct = {digest: member for a in archives for digest, member in zip(a.digests, a.members, strict=True)}
    return sum(map(len, distinct.values()))


@pytest.mark.django_db
def test_a_cached_archive_is_its_stored_members_in_order():
    packed = _stored({"a.rego": _run(1), "data.json": _run(2)})
    cache = storage.ArchiveCache(max_entries=4, max_bytes=1 << 20)
    chunks = cache.load("a", _listing(packed))
    assert b"".join(chunks) == packed.joined() == storage.read_archive(_listing(packed))
    assert len(chunks) == len(packed.members) > 2
    assert cache.get("a") == chunks


@pytest.mark.django_db
def test_members_shared_by_archives_are_held_once_and_not_read_again():
    shared = {"a.rego": _run(1), "b.rego": _run(2)}
    first = _stored({**shared, "data.json": _run(3)})
    second = _stored({**shared, "data.json": _run(4)})
    cache = storage.ArchiveCache(max_entries=4, max_bytes=1 << 20)
    cache.load("first", _listing(first))
    # Only what the second archive does not share with the first is still in the database:
    # the cache must take the rest from the archive it holds.
    only_second = {d.hex() for d in second.digests} - {d.hex() for d in first.digests}
    ArchiveMember.objects.exclude(digest__in=only_second).delete()
    chunks = cache.load("second", _listing(second))
    assert b"".join(chunks) == second.joined()
    assert cache.held_bytes == _distinct_bytes(first, second) < first.size + second.size
    with pytest.raises(storage.MissingMember):
        storage.ArchiveCache(max_entries=4, max_bytes=1 << 20).load("second", _listing(second))


@pytest.mark.django_db
def test_the_cache_is_bounded_by_the_bytes_of_its_members_least_recently_used_out():
    archives = [_stored({"data.json": _run(seed) + _run(seed + 100)}) for seed in range(6)]
    size = archives[0].size
    cache = storage.ArchiveCache(max_entries=100, max_bytes=3 * size)
    for index, packed in enumerate(archives[:3]):
        cache.load(index, _listing(packed))
    assert cache.get(0) is not None  # the oldest is now the most recently used
    for index, packed in enumerate(archives[3:], start=3):
        cache.load(index, _listing(packed))
        assert cache.held_bytes <= 3 * size
    assert cache.get(0) is None and cache.get(1) is None and cache.get(2) is None
    assert [cache.get(index) is not None for index in (3, 4, 5)] == [True, True, True]
    assert cache.held_bytes == _distinct_bytes(*archives[3:])


@pytest.mark.django_db
def test_an_archive_beyond_the_bound_is_kept_alone_and_the_bound_is_by_entries_too():
    big = _stored({"data.json": _run(1) + _run(2) + _run(3)})
    small = [_stored({"data.json": _run(seed)}) for seed in range(10, 13)]
    cache = storage.ArchiveCache(max_entries=2, max_bytes=big.size // 2)
    cache.load("small-0", _listing(small[0]))
    chunks = cache.load("big", _listing(big))  # being served: kept, alone
    assert b"".join(chunks) == big.joined() and cache.get("big") == chunks
    assert cache.get("small-0") is None and cache.held_bytes == big.size
    roomy = storage.ArchiveCache(max_entries=2, max_bytes=1 << 30)
    for index, packed in enumerate(small):
        roomy.load(index, _listing(packed))
    assert roomy.get(0) is None and roomy.get(1) is not None and roomy.get(2) is not None
    assert roomy.held_bytes == _distinct_bytes(small[1], small[2])


@pytest.mark.django_db
def test_an_archive_stored_whole_is_cached_as_one_chunk_and_cleared():
    cache = storage.ArchiveCache(max_entries=4, max_bytes=1 << 20)
    whole = packing.pack_tar_gz({"data.json": b"{}"}, level=6)
    assert cache.load("legacy", b"", whole) == (whole,)
    assert cache.held_bytes == len(whole)
    cache.clear()
    assert cache.get("legacy") is None and cache.held_bytes == 0
