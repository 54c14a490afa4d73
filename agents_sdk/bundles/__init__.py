"""OPA bundles: download, verify, activate and persist them as a real OPA does.

    keys = {"warden": VerificationKey.from_pem("warden", pem)}
    client = BundleClient(
        "http://127.0.0.1:8000/opa", "bundles/prod", token=token,
        keys=keys, signing_keyid="warden", persist_dir="var/bundles/prod",
        long_polling_timeout=30, activate=compile_it,
    )
    client.start()                 # persisted bundle first, then the control plane, then refreshes
    client.wait_until_ready(5.0)   # True once a verified bundle is active

The wire protocol and the verification rules are OPA's (docs: management-bundles):
`GET <service url>/<resource>` with `Authorization: Bearer`, `If-None-Match: <etag>`
and `Prefer: modes=snapshot,delta[;wait=N]`; a `.signatures.json` with exactly one JWT
whose payload lists every other file of the tar with its SHA-256 (canonical JSON for
`data.json` and `.manifest`, raw bytes otherwise). This verifier is written from that
specification, independently of the control plane's signer.

A bundle that fails to download, verify or activate never replaces the active one, and
neither does one signed before it (``agents_sdk.bundles.freshness``).
"""

from agents_sdk.bundles.archive import Bundle, parse_bundle, read_archive, verify_signatures
from agents_sdk.bundles.client import BundleClient, BundleStatus, backoff_delay
from agents_sdk.bundles.format import (
    LONG_POLL_CONTENT_TYPE,
    MANIFEST_FILE,
    SIGNATURES_FILE,
    BundleError,
    BundleVerificationError,
    canonical_file_bytes,
    file_digest,
)
from agents_sdk.bundles.freshness import BUILT_AT_FIELD, StaleBundleError
from agents_sdk.bundles.keys import VerificationConfig, VerificationKey
from agents_sdk.bundles.store import BundleStore

__all__ = [
    "BUILT_AT_FIELD",
    "LONG_POLL_CONTENT_TYPE",
    "MANIFEST_FILE",
    "SIGNATURES_FILE",
    "Bundle",
    "BundleClient",
    "BundleError",
    "BundleStatus",
    "BundleStore",
    "BundleVerificationError",
    "StaleBundleError",
    "VerificationConfig",
    "VerificationKey",
    "backoff_delay",
    "canonical_file_bytes",
    "file_digest",
    "parse_bundle",
    "read_archive",
    "verify_signatures",
]
