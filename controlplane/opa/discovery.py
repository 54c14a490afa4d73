"""OPA discovery: a signed bundle whose data carries the OPA configuration of an environment.

An OPA booted with only `services`, `keys` and `discovery` (see deploy/opa/config.yaml)
fetches this bundle, evaluates `data.config` (boot `discovery.decision: config`) and
configures its bundle, decision log and status plugins from it, so the fleet's polling and
logging settings change here, not on every host.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from controlplane.bundles import archive
from controlplane.bundles.models import Environment
from controlplane.bundles.signing import active_signing_key, private_key_pem
from controlplane.settings.registry import setting

# The service name OPA's boot configuration must give Warden (deploy/opa/config.yaml).
SERVICE_NAME = "warden"
CONFIG_ROOT = "config"
BUNDLE_POLLING = {"min_delay_seconds": 10, "max_delay_seconds": 20, "long_polling_timeout_seconds": 30}
DECISION_LOG_REPORTING = {"min_delay_seconds": 5, "max_delay_seconds": 10}
_CACHE_ENTRIES = 32
SPLIT_PARTS = ("policy", "registry")


@dataclass(frozen=True)
class DiscoveryBundle:
    etag: str
    revision: str
    archive: bytes


_built: OrderedDict[str, DiscoveryBundle] = OrderedDict()
_lock = threading.Lock()


def opa_config(environment: Environment, *, bundle_key_id: str) -> dict:
    """The OPA configuration an engine of `environment` should run (OPA's config schema)."""
    def bundle(resource: str) -> dict:
        return {
            "service": SERVICE_NAME,
            "resource": resource,
            # Keep the last good bundle on disk: an OPA that restarts while Warden is
            # unreachable still has policy instead of denying everything.
            "persist": True,
            "polling": dict(BUNDLE_POLLING),
            # Setting keyid makes a valid signature mandatory.
            "signing": {"keyid": bundle_key_id},
        }

    if setting("WARDEN_OPA_SPLIT_BUNDLES"):
        # Two bundles with disjoint roots (controlplane.bundles.parts): a suspension downloads
        # only the registry, and the policy bundle's long poll stays held.
        bundles = {f"{environment.name}-{part}": bundle(f"bundles/{environment.name}/{part}") for part in SPLIT_PARTS}
    else:
        bundles = {environment.name: bundle(f"bundles/{environment.name}")}
    config = {"bundles": bundles, "status": {"service": SERVICE_NAME}}
    if environment.decision_logging:
        config["decision_logs"] = {"service": SERVICE_NAME, "reporting": dict(DECISION_LOG_REPORTING)}
    return config


def discovery_bundle(environment_name: str) -> DiscoveryBundle | None:
    """The signed discovery bundle of an environment (None if there is no such environment).

    Built on demand and cached by content: the same configuration and key give the same
    bytes, revision and ETag, so OPA's conditional GETs are answered 304.
    """
    environment = Environment.objects.select_related("active_bundle").filter(name=environment_name).first()
    if environment is None:
        return None
    key = active_signing_key()
    bundle_key_id = environment.active_bundle.signing_key_id if environment.active_bundle else key.kid
    config = opa_config(environment, bundle_key_id=bundle_key_id)
    cache_key = hashlib.sha256(archive.canonical_json([environment.name, config, key.kid])).hexdigest()
    with _lock:
        cached = _built.get(cache_key)
    if cached is not None:
        return cached
    private_pem = private_key_pem(key)
    built = archive.build_archive(
        policy_files={},
        data={CONFIG_ROOT: config},
        roots=[CONFIG_ROOT],
        metadata={"environment": environment.name, "kind": "discovery"},
        signer=lambda header, payload: archive.sign_rs256(header, payload, private_pem),
        key_id=key.kid,
    )
    bundle = DiscoveryBundle(etag=built.etag, revision=built.revision, archive=built.archive)
    with _lock:
        _built[cache_key] = bundle
        while len(_built) > _CACHE_ENTRIES:
            _built.popitem(last=False)
    return bundle
