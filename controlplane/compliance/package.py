"""The evidence package an auditor receives: one zip holding the report as JSON, the PDF
with its detached signature, a population listing per evidence kind with a seeded random
sample to re-perform tests on, and a signed manifest of every file's SHA-256.

The zip is reproducible (fixed member times, sorted names): the same report and seed give
the same bytes, apart from the manifest signature's time.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile

from django.core.serializers.json import DjangoJSONEncoder

from agents_sdk.reports import MANIFEST_NAME, MANIFEST_SIGNATURE_NAME
from controlplane.compliance import signing
from controlplane.compliance.models import GapReport
from controlplane.core.exceptions import InvalidInput

MANIFEST_FORMAT = "warden-evidence-manifest/1"
DEFAULT_SAMPLE_SIZE = 25
MAX_SAMPLE_SIZE = 1000
_EPOCH = (1980, 1, 1, 0, 0, 0)


def default_seed(report: GapReport) -> int:
    """A seed fixed per report, so two downloads draw the same sample unless asked otherwise."""
    return int(hashlib.sha256(str(report.pk).encode()).hexdigest()[:12], 16)


def _json(value) -> bytes:
    return (json.dumps(value, cls=DjangoJSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def report_document(report: GapReport) -> dict:
    """The report as JSON: what the API returns for it, plus the sign-offs."""
    fields = ["framework", "period_start", "period_end", "status", "created_at", "finished_at", "score", "summary",
              "diff", "scope", "catalog_sha256", "catalog_version", "assess_as_of", "categories", "pdf_sha256"]
    return {
        "id": str(report.pk), "environment": report.environment.name,
        **{name: getattr(report, name) for name in fields},
        "sign_offs": [{"role": s.role, "user": s.user.get_username(), "signed_at": s.signed_at, "comment": s.comment}
                      for s in report.sign_offs.select_related("user")],
        "results": list(report.results.order_by("position").values(
            "control_id", "title", "requirement", "status", "applicability", "applies_from", "strength", "owner",
            "evidence_kinds", "evidence", "missing", "remediation", "rules", "attestations", "contradictions")),
    }


def population_listing(kind: str, item: dict, *, seed: int, sample_size: int) -> dict:
    objects = item.get("objects") or []
    rng = random.Random(f"{seed}:{kind}")
    picked = sorted(rng.sample(range(len(objects)), min(sample_size, len(objects))))
    return {
        "kind": kind, "status": item.get("status"), "summary": item.get("summary"),
        "population": item.get("population", ""), "population_size": item.get("population_size"),
        "collected_at": item.get("collected_at", ""), "objects_total": item.get("objects_total", len(objects)),
        "objects": objects, "probes": item.get("probes", []),
        "sample": {"seed": seed, "method": "Python random.Random(f'{seed}:{kind}').sample over object indexes",
                   "size": len(picked), "indexes": picked, "objects": [objects[i] for i in picked]},
    }


def build_package(report: GapReport, pdf: bytes, *, seed: int | None = None,
                  sample_size: int = DEFAULT_SAMPLE_SIZE) -> bytes:
    if seed is None:
        seed = default_seed(report)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidInput("must be a whole number between 0 and 2^63-1", field="seed")
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or not 1 <= sample_size <= MAX_SAMPLE_SIZE:
        raise InvalidInput(f"must be a whole number between 1 and {MAX_SAMPLE_SIZE}", field="sample_size")
    files: dict[str, bytes] = {
        "report.json": _json(report_document(report)),
        "report.pdf": pdf,
        "report.pdf.sig.json": _json(report.pdf_signature),
    }
    for kind, item in sorted((report.evidence_items or {}).items()):
        files[f"populations/{kind}.json"] = _json(population_listing(kind, item, seed=seed, sample_size=sample_size))
    manifest = _json({
        "format": MANIFEST_FORMAT, "report_id": str(report.pk), "framework": report.framework,
        "environment": report.environment.name, "catalog_version": report.catalog_version,
        "sample_seed": seed, "sample_size": sample_size,
        "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                  for name, data in sorted(files.items())],
    })
    files[MANIFEST_NAME] = manifest
    files[MANIFEST_SIGNATURE_NAME] = _json(signing.sign_manifest(manifest, report))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
