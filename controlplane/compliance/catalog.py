"""Control catalogs (EU AI Act, HIPAA, SOC 2) loaded from the YAML files in catalogs/.

The catalogs are data: ids, titles, requirement texts in Warden's own words, which kinds
of evidence support each control, when a control applies, and framework facts such as
application dates and retention minimums. Changing a date or a text is a data change,
not a code change. Loading validates every file and raises `CatalogError` naming the
file and the control, so a bad catalog stops start-up.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

CATALOG_DIR = Path(__file__).resolve().parent / "catalogs"
FRAMEWORK_IDS = ("eu_ai_act", "hipaa", "soc2")
APPLICABILITY = frozenset({"all", "high_risk", "gpai_provider", "ephi"})
ROLES = frozenset({"provider", "deployer", "both", ""})
STRENGTHS = frozenset({"satisfies", "supports"})
# High-risk routes a date can depend on (Art. 6(1) / Annex I, Art. 6(2) / Annex III); "all"
# is the date for every route.
ROUTES = frozenset({"all", "annex_iii", "annex_i"})
SOC2_CATEGORIES = ("security", "availability", "confidentiality", "processing_integrity", "privacy")
# A control whose text asks a person to review, assign, identify or evaluate is "met" only
# with that person's attestation: telemetry shows the means, not that someone did it.
_PERSON_VERBS = re.compile(r"\b(review|assign|identif|evaluat)", re.IGNORECASE)
IMPLEMENTATION = frozenset({"required", "addressable", "standard"})
RETENTION_SUBJECTS = frozenset({"audit_events", "policy_documentation", "disposal"})
MANUAL = "manual"


class CatalogError(Exception):
    """A catalog file that cannot be used; the message names the file and the control."""


@dataclass(frozen=True)
class Control:
    framework: str
    id: str
    title: str
    requirement: str
    evidence: tuple[str, ...]
    applies_to: str = "all"
    # When the obligation applies, per high-risk route ("all", "annex_iii", "annex_i").
    applies_from_by_route: tuple[tuple[str, datetime.date], ...] = ()
    implementation: str = ""  # HIPAA: required / addressable / standard
    category: str = ""  # SOC 2: security, availability, confidentiality, processing_integrity, privacy
    role: str = ""  # EU AI Act: whose duty it is (provider, deployer, both)
    # "supports": platform telemetry alone can only support the control (entity-level
    # criteria, integrity of data Warden does not hold): at most partial without an attestation.
    strength: str = "satisfies"
    attestation_required: bool = False
    note: str = ""

    @property
    def applies_from(self) -> datetime.date | None:
        """The earliest date the control applies on any route (what the catalog lists)."""
        dates = [d for _, d in self.applies_from_by_route]
        return min(dates) if dates else None

    def applies_from_for(self, route: str) -> datetime.date | None:
        by_route = dict(self.applies_from_by_route)
        return by_route.get(route) or by_route.get("all") or self.applies_from

    @property
    def full_id(self) -> str:
        """The id rules use in METADATA `custom.controls`, e.g. "eu_ai_act.art14(4)(e)"."""
        return f"{self.framework}.{self.id}"

    @property
    def automatic_evidence(self) -> tuple[str, ...]:
        return tuple(kind for kind in self.evidence if kind != MANUAL)

    @property
    def needs_attestation(self) -> bool:
        return MANUAL in self.evidence


@dataclass(frozen=True)
class Retention:
    subject: str
    min_days: int
    basis: str


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    regulation: str
    reference_url: str
    dates: tuple[tuple[datetime.date, str], ...]
    notes: str
    retention: Retention
    applicability: dict[str, str]
    controls: tuple[Control, ...] = field(default_factory=tuple)
    source_sha256: str = ""
    version: str = ""
    legal_status: str = ""

    def control(self, control_id: str) -> Control | None:
        return next((c for c in self.controls if c.id == control_id), None)


def _require(data: dict, key: str, where: str, kind=str):
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CatalogError(f"{where}: '{key}' is missing")
    if not isinstance(value, kind):
        raise CatalogError(f"{where}: '{key}' must be {kind.__name__ if isinstance(kind, type) else kind}")
    return value


def _date(value, where: str) -> datetime.date:
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError as exc:
        raise CatalogError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc


def _applies_from(value, where: str) -> tuple[tuple[str, datetime.date], ...]:
    """`applies_from: 2026-08-02` or, when the date depends on the high-risk route,
    `applies_from: {annex_iii: 2027-12-02, annex_i: 2028-08-02}`."""
    if value is None or value == "":
        return ()
    if isinstance(value, dict):
        unknown = set(value) - ROUTES
        if unknown:
            raise CatalogError(f"{where}: applies_from names unknown route(s) {sorted(unknown)}; use {sorted(ROUTES)}")
        return tuple(sorted((route, _date(date, where)) for route, date in value.items()))
    return (("all", _date(value, where)),)


def parse_catalog(text: str, *, name: str, evidence_kinds: frozenset[str]) -> Framework:
    """Validate and build one framework from its YAML text."""

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{name}: expected a mapping with 'framework' and 'controls'")
    meta = _require(data, "framework", name, dict)
    framework_id = _require(meta, "id", f"{name}: framework")
    if framework_id not in FRAMEWORK_IDS:
        raise CatalogError(f"{name}: unknown framework id {framework_id!r}")
    retention = _require(meta, "retention", f"{name}: framework", dict)
    subject = _require(retention, "subject", f"{name}: framework.retention")
    if subject not in RETENTION_SUBJECTS:
        raise CatalogError(f"{name}: framework.retention.subject must be one of {sorted(RETENTION_SUBJECTS)}")
    min_days = retention.get("min_days")
    if not isinstance(min_days, int) or min_days < 0:
        raise CatalogError(f"{name}: framework.retention.min_days must be a whole number of days")
    dates = tuple(
        (_date(_require(item, "date", f"{name}: framework.dates", object), name), _require(item, "event", f"{name}: framework.dates"))
        for item in meta.get("dates") or []
    )
    applicability = _require(meta, "applicability", f"{name}: framework", dict)
    unknown = set(applicability) - APPLICABILITY
    if unknown:
        raise CatalogError(f"{name}: unknown applicability {sorted(unknown)}")

    controls = []
    seen = set()
    for index, item in enumerate(_require(data, "controls", name, list)):
        where = f"{name}: control #{index + 1}"
        if not isinstance(item, dict):
            raise CatalogError(f"{where}: expected a mapping")
        control_id = str(_require(item, "id", where, object))
        where = f"{name}: control {control_id}"
        if control_id in seen:
            raise CatalogError(f"{where}: duplicate id")
        seen.add(control_id)
        evidence = _require(item, "evidence", where, list)
        if not evidence:
            raise CatalogError(f"{where}: lists no evidence kind")
        for kind in evidence:
            if kind not in evidence_kinds:
                raise CatalogError(f"{where}: unknown evidence kind {kind!r}")
        applies_to = item.get("applies_to", "all")
        if applies_to not in applicability:
            raise CatalogError(f"{where}: applies_to {applies_to!r} is not declared in framework.applicability")
        implementation = item.get("implementation", "")
        if framework_id == "hipaa" and implementation not in IMPLEMENTATION:
            raise CatalogError(f"{where}: implementation must be one of {sorted(IMPLEMENTATION)}")
        role = item.get("role", "")
        if role not in ROLES:
            raise CatalogError(f"{where}: role must be one of provider, deployer, both")
        strength = item.get("strength", "satisfies")
        if strength not in STRENGTHS:
            raise CatalogError(f"{where}: strength must be 'satisfies' or 'supports'")
        category = item.get("category", "")
        if framework_id == "soc2" and category not in SOC2_CATEGORIES:
            raise CatalogError(f"{where}: category must be one of {', '.join(SOC2_CATEGORIES)}")
        requirement = str(_require(item, "requirement", where))
        attestation = item.get("attestation", "auto")
        if attestation not in ("auto", "required", "not_required"):
            raise CatalogError(f"{where}: attestation must be auto, required or not_required")
        controls.append(Control(
            framework=framework_id,
            id=control_id,
            title=str(_require(item, "title", where)),
            requirement=requirement,
            evidence=tuple(evidence),
            applies_to=applies_to,
            applies_from_by_route=_applies_from(item.get("applies_from"), where),
            implementation=implementation,
            category=category,
            role=role,
            strength=strength,
            attestation_required=attestation == "required" or (
                attestation == "auto" and bool(_PERSON_VERBS.search(requirement))),
            note=str(item.get("note", "") or "").strip(),
        ))
    if not controls:
        raise CatalogError(f"{name}: no controls")
    version = str(_require(meta, "version", f"{name}: framework", object))
    return Framework(
        id=framework_id,
        name=_require(meta, "name", f"{name}: framework"),
        regulation=_require(meta, "regulation", f"{name}: framework"),
        reference_url=meta.get("reference_url", ""),
        dates=dates,
        notes=(meta.get("notes") or "").strip(),
        retention=Retention(subject=subject, min_days=min_days, basis=retention.get("basis", "")),
        applicability=dict(applicability),
        controls=tuple(controls),
        source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        version=version,
        legal_status=str(meta.get("legal_status", "") or "").strip(),
    )


@lru_cache(maxsize=1)
def load_catalogs() -> dict[str, Framework]:
    """Every framework by id, validated; cached for the life of the process."""
    from controlplane.compliance.collectors import EVIDENCE_KINDS

    frameworks = {}
    for framework_id in FRAMEWORK_IDS:
        path = CATALOG_DIR / f"{framework_id}.yaml"
        if not path.exists():
            raise CatalogError(f"{path.name}: missing")
        framework = parse_catalog(path.read_text(encoding="utf-8"), name=path.name, evidence_kinds=EVIDENCE_KINDS)
        if framework.id != framework_id:
            raise CatalogError(f"{path.name}: declares framework {framework.id!r}")
        frameworks[framework_id] = framework
    return frameworks


def framework(framework_id: str) -> Framework:
    try:
        return load_catalogs()[framework_id]
    except KeyError:
        raise CatalogError(f"unknown framework {framework_id!r}") from None


def control_index() -> dict[str, Control]:
    """Every control of every framework by its full id ("soc2.CC6.1")."""
    return {c.full_id: c for f in load_catalogs().values() for c in f.controls}
