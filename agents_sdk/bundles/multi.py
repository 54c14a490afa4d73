"""Several bundles with disjoint roots, active together, as OPA loads them.

Warden's split layout (docs/opa.md) serves an environment as two bundles: its policies
(``bundles/<env>/policy``) and its registry (``bundles/<env>/registry``, root
``warden_registry``). After a suspension only the registry bundle changes, so only it is
downloaded; the policy bundle's long poll stays held.

``BundleSet`` keeps one ``BundleClient`` per bundle and looks like a single client to
``EmbeddedBackend``: its ``active`` bundle is the merge of the parts (modules of all,
data of all), and a part is activated only if the merge with the other active parts is
accepted by the activator (compiled), so a bad part never replaces a good one. As in OPA,
roots of different bundles must not overlap; a part whose roots do is refused.

    policy = BundleClient(url, "bundles/prod/policy", name="prod-policy", ...)
    registry = BundleClient(url, "bundles/prod/registry", name="prod-registry", ...)
    backend = EmbeddedBackend(BundleSet([policy, registry]))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agents_sdk.bundles.archive import Bundle
from agents_sdk.bundles.client import BundleClient, BundleStatus
from agents_sdk.bundles.format import BundleError

logger = logging.getLogger(__name__)


def _overlaps(a: str, b: str) -> bool:
    if not a or not b:
        return True  # an empty root claims everything
    a_parts, b_parts = a.strip("/").split("/"), b.strip("/").split("/")
    shorter = min(len(a_parts), len(b_parts))
    return a_parts[:shorter] == b_parts[:shorter]


def _merge_data(into: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merged = dict(into[key])
            _merge_data(merged, value)
            into[key] = merged
        else:
            into[key] = value


def merge_bundles(bundles: Sequence[Bundle]) -> Bundle:
    """One bundle holding the modules and data of `bundles`, whose roots must be disjoint
    (raises BundleError otherwise, as OPA refuses to activate overlapping bundles)."""
    roots: list[tuple[str, int]] = []
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for index, bundle in enumerate(bundles):
        for root in bundle.roots or ("",):
            for other, owner in roots:
                if owner != index and _overlaps(root, other):
                    raise BundleError(f"bundle roots overlap: {root!r} and {other!r}")
            roots.append((root, index))
        for path, source in bundle.modules.items():
            modules[f"{bundle.revision[:12]}/{path}" if path in modules else path] = source
        _merge_data(data, bundle.data)
    return Bundle(
        revision="+".join(bundle.revision for bundle in bundles),
        roots=tuple(root for root, _ in roots),
        manifest={"revision": "+".join(b.revision for b in bundles), "bundles": [b.manifest for b in bundles]},
        modules=modules,
        data=data,
        files=tuple(f"{b.revision[:12]}/{name}" for b in bundles for name in b.files),
        archive=b"".join(b.archive for b in bundles),
        etag="+".join(b.etag for b in bundles),
    )


class BundleSet:
    """Bundles with disjoint roots kept active together; the interface EmbeddedBackend uses
    of a BundleClient (``active``, ``set_activator``, ``start``, ``stop``,
    ``wait_until_ready``, ``age_problem``, ``add_listener``)."""

    def __init__(self, clients: Sequence[BundleClient]):
        if not clients:
            raise ValueError("a bundle set needs at least one bundle client")
        names = [client.name for client in clients]
        if len(set(names)) != len(names):
            raise ValueError(f"bundle names must differ: {names}")
        self.clients = list(clients)
        self.name = "+".join(names)
        self._activate: Callable[[Bundle], None] | None = None
        self._active: Bundle | None = None
        self._lock = threading.RLock()  # one part activates at a time, so merges never race
        self._listeners: list[Callable[[Bundle], None]] = []
        for client in self.clients:
            client.set_activator(self._activator_for(client))

    @property
    def active(self) -> Bundle | None:
        return self._active

    def set_activator(self, activate: Callable[[Bundle], None] | None) -> None:
        self._activate = activate

    def add_listener(self, listener: Callable[[Bundle], None]) -> None:
        self._listeners.append(listener)

    def statuses(self) -> list[BundleStatus]:
        return [client.status() for client in self.clients]

    def status(self) -> BundleStatus:
        """The status of the first part with an error, else of the last part."""
        statuses = self.statuses()
        return next((status for status in statuses if status.code), statuses[-1])

    def age_problem(self) -> str | None:
        return next((problem for client in self.clients if (problem := client.age_problem())), None)

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        for client in self.clients:
            if not client.wait_until_ready(timeout):
                return False
        return self._active is not None

    def start(self) -> BundleSet:
        for client in self.clients:
            client.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        for client in self.clients:
            client.stop(timeout)

    def _activator_for(self, client: BundleClient) -> Callable[[Bundle], None]:
        def activate(bundle: Bundle) -> None:
            with self._lock:
                parts = [bundle if other is client else other.active for other in self.clients]
                if any(part is None for part in parts):
                    return  # the others are not there yet: nothing to decide with until they are
                merged = merge_bundles([part for part in parts if part is not None])
                if self._activate is not None:
                    self._activate(merged)  # raises to refuse: the client keeps its previous part
                self._active = merged
            for listener in list(self._listeners):
                try:
                    listener(merged)
                except Exception:  # a listener must not undo an activation
                    logger.exception("bundle set listener failed")

        return activate
