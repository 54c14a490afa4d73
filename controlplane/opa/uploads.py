"""Status reports and decision logs accepted fast, stored off the request path.

A fleet of OPA instances posts a status report at every bundle activation and plugin
change and a decision log chunk every few seconds. Storing them inside the request ties a
web process's event loop to the database: at 1,000 sidecars one process spent its time on
~200 uploads/s and answered held polls a minute late. So, when Celery runs on Redis (not
eagerly), an upload is authenticated, bounded, inflated and checked in the web process,
then pushed as it arrived (still compressed) onto one bounded Redis list, and a Celery task
(`opa.ingest_uploads`) stores it with the same services as before
(services.ingest_decision_logs, services.record_status).

- Bounded: past WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS items or _MAX_BYTES bytes the upload is refused
  with 429 and Retry-After (OPA keeps the chunk and sends it again), never dropped.
  Redis unreachable: 503 and Retry-After.
- Nothing lost by a dying worker: items leave the list only after they are stored (LRANGE,
  store, then LTRIM under the drain lock), and storing twice stores nothing new (decision
  ids are unique per instance, a status report is an upsert).
- An item that cannot be stored for a reason other than the database (its environment was
  deleted, a bug) is moved to FAILED_KEY with the reason and logged, not retried forever.
- Status reports of one instance within one drained batch are coalesced: the latest wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from controlplane.core.exceptions import InvalidInput, PayloadTooLarge, UnsupportedEncoding
from controlplane.opa import services
from controlplane.opa.authentication import AuthenticationFailed, aauthenticate
from controlplane.opa.bundle_service import Reply, error_reply, unauthorized
from controlplane.opa.payloads import decode_body, parse_json, parse_json_values_later

logger = logging.getLogger(__name__)

QUEUE_KEY = "warden:opa:uploads"
BYTES_KEY = "warden:opa:uploads:bytes"
FAILED_KEY = "warden:opa:uploads:failed"
LOCK_KEY = "warden:opa:uploads:draining"
RETRY_AFTER_SECONDS = 5
DRAIN_BATCH = 200
# The drain lock outlives any one batch; it is renewed before each batch.
LOCK_SECONDS = 120
DRAIN_SECONDS = 50
# Generous: on a saturated host a connect can take seconds, and the answer is then a 503.
REDIS_TIMEOUT_SECONDS = 5.0
REDIS_CONNECTIONS = 4

LOGS, STATUS = "logs", "status"
LIMITS = {
    LOGS: (services.MAX_LOG_UPLOAD_BYTES, services.MAX_LOG_INFLATED_BYTES),
    STATUS: (services.MAX_STATUS_BYTES, services.MAX_STATUS_BYTES),
}

# KEYS: queue, bytes counter. ARGV: item, max items, max bytes. → new length, or -1 when full.
_PUSH = """
local size = string.len(ARGV[1])
if redis.call('llen', KEYS[1]) >= tonumber(ARGV[2])
   or tonumber(redis.call('get', KEYS[2]) or '0') + size > tonumber(ARGV[3]) then
  return -1
end
redis.call('incrby', KEYS[2], size)
return redis.call('rpush', KEYS[1], ARGV[1])
"""
# KEYS: queue, bytes counter, lock. ARGV: lock token, items stored, their bytes. → 1, or 0 if the lock was lost.
_TRIM = """
if redis.call('get', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[1], tonumber(ARGV[2]), -1)
if tonumber(redis.call('decrby', KEYS[2], tonumber(ARGV[3]))) < 0 then redis.call('set', KEYS[2], 0) end
return 1
"""
_RENEW = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('expire', KEYS[1], tonumber(ARGV[2]))
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""


class QueueFull(Exception):
    """429: the upload queue is at its bound."""


class QueueUnavailable(Exception):
    """503: Redis could not be reached."""


def enabled() -> bool:
    """Uploads are queued when Celery runs on Redis; eagerly (the embedded default, tests of
    the stored rows) they are stored in the request, as one process has no one to hand off to."""
    from celery import current_app

    return bool(settings.REDIS_URL) and not current_app.conf.task_always_eager


def check(kind: str, environment_name: str, body: bytes, content_encoding: str) -> dict:
    """What the request path checks before queueing: the encoding, the size after inflating,
    the JSON, and (status) every field Warden keeps. Returns the answer's body."""
    raw = decode_body(body, content_encoding, max_inflated_bytes=LIMITS[kind][1])
    if kind == STATUS:
        fields = services.status_fields(environment_name, parse_json(raw))
        return {"instance_id": fields["labels"]["id"], "queued": True}
    events = parse_json_values_later(raw)
    if not isinstance(events, list):
        raise InvalidInput("must be a JSON array of decision events", field="body")
    # Per-event problems are found when storing, and kept apart as before (services).
    return {"received": len(events), "queued": True}


# Bodies larger than this are inflated and parsed in a thread, not on the event loop.
INLINE_CHECK_BYTES = 64 * 1024


async def upload_reply(kind: str, *, authorization: str, content_encoding: str, body: bytes) -> Reply:
    """POST logs / POST status when queueing: 200 once queued, 4xx for a bad upload, 429 or
    503 with Retry-After when it cannot be queued (OPA keeps it and retries)."""
    try:
        client = await aauthenticate(authorization)
        args = (kind, client.environment_name, body, content_encoding)
        answer = check(*args) if len(body) <= INLINE_CHECK_BYTES else await asyncio.to_thread(check, *args)
        await push(encode(kind, client.environment_id, body, content_encoding, timezone.now()))
    except AuthenticationFailed as exc:
        return unauthorized(exc)
    except PayloadTooLarge as exc:
        return error_reply(413, exc.message)
    except UnsupportedEncoding as exc:
        return error_reply(415, exc.message)
    except InvalidInput as exc:
        return Reply(400, {"Content-Type": "application/json"}, json.dumps({exc.field: [exc.message]}).encode())
    except QueueFull:
        return error_reply(429, "the upload queue is full; retry later", **{"Retry-After": str(RETRY_AFTER_SECONDS)})
    except QueueUnavailable:
        return error_reply(503, "the upload queue is unavailable; retry later",
                           **{"Retry-After": str(RETRY_AFTER_SECONDS)})
    return Reply(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())


def encode(kind: str, environment_id: str, body: bytes, content_encoding: str, received_at: datetime) -> bytes:
    header = {"kind": kind, "environment_id": environment_id, "encoding": content_encoding,
              "received_at": received_at.isoformat()}
    return json.dumps(header).encode() + b"\n" + body


def decode(item: bytes) -> tuple[dict, bytes]:
    header, _, body = item.partition(b"\n")
    return json.loads(header), body


# ---- the web side (async, one Redis connection pool per event loop)

_clients: dict[asyncio.AbstractEventLoop, object] = {}


def _async_client():
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        for old in [other for other in _clients if other.is_closed()]:
            _clients.pop(old, None)
        # A few connections, shared: a burst of uploads waits for one instead of opening hundreds.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


async def push(item: bytes) -> int:
    """Queue one upload; the queue's new length. QueueFull at the bound, QueueUnavailable
    when Redis cannot be reached."""
    import redis

    try:
        length = await _async_client().eval(_PUSH, 2, QUEUE_KEY, BYTES_KEY, item,
                                            settings.WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS,
                                            settings.WARDEN_OPA_UPLOAD_QUEUE_MAX_BYTES)
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailable(str(exc)) from exc
    if length < 0:
        raise QueueFull()
    if length == 1:
        # The queue was empty, so no drain is running or about to: start one (off the loop,
        # Celery's client is blocking). While it drains, later pushes find it running.
        await asyncio.to_thread(_start_drain)
    return length


def _start_drain() -> None:
    from controlplane.core.tasks import send_now

    try:
        send_now("opa.ingest_uploads")
    except Exception:  # noqa: BLE001 - the periodic drain (celery beat) takes over
        logger.warning("could not queue opa.ingest_uploads; the periodic drain will store the uploads", exc_info=True)


# ---- the worker side (sync)


def _client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                socket_timeout=REDIS_TIMEOUT_SECONDS * 5)


def drain(*, max_seconds: float = DRAIN_SECONDS) -> int:
    """Store queued uploads, a batch at a time, until the queue is empty or `max_seconds`
    pass (then another drain is queued). Returns how many items were handled. One drain
    runs at a time (a Redis lock); a second returns 0 at once."""
    if not settings.REDIS_URL:
        return 0  # eager mode: uploads were stored in their requests
    client = _client()
    token = uuid.uuid4().hex
    if not client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
        return 0
    handled = 0
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            if not client.eval(_RENEW, 1, LOCK_KEY, token, LOCK_SECONDS):
                return handled
            items = client.lrange(QUEUE_KEY, 0, DRAIN_BATCH - 1)
            if not items:
                break
            with transaction.atomic():  # one commit per batch, not one per upload
                store(items, on_failure=lambda item, reason: _set_aside(client, item, reason))
            if not client.eval(_TRIM, 3, QUEUE_KEY, BYTES_KEY, LOCK_KEY, token, len(items), sum(map(len, items))):
                return handled  # another drain took over: it stores them (again, harmlessly)
            handled += len(items)
    finally:
        client.eval(_RELEASE, 1, LOCK_KEY, token)
    if client.llen(QUEUE_KEY):
        # Items pushed while this drain was ending (their push saw a non-empty queue).
        _start_drain()
    return handled


def _set_aside(client, item: bytes, reason: str) -> None:
    logger.error("upload set aside in %s: %s", FAILED_KEY, reason)
    client.rpush(FAILED_KEY, json.dumps({"reason": reason}).encode() + b"\n" + item)


def store(items: list[bytes], *, on_failure) -> None:
    """Store queued uploads: the decision logs of each environment together, in order, and
    the status reports in one upsert, coalesced per instance (the latest wins): a few queries
    per batch, not per upload. A DatabaseError propagates (the items stay queued); any other
    failure of an item calls `on_failure(item, reason)`, and the others are stored."""
    from controlplane.bundles.models import Environment

    environments: dict[str, Environment | None] = {}
    logs: dict[str, list[tuple[bytes, Environment, list, datetime]]] = {}
    latest_status: dict[tuple[str, str], tuple[bytes, Environment, object, datetime]] = {}
    for item in items:
        try:
            header, body = decode(item)
            environment_id = header["environment_id"]
            if environment_id not in environments:
                environments[environment_id] = Environment.objects.filter(pk=environment_id).first()
            environment = environments[environment_id]
            if environment is None:
                raise LookupError(f"environment {environment_id} no longer exists")
            received_at = datetime.fromisoformat(header["received_at"])
            raw = decode_body(body, header["encoding"], max_inflated_bytes=LIMITS[header["kind"]][1])
            if header["kind"] == LOGS:
                events = parse_json_values_later(raw)
                if not isinstance(events, list):
                    raise InvalidInput("must be a JSON array of decision events", field="body")
                logs.setdefault(environment_id, []).append((item, environment, events, received_at))
            else:
                report = parse_json(raw)
                latest_status[(environment_id, report["labels"]["id"])] = (item, environment, report, received_at)
        except DatabaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - set aside with its reason, never dropped silently
            on_failure(item, _reason(exc))
    for of_one_environment in logs.values():
        _together(of_one_environment, on_failure, _store_logs, _store_log)
    _together(list(latest_status.values()), on_failure, _store_statuses, _store_status)


# Each item below is (queued item, environment, parsed body, received_at).
def _store_logs(items: list[tuple]) -> None:
    services.ingest_decision_log_uploads(items[0][1], [(events, at) for _, _, events, at in items])


def _store_log(item: tuple) -> None:
    services.ingest_decision_logs(item[1], item[2], received_at=item[3])


def _store_statuses(items: list[tuple]) -> None:
    services.record_statuses([(environment, report, at) for _, environment, report, at in items])


def _store_status(item: tuple) -> None:
    services.record_status(item[1], item[2], seen_at=item[3])


def _together(group: list[tuple], on_failure, store_all, store_one) -> None:
    """`store_all(group)`; if it fails for a reason other than the database, each item again
    on its own (`store_one`), so only the items that cannot be stored are set aside."""
    if not group:
        return
    try:
        with transaction.atomic():
            store_all(group)
        return
    except DatabaseError:
        raise
    except Exception:  # noqa: BLE001 - found item by item below
        logger.warning("storing %d queued uploads together failed; storing them one by one", len(group), exc_info=True)
    for one in group:
        try:
            with transaction.atomic():
                store_one(one)
        except DatabaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - set aside with its reason, never dropped silently
            on_failure(one[0], _reason(exc))


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def queued() -> int:
    """Uploads waiting to be stored (the bench)."""
    return int(_client().llen(QUEUE_KEY))


def backlog(client) -> dict[str, int]:
    """What GET /metrics reports of the queue, read with `client` (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(QUEUE_KEY)
    pipe.get(BYTES_KEY)
    pipe.llen(FAILED_KEY)
    items, size, set_aside = pipe.execute()
    return {"items": int(items), "bytes": int(size or 0), "set_aside": int(set_aside)}
