"""ASGI entry point: Warden is served by uvicorn so long-polling views can be async."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

django_application = get_asgi_application()

# Bundle polls from a fleet of sidecars are answered before Django's per-request threads;
# everything else goes to Django unchanged (see controlplane/opa/asgi.py).
from controlplane.opa.asgi import BundleServiceFastPath  # noqa: E402  (needs Django set up)

from controlplane.core.scheduler import LifespanJobs  # noqa: E402
from controlplane.metrics.asgi import RequestMetrics  # noqa: E402

# With `uvicorn --lifespan on` (make run), the embedded default runs its periodic jobs here.
# RequestMetrics counts every request, the fast path's included (GET /metrics).
application = RequestMetrics(LifespanJobs(BundleServiceFastPath(django_application)))
