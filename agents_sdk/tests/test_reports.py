"""Offline verification of signed report PDFs and evidence packages (agents_sdk.reports),
through the `warden report verify` command: valid inputs pass, every kind of tampering and
every hostile shape of package fails with a named problem, never a traceback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents_sdk.cli import main
from agents_sdk.keys import key_fingerprint, raw_public_key
from agents_sdk.reports import MANIFEST_SUBJECT, PDF_SUBJECT, SIGNATURE_FORMAT, signed_statement, verify_pdf

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(raw_public_key(KEY.public_key())).decode()


def sign(content: bytes, subject: str, key=KEY, **extra) -> dict:
    public = key.public_key()
    document = {"format": SIGNATURE_FORMAT, "subject": subject, "report_id": "r-1",
                "sha256": hashlib.sha256(content).hexdigest(), "signed_at": "2026-11-30T00:00:00+00:00",
                "key_id": key_fingerprint(raw_public_key(public)),
                "public_key": base64.b64encode(raw_public_key(public)).decode(), **extra}
    document["signature"] = base64.b64encode(key.sign(signed_statement(document))).decode()
    return document


def package(files: dict[str, bytes], *, key=KEY, manifest_files=None, extra: dict | None = None) -> bytes:
    listed = manifest_files if manifest_files is not None else files
    manifest = json.dumps({"format": "warden-evidence-manifest/1", "files": [
        {"name": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in sorted(listed.items())]}).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in {**files, "manifest.json": manifest,
                           "manifest.sig.json": json.dumps(sign(manifest, MANIFEST_SUBJECT, key)).encode(),
                           **(extra or {})}.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def run(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def test_a_signed_pdf_verifies_and_any_change_fails(tmp_path: Path):
    pdf = b"%PDF-1.7 report"
    (tmp_path / "r.pdf").write_bytes(pdf)
    (tmp_path / "r.pdf.sig.json").write_text(json.dumps(sign(pdf, PDF_SUBJECT)))
    code, out = run("report", "verify", str(tmp_path / "r.pdf"), "--public-key", PUBLIC)
    assert code == 0 and "OK: report PDF of report r-1" in out
    (tmp_path / "r.pdf").write_bytes(pdf + b" ")
    code, out = run("report", "verify", str(tmp_path / "r.pdf"), "--public-key", PUBLIC)
    assert code == 1 and "SHA-256 of the content" in out


def test_a_forged_signature_document_fails():
    pdf = b"%PDF"
    forged = sign(pdf, PDF_SUBJECT)
    forged["report_id"] = "another"  # covered by the signature
    assert "does not verify" in verify_pdf(pdf, json.dumps(forged).encode(), [KEY.public_key()]).problems[0]
    wrong_subject = sign(pdf, MANIFEST_SUBJECT)
    assert not verify_pdf(pdf, json.dumps(wrong_subject).encode(), [KEY.public_key()]).ok
    other = Ed25519PrivateKey.generate()
    assert "not among the trusted keys" in verify_pdf(pdf, json.dumps(sign(pdf, PDF_SUBJECT, other)).encode(),
                                                      [KEY.public_key()]).problems[0]


@pytest.mark.parametrize("signature", [
    b"", b"not json", b"[]", b'{"format": "other"}', json.dumps({"format": SIGNATURE_FORMAT}).encode(),
    json.dumps({"format": SIGNATURE_FORMAT, "subject": PDF_SUBJECT, "sha256": 1, "key_id": "k", "signature": "s"})
    .encode(), b"\xff\xfe", b"{" * 100000,
])
def test_hostile_signature_files_fail_with_a_reason(signature):
    result = verify_pdf(b"%PDF", signature, [KEY.public_key()])
    assert not result.ok and result.problems


def test_a_bad_base64_or_non_json_values_in_a_signature_fail_cleanly():
    document = sign(b"%PDF", PDF_SUBJECT)
    assert not verify_pdf(b"%PDF", json.dumps({**document, "signature": "!!!"}).encode(), [KEY.public_key()]).ok
    lone = json.dumps({**document, "report_id": "\ud800"}).encode()
    assert not verify_pdf(b"%PDF", lone, [KEY.public_key()]).ok


def test_an_evidence_package_verifies(tmp_path: Path):
    path = tmp_path / "p.zip"
    path.write_bytes(package({"report.json": b"{}", "populations/agent_identity.json": b"[]"}))
    code, out = run("report", "verify", str(path), "--public-key", PUBLIC)
    assert code == 0 and "OK: evidence package" in out and "2 file(s)" in out


@pytest.mark.parametrize("build,problem", [
    (lambda: package({"a.json": b"1"}, manifest_files={"a.json": b"2"}), "a.json: SHA-256"),
    (lambda: package({"a.json": b"1"}, manifest_files={"a.json": b"1", "b.json": b"2"}), "b.json is listed"),
    (lambda: package({"a.json": b"1"}, manifest_files={}), "a.json is in the zip but not in the manifest"),
    (lambda: package({"a.json": b"1"}, key=Ed25519PrivateKey.generate()), "not among the trusted keys"),
    (lambda: package({"../escape.json": b"1"}), "unsafe file name"),
    (lambda: package({"/abs.json": b"1"}), "unsafe file name"),
    (lambda: _duplicate(package({"a.json": b"1"}), "a.json"), "same name twice"),
    (lambda: b"PK\x03\x04 not really a zip", "not a readable zip"),
    (lambda: _zip({"report.json": b"{}"}), "manifest.json or manifest.sig.json is missing"),
    (lambda: _zip({"manifest.json": b"\xff", "manifest.sig.json": b"{}"}), "not a warden-signature/1"),
])
def test_tampered_or_hostile_packages_fail_naming_the_problem(tmp_path: Path, build, problem):
    path = tmp_path / "p.zip"
    path.write_bytes(build())
    code, out = run("report", "verify", str(path), "--public-key", PUBLIC)
    assert code == 1 and problem in out, out


def _duplicate(data: bytes, name: str) -> bytes:
    """A zip holding `name` twice: a verifier reading one copy could be shown another."""
    buffer = io.BytesIO(data)
    with pytest.warns(UserWarning), zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(name, b"other")
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_unreadable_input_is_a_usage_error(tmp_path: Path):
    code, out = run("report", "verify", str(tmp_path / "missing.pdf"), "--public-key", PUBLIC)
    assert code == 2 and "cannot read" in out
    (tmp_path / "r.pdf").write_bytes(b"%PDF")
    code, out = run("report", "verify", str(tmp_path / "r.pdf"), "--public-key", PUBLIC)
    assert code == 2 and "--signature" in out
    code, out = run("report", "verify", str(tmp_path / "r.pdf"), "--public-key", "not-a-key")
    assert code == 2
