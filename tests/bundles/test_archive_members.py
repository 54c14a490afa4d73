"""Archives stored as content-addressed gzip members (controlplane/bundles/storage.py): a
registry change writes only the members it compressed anew, and every reader gets a
complete archive, whatever it held before a rebuild (a Bundle instance loaded before a
suspend and resume re-stamped its row, a build rolled back, two builds at once)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.db.models.functions import Length

from controlplane.bundles import archive, packing, registry, services, storage
from controlplane.bundles.models import ArchiveMember, Bundle, BundlePart, Environment
from controlplane.bundles.signing import active_signing_key
from controlplane.changelog.models import ChangeAction
from controlplane.identity import services as identity_services
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory
from tests.opa.opa_client import verify_bundle

# A policy file long enough to be a member of its own (packing.CACHED_RUN_BYTES).
POLICIES = {"warden/killswitch.rego": (
    "package warden.killswitch\n\n"
    "default active := false\n\n"
    "active if data.warden_registry.agents[input.agent.name].status == \"active\"\n"
    + "# padding so the file is a gzip member of its own\n" * 60
)}


def _publish(env, by):
    return services.activate_bundle(
        env, services.build_bundle(env, policy_files=POLICIES, by=by, reason="test"), by=by,
        action=ChangeAction.ACTIVATE,
    )


def _verified(blob: bytes):
    key = active_signing_key()
    return verify_bundle(bytes(blob), public_key_pem=key.public_key_pem, keyid=key.kid)


def _member_bytes() -> int:
    return ArchiveMember.objects.aggregate(total=Sum(Length("data")))["total"] or 0


def _status(blob: bytes, agent: str) -> str:
    return _verified(blob).data["warden_registry"]["agents"][agent]["status"]


@pytest.mark.django_db
def test_a_registry_change_writes_only_the_members_it_compressed(admin_user, monkeypatch):
    monkeypatch.setattr(registry, "CHUNK_AGENTS", 32)  # many runs at 1,200 agents
    registry.agents_json.clear()
    dev = environment("dev", by=admin_user)
    AgentFactory.create_batch(1200, environments=["dev"])
    victim = AgentFactory(name="mm-victim-bot", environments=["dev"])
    _publish(dev, admin_user)
    written_before = _member_bytes()
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    written = _member_bytes() - written_before
    active = Environment.objects.get(pk=dev.pk).active_bundle
    part = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.REGISTRY)
    assert _status(active.archive, victim.name) == _status(part.archive, victim.name) == "suspended"
    # Before: the combined bundle and the registry part were each written whole.
    assert 2 * written < part.size, (active.size, part.size, written)
    assert bytes(Bundle.objects.values_list("archive", flat=True).get(pk=active.pk)) == b""  # nothing stored whole
    # The combined bundle lists the registry part's data.json members instead of copies.
    shared = set(storage.digests_of(active.members)) & set(storage.digests_of(part.members))
    assert sum(len(m.data) for m in ArchiveMember.objects.filter(digest__in=shared)) > part.size * 0.6


@pytest.mark.django_db
def test_an_instance_loaded_before_a_suspend_and_resume_still_reads_a_complete_archive(admin_user):
    """The case that broke the earlier splice (tests/compliance/test_review_classes.py::
    test_kill_switch_counts_only_this_environments_agents): a resume rebuilds the content
    before the suspension, so the same Bundle row (and its parts) is re-stamped in place,
    while an instance loaded earlier still holds the row as it was."""
    dev = environment("dev", by=admin_user)
    agent = AgentFactory(name="drill-bot", environments=["dev"])
    AgentFactory.create_batch(20, environments=["dev"])
    published = _publish(dev, admin_user)
    stale = Environment.objects.get(pk=dev.pk).active_bundle  # archive not read yet
    stale_part = BundlePart.objects.get(bundle=published, kind=BundlePart.Kind.REGISTRY)
    identity_services.suspend_agent(agent, by=admin_user, reason="drill")
    identity_services.resume_agent(agent, by=admin_user, reason="drill over")
    fresh = Environment.objects.get(pk=dev.pk).active_bundle
    assert fresh.pk == stale.pk and fresh.etag != stale.etag, "the resume must re-stamp the same row"
    # The instance loaded before reads the archive its row listed then: whole, signed, valid.
    old = _verified(stale.archive)
    assert old.manifest == stale.manifest and _status(stale.archive, agent.name) == "active"
    assert _status(stale_part.archive, agent.name) == "active"
    new = _verified(fresh.archive)
    assert new.manifest["metadata"]["warden"]["built_at"] > old.manifest["metadata"]["warden"]["built_at"]
    assert archive.read_tar_gz(bytes(fresh.archive))["data.json"] == old.files["data.json"]


@pytest.mark.django_db
def test_a_build_rolled_back_leaves_no_member_a_later_archive_relies_on(admin_user):
    dev = environment("dev", by=admin_user)
    agent = AgentFactory(name="rollback-bot", environments=["dev"])
    AgentFactory.create_batch(30, environments=["dev"])
    _publish(dev, admin_user)
    with pytest.raises(RuntimeError), transaction.atomic():
        identity_services.suspend_agent(agent, by=admin_user, reason="rolled back")
        compressed = Environment.objects.get(pk=dev.pk).active_bundle.members
        raise RuntimeError("the request failed after the rebuild")
    listed = set(storage.digests_of(compressed))
    gone = listed - set(ArchiveMember.objects.filter(digest__in=listed).values_list("digest", flat=True))
    assert gone, "the rollback must take the members it wrote with it"
    # This process still holds the runs it compressed; the next build must store them again.
    identity_services.suspend_agent(agent, by=admin_user, reason="for real")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    reused = gone & set(storage.digests_of(active.members))
    assert reused, "the changed run's member, compressed before the rollback, is listed again"
    assert ArchiveMember.objects.filter(digest__in=reused).count() == len(reused)
    assert _status(active.archive, agent.name) == "suspended"


@pytest.mark.django_db
def test_an_archive_missing_a_member_is_refused_never_served_in_part(admin_user):
    dev = environment("dev", by=admin_user)
    bundle = _publish(dev, admin_user)
    first = storage.digests_of(bundle.members)[0]
    ArchiveMember.objects.filter(digest=first).delete()
    with pytest.raises(storage.MissingMember, match=first):
        storage.archive_of(Bundle, bundle.pk)


@pytest.mark.django_db
def test_an_archive_stored_whole_before_members_is_read_and_its_policy_part_reused(admin_user):
    dev = environment("dev", by=admin_user)
    agent = AgentFactory(name="legacy-bot", environments=["dev"])
    bundle = _publish(dev, admin_user)
    policy = BundlePart.objects.get(bundle=bundle, kind=BundlePart.Kind.POLICY)
    whole, policy_whole = bytes(bundle.archive), bytes(policy.archive)
    Bundle.objects.filter(pk=bundle.pk).update(archive=whole, members=b"")  # as migration 0005 left it
    BundlePart.objects.filter(pk=policy.pk).update(archive=policy_whole, members=b"")
    assert storage.archive_of(Bundle, bundle.pk) == (whole, bundle.etag)
    assert bytes(Bundle.objects.get(pk=bundle.pk).archive) == whole
    identity_services.suspend_agent(agent, by=admin_user, reason="leaked key")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    copied = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.POLICY)
    assert bytes(copied.archive) == policy_whole and copied.etag == policy.etag


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_two_transactions_storing_the_same_members_at_once_both_succeed(first_ends):
    """The second insert of a member waits for the first transaction: after its commit it
    stores nothing, after its rollback it stores the member itself. Either way the member is
    there once, for every archive that lists it."""
    packed = packing.pack_members({"warden/a.rego": b"package warden.a\n" + b"# shared\n" * 400}, level=6)
    inserted, waiting = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first():
        try:
            with transaction.atomic():
                storage.write_members(packed)
                inserted.set()
                waiting.wait(10)
                threading.Event().wait(0.5)  # let the second reach its insert and block on ours
                if first_ends == "rollback":
                    transaction.set_rollback(True)
        except Exception as exc:  # noqa: BLE001  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def second():
        try:
            inserted.wait(10)
            with transaction.atomic():
                waiting.set()
                storage.write_members(packed)
        except Exception as exc:  # noqa: BLE001  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    digests = [digest.hex() for digest in packed.digests]
    assert ArchiveMember.objects.filter(digest__in=digests).count() == len(set(digests))
    assert storage.read_archive(b"".join(packed.digests)) == packed.joined()


@pytest.mark.django_db(transaction=True)
def test_concurrent_suspensions_in_one_environment_each_leave_a_complete_archive(admin_user):
    dev = environment("dev", by=admin_user)
    agents = [AgentFactory(name=f"racer-{i}", environments=["dev"]) for i in range(4)]
    AgentFactory.create_batch(40, environments=["dev"])
    with transaction.atomic():
        _publish(dev, admin_user)
    errors: list[BaseException] = []
    start = threading.Barrier(len(agents), timeout=30)

    def suspend(agent):
        try:
            start.wait()
            identity_services.suspend_agent(agent, by=admin_user, reason="race")
        except Exception as exc:  # noqa: BLE001  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=suspend, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    services.refresh_all_environments(reason="settle")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    for agent in agents:
        assert _status(active.archive, agent.name) == "suspended"
    for bundle in Bundle.objects.filter(environment=dev):
        _verified(bundle.archive)
        for part in bundle.parts.all():
            _verified(part.archive)
    packing.members.clear()
