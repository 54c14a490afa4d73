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
