"""The split bundle layout: a policy bundle and a registry bundle with disjoint roots.

Every combined bundle (bundles/<env>: modules + data.warden_registry, the layout OPA and
the SDK have always loaded) gets two parts, signed with the same key:

    bundles/<env>/policy    the Rego modules; roots = the modules' packages
    bundles/<env>/registry  data.json alone;  roots = ["warden_registry"]

OPA loads several bundles per instance when their roots do not overlap, so an engine
configured with both (discovery does this with WARDEN_OPA_SPLIT_BUNDLES) downloads only
the registry after a suspension, and its policy bundle keeps its ETag: its long poll stays
held. The policy part is rebuilt only when the policies change; otherwise the active
bundle's part is reused byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.db.models import Model

from controlplane.bundles import archive, storage
from controlplane.bundles.models import Bundle, BundlePart

REGISTRY_ROOT = "warden_registry"


def policy_revision(policy_files: dict[str, str]) -> str:
    return archive.revision_of_hashes({path: archive.file_hash(path, src.encode("utf-8")) for path, src in policy_files.items()})


def copy_legacy_archive(model: type[Model], pk, copy_from: BundlePart) -> None:
    """Copy the whole stored archive of a part written before members (migration 0005)
    inside the database: it is never read back into this process."""
    table = connection.ops.quote_name(model._meta.db_table)
    source = connection.ops.quote_name(BundlePart._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET archive = (SELECT archive FROM {source} WHERE id = %s), members = %s "
                       "WHERE id = %s", [copy_from.pk, b"", pk])


def store_parts(
    bundle: Bundle,
    *,
    policy_files: dict[str, str],
    packages: list[str],
    data_json: bytes | archive.packing.Pieces,
    metadata: dict,
    signer: Callable[[dict, dict], str],
    key_id: str,
    current: Bundle | None,
) -> None:
    """Build (or reuse) and store the policy and registry parts of `bundle`.

    `current` is the environment's active bundle: its policy part is reused when the
    policies did not change, so engines holding it see the same ETag.
    """
    revision = policy_revision(policy_files)
    reused = None
    if current is not None and current.pk != bundle.pk:
        reused = (BundlePart.objects.defer("archive")
                  .filter(bundle=current, kind=BundlePart.Kind.POLICY, revision=revision).first())
    if reused is not None:  # the same bytes and ETag: the same list of members
        fields = {"revision": reused.revision, "etag": reused.etag, "size": reused.size, "manifest": reused.manifest,
                  "members": bytes(reused.members or b"")}
        policy, _ = BundlePart.objects.update_or_create(bundle=bundle, kind=BundlePart.Kind.POLICY,
                                                        defaults={**fields, "archive": b""})
        if not fields["members"]:
            copy_legacy_archive(BundlePart, policy.pk, reused)
    else:
        built = archive.build_archive(
            policy_files=policy_files, data=None, roots=archive.roots_for(packages, []),
            metadata={**metadata, "kind": "policy"}, signer=signer, key_id=key_id,
        )
        _store(bundle, BundlePart.Kind.POLICY, built)
    built = archive.build_archive(
        policy_files={}, data=data_json, roots=[REGISTRY_ROOT],
        metadata={**metadata, "kind": "registry"}, signer=signer, key_id=key_id,
    )
    _store(bundle, BundlePart.Kind.REGISTRY, built, **_changes_since(current, data_json))


def _changes_since(current: Bundle | None, data_json) -> dict:
    """BundlePart.previous_etag and .changes for a registry part of `data_json`, when the
    changes its encode recorded (services.RegistryData) start from `current`'s data."""
    changes = getattr(data_json, "changes", None)
    if current is None or changes is None or changes[0] != current.files.get("data.json"):
        return {}
    previous = BundlePart.objects.filter(bundle=current, kind=BundlePart.Kind.REGISTRY).values_list("etag", flat=True)
    etag = previous.first()
    return {"previous_etag": etag, "changes": changes[1]} if etag else {}


def _store(bundle: Bundle, kind: str, built: archive.BuiltArchive, *, previous_etag: str = "",
           changes: dict | None = None) -> None:
    storage.write_members(built.packed)  # before the row lists them, in the same transaction
    fields = {"revision": built.revision, "etag": built.etag, "archive": b"", "members": built.members,
              "size": built.size, "manifest": built.manifest, "previous_etag": previous_etag, "changes": changes}
    BundlePart.objects.update_or_create(bundle=bundle, kind=kind, defaults=fields)
