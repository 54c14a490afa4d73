"""Storing what OPA instances upload: decision logs and status reports.

These are telemetry, not configuration changes, so unlike other services they write no
change log entries (a fleet would flood it). Both are safe to repeat: OPA re-sends a
decision log chunk when it missed our 2xx, and sends a status report at every poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.core.exceptions import InvalidInput
from controlplane.opa.models import DecisionLog, OPAInstance

# Limits on uploads. OPA's default decision log chunk is 32 KiB compressed
# (decision_logs.reporting.upload_size_limit_bytes); these leave ample room above it.
MAX_LOG_UPLOAD_BYTES = 1024 * 1024
MAX_LOG_INFLATED_BYTES = 8 * 1024 * 1024
MAX_STATUS_BYTES = 1024 * 1024

MAX_ID_LENGTH = 128
MAX_PATH_LENGTH = 1024
_LOOKUP_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int


def _string(value, field: str, *, required: bool = False, max_length: int | None = None) -> str:
    if value is None:
        if required:
            raise InvalidInput("is required", field=field)
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput("must be a non-empty string" if required else "must be a string", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters", field=field)
    return value


def _object(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("must be an object", field=field)
    return value


def _string_list(value, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("must be an array of strings (JSON pointers)", field=field)
    return value


def _timestamp(value, field: str) -> datetime:
    text = _string(value, field, required=True)
    try:
        parsed = datetime.fromisoformat(text)  # RFC 3339, nanoseconds truncated to microseconds
    except ValueError as exc:
        raise InvalidInput("must be an RFC 3339 time, e.g. 2025-01-01T00:00:00.123456789Z", field=field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _labels(value, field: str) -> dict:
    labels = _object(value, field)
    _string(labels.get("id"), f"{field}.id", required=True, max_length=MAX_ID_LENGTH)
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidInput("values must be strings", field=field)
    return labels


def _decision_log(environment: Environment, event, index: int, received_at: datetime) -> DecisionLog:
    """One EventV1 → a row. Unknown fields are kept in `event` only, never refused."""
    where = f"[{index}]"
    if not isinstance(event, dict):
        raise InvalidInput("must be a decision event object", field=where)
    labels = _labels(event.get("labels"), f"{where}.labels")
    bundles = _object(event.get("bundles"), f"{where}.bundles")
    for name, bundle in bundles.items():
        _object(bundle, f"{where}.bundles.{name}")
    path = _string(event.get("path"), f"{where}.path", max_length=MAX_PATH_LENGTH)
    return DecisionLog(
        decision_id=_string(event.get("decision_id"), f"{where}.decision_id", required=True, max_length=MAX_ID_LENGTH),
        environment=environment,
        instance_id=labels["id"],
        # OPA sends "warden/decision"; some clients send "/warden/decision" (the docs allow both).
        path=path.lstrip("/"),
        input=event.get("input"),
        result=event.get("result"),
        bundles=bundles,
        labels=labels,
        erased=_string_list(event.get("erased"), f"{where}.erased"),
        masked=_string_list(event.get("masked"), f"{where}.masked"),
        timestamp=_timestamp(event.get("timestamp"), f"{where}.timestamp"),
        received_at=received_at,
        event=event,
    )


@transaction.atomic
def ingest_decision_logs(environment: Environment, events) -> IngestResult:
    """Store a decision log upload (a JSON array of OPA decision events), each decision once.

    The upload is all or nothing: a malformed event refuses the whole upload with the index
    and field to fix, so a retry cannot half-apply. Events already stored (OPA retried a
    chunk, or one decision_id appears twice in it) are skipped.
    """
    if not isinstance(events, list):
        raise InvalidInput("must be a JSON array of decision events", field="body")
    received_at = timezone.now()
    rows: dict[str, DecisionLog] = {}
    for index, event in enumerate(events):
        row = _decision_log(environment, event, index, received_at)
        rows.setdefault(row.decision_id, row)
    ids = list(rows)
    known: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        known.update(DecisionLog.objects.filter(decision_id__in=chunk).values_list("decision_id", flat=True))
    fresh = [row for decision_id, row in rows.items() if decision_id not in known]
    # ignore_conflicts: a concurrent upload of the same chunk may have stored some meanwhile.
    DecisionLog.objects.bulk_create(fresh, batch_size=_LOOKUP_CHUNK, ignore_conflicts=True)
    return IngestResult(received=len(events), stored=len(fresh))


# The per-bundle status fields Warden keeps, with their JSON types (OPA's BundleStatus).
_BUNDLE_STATUS_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "active_revision": (str,),
    "last_successful_download": (str,),
    "last_successful_activation": (str,),
    "last_request": (str,),
    "last_successful_request": (str,),
    "type": (str,),
    "size": (int,),
    "code": (str,),
    "message": (str,),
    "http_code": (int, str),
    "errors": (list,),
}
_TYPE_NAMES = {str: "a string", int: "an integer", list: "an array"}
_LOG_STATUS_FIELDS: dict[str, tuple[type, ...]] = {"code": (str,), "message": (str,), "http_code": (int, str)}


def _status_section(value, field: str, fields: dict[str, tuple[type, ...]]) -> dict:
    section = _object(value, field)
    kept = {}
    for name, types in fields.items():
        if name not in section or section[name] is None:
            continue
        item = section[name]
        if not isinstance(item, types) or isinstance(item, bool):
            raise InvalidInput(f"must be {_TYPE_NAMES[types[0]]}", field=f"{field}.{name}")
        kept[name] = item
    return kept


def _plugins(value) -> dict:
    plugins = _object(value, "plugins")
    kept = {}
    for name, state in plugins.items():
        kept[name] = _status_section(state, f"plugins.{name}", {"state": (str,), "message": (str,)})
    return kept


def warden_bundle_name(environment: Environment, bundles: dict) -> str:
    """Which of an instance's bundles is the environment's: the one named after it (as our
    configuration and discovery name it), else its only bundle."""
    if environment.name in bundles:
        return environment.name
    if len(bundles) == 1:
        return next(iter(bundles))
    return ""


def record_status(environment: Environment, report) -> OPAInstance:
    """Upsert the instance `labels.id` of `environment` from an OPA status report.

    Unknown fields (metrics, and whatever later OPA versions add) are ignored; known fields
    of the wrong type are refused with their path.
    """
    if not isinstance(report, dict):
        raise InvalidInput("must be a JSON object (an OPA status report)", field="body")
    labels = _labels(report.get("labels"), "labels")
    raw_bundles = _object(report.get("bundles"), "bundles")
    if not raw_bundles and isinstance(report.get("bundle"), dict):
        # OPA's deprecated single-bundle configuration reports `bundle` instead.
        legacy = report["bundle"]
        raw_bundles = {str(legacy.get("name") or environment.name): legacy}
    bundles = {
        name: _status_section(status, f"bundles.{name}", _BUNDLE_STATUS_FIELDS) for name, status in raw_bundles.items()
    }
    bundle_name = warden_bundle_name(environment, bundles)
    fields = {
        "version": _string(labels.get("version"), "labels.version", max_length=64),
        "labels": labels,
        "bundle_name": bundle_name[:256],
        "active_revision": bundles.get(bundle_name, {}).get("active_revision", "")[:128],
        "bundles": bundles,
        "discovery": (
            _status_section(report["discovery"], "discovery", _BUNDLE_STATUS_FIELDS)
            if report.get("discovery") is not None else None
        ),
        "decision_logs": (
            _status_section(report["decision_logs"], "decision_logs", _LOG_STATUS_FIELDS)
            if report.get("decision_logs") is not None else None
        ),
        "plugins": _plugins(report.get("plugins")),
        "last_seen": timezone.now(),
    }
    return _upsert_instance(environment, labels["id"], fields)


def _upsert_instance(environment: Environment, instance_id: str, fields: dict) -> OPAInstance:
    for attempt in range(2):
        try:
            with transaction.atomic():
                instance, _ = OPAInstance.objects.update_or_create(
                    environment=environment, instance_id=instance_id, defaults=fields
                )
                return instance
        except IntegrityError:
            # Two first reports of one instance raced; the second one now updates the row.
            if attempt:
                raise
    raise AssertionError("unreachable")
