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

from controlplane.bundles import archive
from controlplane.bundles.models import Bundle, BundlePart

REGISTRY_ROOT = "warden_registry"


def policy_revision(policy_files: dict[str, str]) -> str:
    return archive.revision_of_hashes({path: archive.file_hash(path, src.encode("utf-8")) for path, src in policy_files.items()})


def store_parts(
    bundle: Bundle,
    *,
    policy_files: dict[str, str],
    packages: list[str],
    data_json: bytes,
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
        reused = BundlePart.objects.filter(bundle=current, kind=BundlePart.Kind.POLICY, revision=revision).first()
    if reused is not None:
        policy = {"revision": reused.revision, "etag": reused.etag, "archive": bytes(reused.archive),
                  "size": reused.size, "manifest": reused.manifest}
    else:
        built = archive.build_archive(
            policy_files=policy_files, data=None, roots=archive.roots_for(packages, []),
            metadata={**metadata, "kind": "policy"}, signer=signer, key_id=key_id,
        )
        policy = _fields(built)
    BundlePart.objects.update_or_create(bundle=bundle, kind=BundlePart.Kind.POLICY, defaults=policy)
    built = archive.build_archive(
        policy_files={}, data=data_json, roots=[REGISTRY_ROOT],
        metadata={**metadata, "kind": "registry"}, signer=signer, key_id=key_id,
    )
    BundlePart.objects.update_or_create(bundle=bundle, kind=BundlePart.Kind.REGISTRY, defaults=_fields(built))


def _fields(built: archive.BuiltArchive) -> dict:
    return {"revision": built.revision, "etag": built.etag, "archive": built.archive, "size": len(built.archive),
            "manifest": built.manifest}
