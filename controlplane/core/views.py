"""Service-level endpoints that belong to no domain."""

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness and database reachability, for load balancers and `make run` checks."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # noqa: BLE001 - any failure means the database is unusable
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return JsonResponse({"status": "ok" if status == 200 else "degraded", "database": database}, status=status)


def livez(request):
    """Liveness: the process answers. No dependency is checked, so a database outage does
    not make Kubernetes restart every pod at once."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: the database answers and Redis (broker, cache, long-poll fan-out) pings.
    A pod that cannot reach either is taken out of the load balancer until it can."""
    from django.conf import settings

    checks = {"database": "ok", "redis": "ok" if settings.REDIS_URL else "not configured"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means the database is unusable
        checks["database"] = "unavailable"
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        except Exception:  # noqa: BLE001 - a Redis that does not answer is unavailable
            checks["redis"] = "unavailable"
        finally:
            client.close()
    ready = "unavailable" not in checks.values()
    return JsonResponse({"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503)
