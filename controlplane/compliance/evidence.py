"""What a collector returns: a status, what it saw, the objects it saw it in, what is
missing and how to fix it. Plain data, so reports store it as JSON and the PDF prints it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MET = "met"
PARTIAL = "partial"
GAP = "gap"
# The platform cannot produce this evidence: a person must attest it.
MANUAL = "manual"
NOT_APPLICABLE = "not_applicable"
# The population the control operates on was empty in the period ("no instances occurred"):
# nothing was tested, so nothing is claimed and the control is kept out of the score.
NOT_TESTED = "not_tested"

STATUSES = (MET, PARTIAL, GAP, NOT_TESTED, MANUAL, NOT_APPLICABLE)
# How far a control is from met; used for the score and for "improved"/"regressed".
RANK = {GAP: 0, PARTIAL: 1, MET: 2}
# Evidence appendix size per item: enough to find the objects, bounded so a PDF stays fast.
MAX_OBJECTS = 25


@dataclass
class ObjectRef:
    """An object evidence came from: its type (app.model), primary key and a readable label."""

    type: str
    id: str
    label: str = ""
    detail: str = ""


@dataclass
class Evidence:
    kind: str
    status: str
    summary: str
    objects: list[ObjectRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    remediation: str = ""
    figures: dict = field(default_factory=dict)
    # What the evidence is about, in words ("live agents of prod"), and how many there were.
    population: str = ""
    population_size: int | None = None
    # For probes: the exact input sent to the bundle and the decision it returned, so an
    # auditor can re-perform the test.
    probes: list[dict] = field(default_factory=list)
    # Facts that contradict the status a reader might infer (never printed under a green status).
    contradictions: list[str] = field(default_factory=list)
    collected_at: str = ""

    def as_dict(self, *, limit: int | None = MAX_OBJECTS) -> dict:
        data = asdict(self)
        total = len(self.objects)
        if limit is not None:
            data["objects"] = data["objects"][:limit]
        data["objects_total"] = total
        return data


def ref(instance, label: str = "", detail: str = "") -> ObjectRef:
    """An ObjectRef for a model instance ("identity.agent", pk, str(instance))."""
    meta = instance._meta
    return ObjectRef(type=f"{meta.app_label}.{meta.model_name}", id=str(instance.pk), label=label or str(instance),
                     detail=detail)
