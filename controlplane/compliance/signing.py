"""Signatures over what a report hands to an auditor: the PDF, and an evidence package's
manifest. Signed with the control plane's checkpoint key (Ed25519, the key that already
signs the audit log's checkpoints), as detached `warden-signature/1` documents that
`warden report verify` checks offline (agents_sdk/reports.py)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from agents_sdk.reports import MANIFEST_SUBJECT, PDF_SUBJECT, SIGNATURE_FORMAT, signed_statement
from controlplane.audit.checkpoints import active_checkpoint_key
from controlplane.core.crypto import secrets_at_rest


def sign(content: bytes, *, subject: str, report_id: str) -> dict:
    """A detached signature document over `content`."""
    key = active_checkpoint_key()
    try:
        private = Ed25519PrivateKey.from_private_bytes(secrets_at_rest().decrypt(bytes(key.encrypted_private_key)))
    except InvalidToken as exc:
        raise RuntimeError(f"checkpoint key {key.key_id[:16]} cannot be decrypted: WARDEN_SECRET_KEY or "
                           "WARDEN_ENCRYPTION_KEY changed") from exc
    document = {
        "format": SIGNATURE_FORMAT, "subject": subject, "report_id": report_id,
        "sha256": hashlib.sha256(content).hexdigest(), "signed_at": timezone.now().isoformat(),
        "key_id": key.key_id, "public_key": key.public_key,
    }
    document["signature"] = base64.b64encode(private.sign(signed_statement(document))).decode("ascii")
    return document


def sign_pdf(pdf: bytes, report) -> dict:
    """The report fields that record a PDF's hash and signature."""
    signature = sign(pdf, subject=PDF_SUBJECT, report_id=str(report.pk))
    return {"pdf_sha256": signature["sha256"], "pdf_signature": signature}


def sign_manifest(manifest: bytes, report) -> dict:
    return sign(manifest, subject=MANIFEST_SUBJECT, report_id=str(report.pk))
