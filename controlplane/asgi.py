"""ASGI entry point: Warden is served by uvicorn so long-polling views can be async."""

import gc
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

# Load every view now (Django would at the first request), then put what start-up made out of
# the garbage collector's reach: a loaded Django is some 110,000 objects that live as long as
# the process, and each full collection walked them all (212 ms on 2 loaded cores, a pause
# every held long poll and 304 of the process felt). Collections now walk what requests made.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018  (imports the URLconf and, through it, the views)
gc.collect()
gc.freeze()
