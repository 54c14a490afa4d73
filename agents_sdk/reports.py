"""Offline verification of Warden's signed compliance reports and evidence packages.

A report PDF comes with a detached signature (``…pdf.sig.json``); an evidence package is a
zip whose ``manifest.json`` lists every file's SHA-256 and whose ``manifest.sig.json`` signs
the manifest. Both signatures are Ed25519 by the control plane's checkpoint key over the
canonical JSON of the signature document without its ``signature`` field::

    {"format": "warden-signature/1", "subject": "compliance-report-pdf",
     "sha256": "<hex of the signed bytes>", "report_id": "...", "signed_at": "...",
     "key_id": "<hex SHA-256 of the raw public key>", "public_key": "<base64>",
     "signature": "<base64>"}

Trust comes from the public key the caller passes (obtained out of band, e.g. from
``GET /api/v1/audit/checkpoint-keys/``), never from the key embedded in the document.
No Django, no network: runs on an auditor's laptop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.keys import key_fingerprint, raw_public_key
from agents_sdk.records import canonical_json

SIGNATURE_FORMAT = "warden-signature/1"
PDF_SUBJECT = "compliance-report-pdf"
MANIFEST_SUBJECT = "evidence-package-manifest"
MANIFEST_NAME = "manifest.json"
MANIFEST_SIGNATURE_NAME = "manifest.sig.json"
# A package is read into memory member by member; these bound what a hostile zip can cost.
MAX_MEMBER_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 10000
MAX_SIGNATURE_BYTES = 64 * 1024


@dataclass
class Verification:
    """The outcome: ok, what was checked, and the first problem found (if any)."""

    ok: bool
    subject: str = ""
    report_id: str = ""
    sha256: str = ""
    key_id: str = ""
    files: int = 0
    problems: list[str] = field(default_factory=list)


def signed_statement(document: dict) -> bytes:
    """The bytes a Warden signature covers: the document without `signature`, canonical JSON."""
    return canonical_json({k: v for k, v in document.items() if k != "signature"})


def parse_signature(data: bytes) -> dict:
    """A signature document from its JSON bytes; ValueError naming what is wrong."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"signature file is larger than {MAX_SIGNATURE_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"signature file is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise ValueError(f"signature file is not a {SIGNATURE_FORMAT} document")
    for name in ("subject", "sha256", "key_id", "signature"):
        if not isinstance(document.get(name), str) or not document[name]:
            raise ValueError(f"signature file: '{name}' is missing or not a string")
    return document


def check_signature(document: dict, content: bytes, trusted: list[Ed25519PublicKey], *, subject: str) -> list[str]:
    """Problems with `document` as a signature over `content` by one of `trusted` (empty: valid)."""
    problems = []
    if document.get("subject") != subject:
        problems.append(f"signature is for {document.get('subject')!r}, not {subject!r}")
    digest = hashlib.sha256(content).hexdigest()
    if document.get("sha256") != digest:
        problems.append(f"SHA-256 of the content is {digest}, the signature names {document.get('sha256')}")
    keys = {key_fingerprint(raw_public_key(k)): k for k in trusted}
    key = keys.get(document.get("key_id", ""))
    if key is None:
        problems.append(f"signed by key {str(document.get('key_id'))[:16]}…, which is not among the trusted keys")
        return problems
    try:
        signature = base64.b64decode(document["signature"], validate=True)
        key.verify(signature, signed_statement(document))
    except (InvalidSignature, binascii.Error, ValueError):  # CanonicalJSONError is a ValueError
        problems.append("the signature does not verify with the trusted key")
    return problems


def verify_pdf(pdf: bytes, signature: bytes, trusted: list[Ed25519PublicKey]) -> Verification:
    """Verify a report PDF against its detached signature."""
    try:
        document = parse_signature(signature)
    except ValueError as exc:
        return Verification(ok=False, problems=[str(exc)])
    problems = check_signature(document, pdf, trusted, subject=PDF_SUBJECT)
    return Verification(ok=not problems, subject=PDF_SUBJECT, report_id=str(document.get("report_id", "")),
                        sha256=hashlib.sha256(pdf).hexdigest(), key_id=document["key_id"], files=1, problems=problems)


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name and "\x00" not in name


def verify_package(path: str | Path, trusted: list[Ed25519PublicKey]) -> Verification:
    """Verify an evidence package: the manifest's signature, every listed file's SHA-256,
    no file missing or unlisted, and the PDF's own detached signature when present."""
    problems: list[str] = []
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return Verification(ok=False, problems=[f"not a readable zip: {exc}"])
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            return Verification(ok=False, problems=[f"more than {MAX_MEMBERS} files"])
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            return Verification(ok=False, problems=["the zip holds the same name twice"])
        bad = [n for n in names if not _safe_name(n)]
        if bad:
            return Verification(ok=False, problems=[f"unsafe file name {bad[0]!r}"])
        oversize = [i.filename for i in infos if i.file_size > MAX_MEMBER_BYTES]
        if oversize:
            return Verification(ok=False, problems=[f"{oversize[0]} is larger than {MAX_MEMBER_BYTES} bytes"])
        if MANIFEST_NAME not in names or MANIFEST_SIGNATURE_NAME not in names:
            return Verification(ok=False, problems=[f"{MANIFEST_NAME} or {MANIFEST_SIGNATURE_NAME} is missing"])
        manifest_bytes = archive.read(MANIFEST_NAME)
        try:
            document = parse_signature(archive.read(MANIFEST_SIGNATURE_NAME))
        except ValueError as exc:
            return Verification(ok=False, problems=[str(exc)])
        problems += check_signature(document, manifest_bytes, trusted, subject=MANIFEST_SUBJECT)
        try:
            manifest = json.loads(manifest_bytes.decode("utf-8"))
            listed = {f["name"]: f["sha256"] for f in manifest["files"]}
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            return Verification(ok=False, problems=problems + [f"manifest is malformed: {exc}"])
        present = set(names) - {MANIFEST_NAME, MANIFEST_SIGNATURE_NAME}
        for name in sorted(set(listed) - present):
            problems.append(f"{name} is listed in the manifest but missing")
        for name in sorted(present - set(listed)):
            problems.append(f"{name} is in the zip but not in the manifest")
        for name in sorted(present & set(listed)):
            digest = hashlib.sha256(archive.read(name)).hexdigest()
            if digest != listed[name]:
                problems.append(f"{name}: SHA-256 {digest} differs from the manifest's {listed[name]}")
        if "report.pdf" in present and "report.pdf.sig.json" in present:
            pdf_check = verify_pdf(archive.read("report.pdf"), archive.read("report.pdf.sig.json"), trusted)
            problems += [f"report.pdf: {p}" for p in pdf_check.problems]
    return Verification(ok=not problems, subject=MANIFEST_SUBJECT, report_id=str(document.get("report_id", "")),
                        sha256=hashlib.sha256(manifest_bytes).hexdigest(), key_id=document["key_id"],
                        files=len(listed), problems=problems)
