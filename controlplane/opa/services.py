"""Storing what OPA instances upload: decision logs and status reports.

These are telemetry, not configuration changes, so unlike other services they write no
change log entries (a fleet would flood it). Both are safe to repeat: OPA re-sends a
decision log chunk when it missed our 2xx, and sends a status report at every poll.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents_sdk.records import value_problem
from controlplane.audit import conf as audit_conf
from controlplane.audit import records as audit_records
from controlplane.bundles.models import Bundle, BundlePart, Environment
from controlplane.core.exceptions import InvalidInput
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog, OPAInstance, RejectedDecisionLog

# Limits on uploads. OPA's default decision log chunk is 32 KiB compressed
# (decision_logs.reporting.upload_size_limit_bytes); these leave ample room above it.
MAX_LOG_UPLOAD_BYTES = 1024 * 1024
MAX_LOG_INFLATED_BYTES = 8 * 1024 * 1024
MAX_STATUS_BYTES = 1024 * 1024

MAX_ID_LENGTH = 128
MAX_REJECTED_EVENT_CHARACTERS = 64 * 1024
MAX_PATH_LENGTH = 1024
_LOOKUP_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    rejected: int = 0


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


@dataclass(frozen=True)
class _Rejection:
    position: int
    reason: str
    message: str
    event: Any


def ingest_decision_logs(environment: Environment, events, *, received_at: datetime | None = None) -> IngestResult:
    """Store an upload (a JSON array of OPA decision events): every valid event once, each
    bad one rejected apart with its reason, so the chunk is always answered 200.

    Refusing a chunk for one event would make OPA retry it ahead of all later chunks for
    good. An event is rejected when a value cannot be stored (U+0000, an unpaired surrogate,
    1e400, nesting too deep), a field is malformed, or the agent it names does not run in the
    token's environment (one environment must not write another's agents' evidence).
    Sensitive key names are masked before anything is stored. A decision is stored once per
    (environment, instance, decision_id): a resent chunk stores nothing new.
    """
    return ingest_decision_log_uploads(environment, [(events, received_at or timezone.now())])[0]


def ingest_decision_log_uploads(environment: Environment, uploads: list[tuple[Any, datetime]]) -> list[IngestResult]:
    """Several uploads `(events, received_at)` of one environment, each stored as
    ingest_decision_logs stores it, in order (a decision an earlier upload stored counts as
    already stored in a later one), with one agent lookup, one lookup of known decision ids
    per 500 and one insert for all of them: the upload queue's drain stores its batch so."""
    for events, _ in uploads:
        if not isinstance(events, list):
            raise InvalidInput("must be a JSON array of decision events", field="body")
    sensitive = audit_conf.sensitive_keys()
    rows: dict[tuple[str, str], tuple[int, DecisionLog]] = {}
    rejected: list[tuple[int, _Rejection]] = []
    parsed: list[tuple[int, int, DecisionLog]] = []
    for upload, (events, received_at) in enumerate(uploads):
        for index, event in enumerate(events):
            problem = value_problem(event, f"[{index}]")
            if problem:
                rejected.append((upload, _Rejection(index, "unstorable", problem, event)))
                continue
            try:
                parsed.append((upload, index, _decision_log(environment, event, index, received_at)))
            except InvalidInput as exc:
                rejected.append((upload, _Rejection(index, "malformed", _first_error(exc), event)))
    allowed = _agents_running_in(environment, [row.input for _, _, row in parsed])
    for upload, index, row in parsed:
        agent = _agent_named(row.input)
        if agent is not None and agent not in allowed:
            rejected.append((upload, _Rejection(index, "foreign_agent", (
                f"[{index}].input.agent names {agent!r}, which does not run in environment {environment.name!r}: "
                "decision logs of an agent come from its own environment's OPA"
            ), row.event)))
            continue
        _mask_sensitive(row, sensitive)
        rows.setdefault((row.instance_id, row.decision_id), (upload, row))
    with transaction.atomic():
        known: set[tuple[str, str]] = set()
        keys = list(rows)
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            known.update(
                DecisionLog.objects.filter(environment=environment, decision_id__in=[d for _, d in chunk])
                .values_list("instance_id", "decision_id")
            )
        fresh = [(upload, row) for key, (upload, row) in rows.items() if key not in known]
        # ignore_conflicts: a concurrent upload of the same chunk may have stored some meanwhile.
        DecisionLog.objects.bulk_create([row for _, row in fresh], batch_size=_LOOKUP_CHUNK, ignore_conflicts=True)
        RejectedDecisionLog.objects.bulk_create(
            [_rejected_row(environment, r, uploads[upload][1], sensitive) for upload, r in rejected],
            batch_size=_LOOKUP_CHUNK,
        )
    stored = Counter(upload for upload, _ in fresh)
    refused = Counter(upload for upload, _ in rejected)
    return [
        IngestResult(received=len(events), stored=stored[upload], rejected=refused[upload])
        for upload, (events, _) in enumerate(uploads)
    ]


def _first_error(exc: InvalidInput) -> str:
    return f"{exc.field}: {exc}"


def _agent_named(decision_input: Any) -> str | None:
    """The agent a decision input names (input.agent.name or .id, as Warden's SDK sends), if any."""
    agent = decision_input.get("agent") if isinstance(decision_input, dict) else None
    if not isinstance(agent, dict):
        return None
    name = agent.get("name") if isinstance(agent.get("name"), str) else agent.get("id")
    return name if isinstance(name, str) else None


def _agents_running_in(environment: Environment, inputs: list[Any]) -> set[str]:
    names = {name for name in map(_agent_named, inputs) if name is not None}
    if not names:
        return set()
    return {
        name for name, environments in Agent.objects.filter(name__in=names).values_list("name", "environments")
        if environment.name in (environments or [])
    }


def _mask_sensitive(row: DecisionLog, sensitive: frozenset[str]) -> None:
    """Mask values under sensitive key names in the input, the result and the raw event."""
    row.input, input_paths = audit_records.mask_payload(row.input, [], sensitive)
    row.result, result_paths = audit_records.mask_payload(row.result, [], sensitive)
    row.event, _ = audit_records.mask_payload(row.event, [], sensitive)
    added = [f"/input{p}" for p in input_paths] + [f"/result{p}" for p in result_paths]
    row.masked = sorted(set(row.masked) | set(added))


def _rejected_row(environment, rejection: _Rejection, received_at, sensitive) -> RejectedDecisionLog:
    event = rejection.event
    labels = event.get("labels") if isinstance(event, dict) else None
    instance_id = labels.get("id") if isinstance(labels, dict) else None
    decision_id = event.get("decision_id") if isinstance(event, dict) else None
    try:
        masked, _ = audit_records.mask_payload(event, [], sensitive)
        text = json.dumps(masked, ensure_ascii=True, sort_keys=True)  # escapes U+0000 and surrogates
    except (RecursionError, ValueError):
        text = "(not shown: nested too deeply to print)"
    return RejectedDecisionLog(
        environment=environment,
        instance_id=_printable(instance_id, MAX_ID_LENGTH),
        decision_id=_printable(decision_id, MAX_ID_LENGTH),
        position=rejection.position,
        reason=rejection.reason,
        message=rejection.message,
        event=text[:MAX_REJECTED_EVENT_CHARACTERS],
        received_at=received_at,
    )


def _printable(value: Any, limit: int) -> str:
    """A string column's value from anything: U+0000 and surrogates escaped, cut to `limit`."""
    if not isinstance(value, str):
        return ""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")[:limit]


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


def split_revision(environment: Environment, bundles: dict) -> str:
    """The revision of the combined bundle an engine of the split layout runs, from the
    revisions of its `<env>-policy` and `<env>-registry` bundles ("" when none matches)."""
    policy = bundles.get(f"{environment.name}-policy", {}).get("active_revision", "")
    registry = bundles.get(f"{environment.name}-registry", {}).get("active_revision", "")
    if not policy or not registry:
        return ""
    found = (
        Bundle.objects.filter(environment=environment, parts__kind=BundlePart.Kind.REGISTRY, parts__revision=registry)
        .filter(parts__kind=BundlePart.Kind.POLICY, parts__revision=policy)
        .values_list("revision", flat=True)
        .first()
    )
    return found or ""


def record_status(environment: Environment, report, *, seen_at: datetime | None = None) -> OPAInstance:
    """Upsert the instance `labels.id` of `environment` from an OPA status report.

    Unknown fields (metrics, and whatever later OPA versions add) are ignored; known fields
    of the wrong type are refused with their path.
    """
    fields = _instance_fields(environment, report, seen_at or timezone.now())
    return _upsert_instance(environment, fields["labels"]["id"], fields)


# What a status report updates on its instance's row (first_seen is set once, on insert).
_INSTANCE_FIELDS = ["version", "labels", "bundles", "discovery", "decision_logs", "plugins", "bundle_name",
                    "active_revision", "last_seen"]


def record_statuses(reports: list[tuple[Environment, Any, datetime]]) -> None:
    """Status reports `(environment, report, seen_at)`, each recorded as record_status
    records it, in one upsert (the upload queue's drain); of several reports of one instance
    the last wins. InvalidInput names the first bad report's field, and nothing is stored."""
    latest: dict[tuple[Any, str], OPAInstance] = {}
    for environment, report, seen_at in reports:
        fields = _instance_fields(environment, report, seen_at)
        latest[(environment.pk, fields["labels"]["id"])] = OPAInstance(
            environment=environment, instance_id=fields["labels"]["id"], **fields
        )
    with transaction.atomic():
        OPAInstance.objects.bulk_create(
            list(latest.values()), update_conflicts=True, unique_fields=["environment", "instance_id"],
            update_fields=_INSTANCE_FIELDS,
        )


def _instance_fields(environment: Environment, report, seen_at: datetime) -> dict:
    fields = status_fields(environment.name, report)
    bundles = fields["bundles"]
    bundle_name = warden_bundle_name(environment, bundles)
    active_revision = bundles.get(bundle_name, {}).get("active_revision", "")[:128]
    if not bundle_name and f"{environment.name}-registry" in bundles:
        bundle_name = f"{environment.name}-registry"
        active_revision = split_revision(environment, bundles)
    fields.update(bundle_name=bundle_name[:256], active_revision=active_revision, last_seen=seen_at)
    return fields


def status_fields(environment_name: str, report) -> dict:
    """The fields Warden keeps of an OPA status report, or InvalidInput naming the bad one.
    No query: the upload queue (controlplane.opa.uploads) checks reports with it before queueing."""
    if not isinstance(report, dict):
        raise InvalidInput("must be a JSON object (an OPA status report)", field="body")
    labels = _labels(report.get("labels"), "labels")
    raw_bundles = _object(report.get("bundles"), "bundles")
    if not raw_bundles and isinstance(report.get("bundle"), dict):
        # OPA's deprecated single-bundle configuration reports `bundle` instead.
        legacy = report["bundle"]
        raw_bundles = {str(legacy.get("name") or environment_name): legacy}
    bundles = {
        name: _status_section(status, f"bundles.{name}", _BUNDLE_STATUS_FIELDS) for name, status in raw_bundles.items()
    }
    return {
        "version": _string(labels.get("version"), "labels.version", max_length=64),
        "labels": labels,
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
    }


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
