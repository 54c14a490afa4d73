"""Downloading bundles with OPA's protocol and keeping the active one."""


from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import urllib3

from agents_sdk.bundles.archive import Bundle, parse_bundle, read_archive
from agents_sdk.bundles.delta import apply_delta, is_delta
from agents_sdk.bundles.format import LONG_POLL_CONTENT_TYPE, ZERO_TIME, BundleError, _now
from agents_sdk.bundles.freshness import StaleBundleError, age_problem, built_at, check_newer
from agents_sdk.bundles.keys import VerificationConfig
from agents_sdk.bundles.store import BundleStore
from agents_sdk.version import __version__

logger = logging.getLogger(__name__)


# -- the client -------------------------------------------------------------------------


def backoff_delay(retry: int, max_delay: float, *, base: float = 0.1, factor: float = 1.6) -> float:
    """OPA's DefaultBackoff: 0 for the first retry, then base·factor^n ±20 %, capped."""
    if retry <= 0:
        return 0.0
    delay = base * factor**retry
    delay *= 1 + random.uniform(-0.2, 0.2)
    return min(delay, max_delay)


@dataclass
class BundleStatus:
    """One bundle's state, in the shape of OPA's status API (``bundles.<name>``)."""

    name: str
    active_revision: str = ""
    last_request: str = ZERO_TIME
    last_successful_request: str = ZERO_TIME
    last_successful_download: str = ZERO_TIME
    last_successful_activation: str = ZERO_TIME
    size: int = 0
    code: str = ""
    message: str = ""
    http_code: int | None = None
    source: str = ""  # "control plane" or "persisted": where the active bundle came from
    type: str = "snapshot"  # OPA's bundle type: "delta" when the last activation was a delta bundle

    def as_opa(self) -> dict[str, Any]:
        """The status as OPA reports it (omitempty fields left out)."""
        status: dict[str, Any] = {
            "name": self.name,
            "last_request": self.last_request,
            "last_successful_request": self.last_successful_request,
            "last_successful_download": self.last_successful_download,
            "last_successful_activation": self.last_successful_activation,
        }
        if self.active_revision:
            status["active_revision"] = self.active_revision
            status["type"] = self.type
        if self.size:
            status["size"] = self.size
        if self.code:
            status["code"] = self.code
            status["message"] = self.message
        if self.http_code:
            status["http_code"] = self.http_code
        return status


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _pool() -> urllib3.PoolManager:
    # One kept-alive connection per client (one refresher thread polls). Redirects are never
    # followed (the bearer token must not travel to another host); urllib3 retries only a
    # connect that failed before the request was sent, the poll loop backs off for the rest.
    return urllib3.PoolManager(
        num_pools=2, maxsize=1, block=False,
        retries=urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=False, raise_on_redirect=False),
    )


class BundleClient:
    """Keeps one OPA bundle active: downloaded, verified, activated, persisted, refreshed.

    ``activate(bundle)`` is called before a new bundle becomes active (for example to
    compile it); if it raises, the bundle is refused and the previous one stays. Once
    ``start`` is called, a daemon thread long-polls (``long_polling_timeout`` seconds,
    OPA's ``polling.long_polling_timeout_seconds``) or polls every
    ``min_delay..max_delay`` seconds, backing off after errors. The active bundle is
    never replaced by one that fails.

    Freshness (``agents_sdk.bundles.freshness``): a bundle signed before the active one is
    refused (``StaleBundleError``). With ``max_age`` (seconds), a downloaded bundle older
    than that is refused, and ``age_problem()`` says when the active one has expired
    (``EmbeddedBackend`` then denies every decision, ``stale-bundle``).

    ``deltas=True`` asks Warden for delta bundles (``?delta=1``, docs/opa.md): a change is
    then a patch applied to the active bundle's data (``agents_sdk.bundles.delta``); only
    snapshots are persisted.
    """

    def __init__(
        self,
        service_url: str,
        resource: str,
        *,
        name: str | None = None,
        token: str | None = None,
        token_path: str | os.PathLike[str] | None = None,
        scheme: str = "Bearer",
        headers: Mapping[str, str] | None = None,
        verification: VerificationConfig | None = None,
        persist_dir: str | os.PathLike[str] | None = None,
        long_polling_timeout: int | None = None,
        min_delay: float = 60.0,
        max_delay: float = 120.0,
        response_header_timeout: float = 10.0,
        activate: Callable[[Bundle], None] | None = None,
        on_status: Callable[[BundleStatus], None] | None = None,
        max_age: float | None = None,
        deltas: bool = False,
    ):
        if not service_url.startswith(("http://", "https://")):
            raise ValueError(f"bundle service URL {service_url!r} must start with http:// or https://")
        if token and token_path:
            raise ValueError("give a token or a token_path, not both")
        if long_polling_timeout is not None and long_polling_timeout < 1:
            raise ValueError("long_polling_timeout must be at least 1 second")
        if max_delay < min_delay:
            raise ValueError("max polling delay must be >= min polling delay")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        # OPA joins with exactly one slash, trimming slashes around the resource.
        self.url = service_url.rstrip("/") + "/" + resource.strip("/")
        if deltas:
            self.url += ("&" if "?" in self.url else "?") + "delta=1"
        self.name = name or resource.strip("/").rsplit("/", 1)[-1]
        self._token = token
        self._token_path = token_path
        self._scheme = scheme
        self._headers = dict(headers or {})
        self.verification = verification
        self.store = BundleStore(persist_dir) if persist_dir is not None else None
        self.long_polling_timeout = long_polling_timeout
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.response_header_timeout = response_header_timeout
        self._activate = activate
        self._on_status = on_status
        self.max_age = max_age
        self._expires_at: float | None = None  # time.time() after which the active bundle is too old
        self._lock = threading.Lock()
        self._http = _pool()
        self._active: Bundle | None = None
        self._etag = ""
        self._long_polling = long_polling_timeout is not None
        self._status = BundleStatus(name=self.name)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Bundle], None]] = []

    # -- state ----------------------------------------------------------------------

    @property
    def active(self) -> Bundle | None:
        """The active bundle, or None before the first activation."""
        return self._active

    @property
    def etag(self) -> str:
        return self._etag

    def status(self) -> BundleStatus:
        """A copy of the bundle's status (active revision, last download/activation, last error)."""
        with self._lock:
            return BundleStatus(**self._status.__dict__)

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until a bundle is active; True if one is, False on timeout."""
        return self._ready.wait(timeout)

    def age_problem(self) -> str | None:
        """None while the active bundle is within ``max_age`` (or no maximum is set), else
        why decisions must fail closed. Cheap: called on every decision."""
        expires_at = self._expires_at
        if expires_at is None or time.time() <= expires_at:
            return None
        active = self._active
        return age_problem(active.manifest if active is not None else None, self.max_age)

    def set_activator(self, activate: Callable[[Bundle], None] | None) -> None:
        """Set the hook that must accept a bundle before it becomes active (it raises to refuse)."""
        self._activate = activate

    def add_listener(self, listener: Callable[[Bundle], None]) -> None:
        """Call ``listener(bundle)`` after each activation (errors are logged, not raised)."""
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> BundleClient:
        """Load the persisted bundle (if any), then refresh from the control plane in a
        background thread. Returns self. Raises nothing: errors land in ``status()``."""
        if self._thread is not None:
            return self
        self.load_persisted()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"warden-bundle-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop refreshing. A long poll in flight is abandoned (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def load_persisted(self) -> Bundle | None:
        """Activate the bundle persisted by an earlier run, verifying it again; return it,
        or None if there is none or it fails (the failure is in ``status()``)."""
        if self.store is None or self._active is not None:
            return None
        try:
            saved = self.store.load()
        except OSError as exc:
            self._record_error(f"cannot read persisted bundle: {exc}")
            return None
        if saved is None:
            return None
        archive, etag = saved
        try:
            bundle = parse_bundle(archive, etag=etag, verification=self.verification)
            self._install(bundle, source="persisted", persist=False)
        except BundleError as exc:
            self._record_error(f"persisted bundle refused: {exc.message}")
            return None
        logger.info("activated persisted bundle %s revision %s", self.name, bundle.revision)
        return bundle

    def poll_once(self, *, wait: int | None = None) -> bool:
        """One request to the bundle service; True if a new bundle was activated.

        ``wait`` asks the server to hold the request (long polling). Raises BundleError
        (BundleVerificationError for a bad signature) when the download, verification or
        activation fails; the previous bundle stays active.
        """
        headers = dict(self._headers)
        token = self._bearer_token()
        if token:
            headers["Authorization"] = f"{self._scheme} {token}"
        if self._etag:
            headers["If-None-Match"] = self._etag
        headers["Prefer"] = "modes=snapshot,delta" + (f";wait={wait}" if wait else "")
        headers["User-Agent"] = f"warden-agents-sdk/{__version__}"
        timeout = (wait + self.response_header_timeout) if wait else self.response_header_timeout
        with self._lock:
            self._status.last_request = _now()
        try:
            response = self._http.request(
                "GET", self.url, headers=headers, decode_content=False,  # the archive's bytes, as served
                timeout=urllib3.Timeout(connect=self.response_header_timeout, read=timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            cause = getattr(exc, "reason", None) or exc
            raise BundleError(f"cannot reach the bundle service at {self.url}: {cause}") from exc
        status, body = response.status, response.data
        etag = response.headers.get("ETag", "") or ""
        content_type = response.headers.get("Content-Type", "") or ""
        if status >= 300 and status != 304:
            reason = response.reason or _phrase(status)
            raise BundleError(f"server replied with {reason} ({status}) for GET {self.url}", http_code=status)
        if status == 304:
            self._not_modified(etag)
            return False
        if self._stop.is_set():
            return False  # stopped while the request was held: activate nothing more
        if status != 200:
            raise BundleError(f"server replied with HTTP {status} for GET {self.url}", http_code=status)
        with self._lock:
            self._status.last_successful_request = self._status.last_successful_download = _now()
        # OPA keeps long polling only while 200s carry exactly this Content-Type.
        if self.long_polling_timeout is not None:
            self._long_polling = content_type == LONG_POLL_CONTENT_TYPE
        files = read_archive(body)
        if is_delta(files):
            delta = apply_delta(self._active, files, body, etag=etag, verification=self.verification)
            self._install(delta, source="control plane", persist=False)  # a delta cannot be persisted: the last snapshot stays
            return True
        bundle = parse_bundle(body, etag=etag, verification=self.verification, files=files)
        self._install(bundle, source="control plane", persist=True)
        return True

    # -- internals ------------------------------------------------------------------

    def _bearer_token(self) -> str | None:
        if self._token_path is not None:
            # Re-read on every request, as OPA does, so a rotated token is picked up.
            try:
                return Path(self._token_path).read_text("utf-8").strip()
            except OSError as exc:
                raise BundleError(f"cannot read bearer token file {self._token_path}: {exc}") from exc
        return self._token

    def _not_modified(self, etag: str) -> None:
        with self._lock:
            if etag:
                self._etag = etag
            self._status.last_successful_request = _now()
            self._status.code = self._status.message = ""
            self._status.http_code = None
        self._notify_status()

    def _install(self, bundle: Bundle, *, source: str, persist: bool) -> None:
        active = self._active
        check_newer(bundle.manifest, active.manifest if active is not None else None, revision=bundle.revision)
        if source != "persisted":
            # A persisted bundle is activated even when expired: it still anchors "never go
            # back in time", and decisions fail closed until a fresher one arrives.
            problem = age_problem(bundle.manifest, self.max_age)
            if problem is not None:
                raise StaleBundleError(f"bundle revision {bundle.revision!r} refused: {problem}")
        signed = built_at(bundle.manifest)
        if self._activate is not None:
            try:
                self._activate(bundle)
            except BundleError:
                raise
            except Exception as exc:  # the activation hook (e.g. the Rego compiler) refused it
                raise BundleError(f"bundle revision {bundle.revision!r} could not be activated: {exc}") from exc
        with self._lock:
            self._active = bundle
            self._expires_at = None
            if self.max_age is not None:
                self._expires_at = signed.timestamp() + self.max_age if signed is not None else 0.0
            self._etag = bundle.etag
            self._status.active_revision = bundle.revision
            self._status.last_successful_activation = _now()
            self._status.size = bundle.size
            self._status.code = self._status.message = ""
            self._status.http_code = None
            self._status.source = source
            self._status.type = "delta" if bundle.delta else "snapshot"
        self._ready.set()
        if persist and self.store is not None:
            try:
                self.store.save(bundle)
            except OSError as exc:
                logger.warning("could not persist bundle %s to %s: %s", self.name, self.store.directory, exc)
        for listener in list(self._listeners):
            try:
                listener(bundle)
            except Exception:
                logger.exception("bundle listener failed")
        self._notify_status()

    def _record_error(self, message: str, http_code: int | None = None) -> None:
        with self._lock:
            self._status.code = "bundle_error"
            self._status.message = message
            self._status.http_code = http_code
        self._notify_status()

    def _notify_status(self) -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status())
            except Exception:
                logger.exception("bundle status callback failed")

    def _run(self) -> None:
        retry = 0
        while not self._stop.is_set():
            wait = self.long_polling_timeout if self._long_polling else None
            try:
                self.poll_once(wait=wait)
            except BundleError as exc:
                self._record_error(exc.message, exc.http_code)
                logger.warning("bundle %s: %s", self.name, exc.message)
                delay = backoff_delay(retry, self.max_delay)
                retry += 1
            except Exception as exc:  # never let the refresher die
                self._record_error(f"unexpected error: {exc}")
                logger.exception("bundle %s refresh failed", self.name)
                delay = backoff_delay(retry, self.max_delay)
                retry += 1
            else:
                retry = 0
                # A long poll answers when something changed or the wait ended: ask again at once.
                delay = 0.0 if self._long_polling else random.uniform(self.min_delay, self.max_delay)
            if delay:
                self._stop.wait(delay)
