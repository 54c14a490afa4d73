"""A web process takes its start-up heap out of the garbage collector's reach
(controlplane/asgi.py): a full collection of a loaded Django walked some 100,000 objects that
live as long as the process, a pause of 212 ms on 2 loaded cores (over a second in
bench/sidecar_fleet.py --server-probe at load 15) that every held long poll of the process felt."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOAD_THE_ASGI_APPLICATION = """
import gc, sys
import django
django.setup()
before = gc.get_freeze_count()
import controlplane.asgi
print(before, gc.get_freeze_count(), "controlplane.opa.views" in sys.modules)
"""


def test_loading_the_asgi_application_loads_every_view_and_freezes_the_start_up_heap():
    done = subprocess.run(
        [sys.executable, "-c", LOAD_THE_ASGI_APPLICATION], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT)}, check=True,
    )
    before, frozen, views_loaded = done.stdout.split()
    assert before == "0"
    assert int(frozen) > 10_000  # Django, DRF, every app and view: left out of every collection
    assert views_loaded == "True"  # the URLconf's views were loaded before freezing, not at the first request


LOAD_AND_LIST_HEAVY_MODULES = """
import sys
import django
django.setup()
import controlplane.asgi
from controlplane.celery import app
app.loader.import_default_modules()  # what a Celery worker imports at start
print(sorted(name for name in ("numpy", "scipy", "scipy.stats") if name in sys.modules))
from controlplane.detection.engine import stats
print(stats.count_threshold([1, 2, 3, 40], floor=5).value > 40, "scipy.stats" in sys.modules)
"""


def test_web_and_worker_processes_import_numpy_and_scipy_only_when_a_threshold_is_computed():
    """scipy.stats and numpy are some 75 MiB of resident memory that a web process, which
    never computes a detection threshold, carried from start-up (issue #20)."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LIST_HEAVY_MODULES], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT)}, check=True,
    )
    at_start, computed = done.stdout.strip().splitlines()[-2:]
    assert at_start == "[]"
    assert computed == "True True"  # and a threshold still computes, importing them then


FLEET_TURNOVER = """
import gc, sys
import django
django.setup()
if sys.argv[1] == "web":
    import controlplane.asgi
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None)
held = []
for _ in range(40):  # rounds of 500 held polls of ~95 objects, each round ended by the next
    held = [[[] for _ in range(95)] for _ in range(500)]
    for _ in range(20):  # the short-lived objects of the requests meanwhile
        answered = [[] for _ in range(700)]
print(len(full))
"""


def test_a_web_process_collects_its_oldest_generation_ten_times_less_often_as_held_polls_turn_over():
    """Each collection of the oldest generation walks every held poll of the process (22 ms per
    500 polls on an idle core), pausing all of them: a fleet's turnover of held polls triggered
    one every round; a web process makes a tenth as many (controlplane/asgi.py)."""

    def full_collections(kind: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", FLEET_TURNOVER, kind], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT)},
            check=True,
        )
        return int(done.stdout.split()[-1])

    plain, web = full_collections("plain"), full_collections("web")
    assert plain >= 10
    assert web * 5 <= plain, f"a web process made {web} full collections where Python's defaults make {plain}"
