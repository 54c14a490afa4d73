"""Warming a web process's rebuild caches at start, off the request path.

A registry change (a suspension: the kill switch) rebuilds each environment's bundle in the
process that took the click. The first rebuild a process makes pays, on that path, what
every later one finds cached: the active policy set read from its archive and
compile-checked (regorus, holding the GIL: 250 ms on 2 cores, during which the process's
event loop answered nothing), the signing key loaded (OpenSSL validates an RSA key on load:
about 100 ms) and every agent's JSON encoded once. Measured with `bench/sidecar_fleet.py`,
that was most of a first suspension's delay and the held polls' worst lateness. A web
process now pays it in a thread right after start (controlplane/asgi.py), then puts what it
built out of the garbage collector's reach, as it does for what start-up made.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from django.db import connection

from controlplane.bundles import archive, services
from controlplane.bundles.models import Bundle, Environment, SigningKey
from controlplane.bundles.signing import private_key_pem

logger = logging.getLogger(__name__)


def warm_rebuild_caches() -> list[str]:
    """Fill this process's caches a registry rebuild reads: each environment's active policy
    set (read, compile-checked), its registry JSON (the agents' fragments) and the signing key.
    Returns the environments warmed. Changes nothing stored. A rebuild meanwhile waits
    (services.WARMING)."""
    with services.WARMING:
        return _warm()


def _warm() -> list[str]:
    key = SigningKey.objects.filter(is_active=True).first()
    if key is not None:
        archive.signing_key(private_key_pem(key))
    warmed = []
    for environment in Environment.objects.exclude(active_bundle=None).order_by("position", "name"):
        active = Bundle.objects.defer("archive").get(pk=environment.active_bundle_id)
        services.check_compiles(services.policy_files_of(active))
        services.bundle_data_json(environment)
        warmed.append(environment.name)
    return warmed


def warm_in_background() -> threading.Thread:
    """warm_rebuild_caches() in a daemon thread; a failure (no database yet, say) is logged
    and costs the first rebuild what it cost before, nothing more."""

    def run() -> None:
        started = time.monotonic()
        try:
            warmed = warm_rebuild_caches()
        except Exception:  # noqa: BLE001 - a cache left cold is slower, not wrong
            logger.warning("could not warm the bundle rebuild caches; the first rebuild will", exc_info=True)
            return
        finally:
            connection.close()  # this thread's, which ends here
        gc.collect()
        gc.freeze()
        logger.info("bundle rebuild caches warm for %d environment(s) in %.2f s",
                    len(warmed), time.monotonic() - started)

    thread = threading.Thread(target=run, name="warden-warm-rebuild-caches", daemon=True)
    thread.start()
    return thread
