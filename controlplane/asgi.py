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
# Held long polls (~95 objects each, held for most of their wait) age into the oldest
# generation, and collecting it walks every poll the process holds: 22 ms per 500 polls on an
# idle core, 50 ms and more on a busy one, every held poll of the process late by as much
# (bench/sidecar_fleet.py: two or three a minute at 500 polls a process). Such collections now
# come after 100 collections of the middle generation instead of 10. The price, cycles that
# reach the oldest generation freed later, is small: a held poll leaves none
# (tests/opa/test_long_poll_garbage.py).
FULL_COLLECTION_AFTER = 100
gc.set_threshold(gc.get_threshold()[0], gc.get_threshold()[1], FULL_COLLECTION_AFTER)

# Then what the first registry rebuild would read, compile and load on the kill switch's path,
# in a thread (controlplane/bundles/warmup.py): the first suspension after a restart costs what
# later ones do.
from controlplane.bundles.warmup import warm_in_background  # noqa: E402

warm_in_background()
