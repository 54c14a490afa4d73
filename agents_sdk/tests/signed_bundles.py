"""Test-side bundle builder and signer, written from OPA's bundle docs (not the control
plane's code), and a tiny stdlib HTTP server that plays OPA's bundle service."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agents_sdk.engine.recorded_bundles import record as record_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
LONG_POLL_CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def compact(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RSASigner:
    """An RS256 bundle signer with its own key."""

    def __init__(self, kid: str = "test-key"):
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def jwt(self, payload: dict, header: dict | None = None) -> str:
        header = header or {"alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(compact(header))}.{b64url(compact(payload))}".encode("ascii")
        signature = self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def opa_hash(name: str, content: bytes) -> str:
    """SHA-256 as OPA computes it: JSON files re-serialised compactly with sorted keys."""
    if name.rsplit("/", 1)[-1] in ("data.json", ".manifest"):
        content = compact(json.loads(content))
    return hashlib.sha256(content).hexdigest()


def pack(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name="/" + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def library_modules() -> dict[str, str]:
    """The shipped policy pack (tests left out), as bundles carry it."""
    root = REPO_ROOT / "rego"
    return {
        path.relative_to(root).as_posix(): path.read_text("utf-8")
        for path in sorted(root.rglob("*.rego"))
        if not path.name.endswith("_test.rego")
    }


def registry(**agents_status: str) -> dict:
    """Bundle data with a registry like the control plane's: support-bot and friends."""
    agents = {
        "support-bot": {
            "status": "active",
            "owner": "alice@example.com",
            "scopes": ["read:tickets", "write:files", "net:http", "payments:create"],
            "egress": {"allow_hosts": ["*.example.com"]},
        },
    }
    for name, status in agents_status.items():
        agents.setdefault(name, {"owner": "alice@example.com", "scopes": ["read:tickets", "write:files"]})
        agents[name]["status"] = status
    return {
        "warden_registry": {
            "agents": agents,
            "tools": {
                "ticket_read": {"scopes": ["read:tickets"]},
                "file_delete": {"scopes": ["write:files"]},
                "http_request": {"scopes": ["net:http"], "category": "network"},
                "payment_create": {"scopes": ["payments:create"], "category": "payment"},
            },
            "protected_paths": ["/prod/"],
            "destructive_file_tools": ["file_delete"],
            "protected_branches": ["main"],
            "internal_email_domains": ["example.com"],
            "rate_limits": {"calls_per_minute": 120},
            "approvals": {},
        }
    }


@dataclass
class BuiltBundle:
    archive: bytes
    files: dict[str, bytes]
    revision: str
    etag: str


def build_bundle(
    signer: RSASigner | None,
    *,
    modules: dict[str, str] | None = None,
    data: dict | None = None,
    revision: str = "rev-1",
    roots: Iterable[str] = ("warden", "warden_registry"),
    extra_files: dict[str, bytes] | None = None,
    unsigned_files: Iterable[str] = (),
    tamper: dict[str, bytes] | None = None,
    drop_files: Iterable[str] = (),
    jwts: list[str] | None = None,
    built_at: str | None = None,
) -> BuiltBundle:
    """A bundle signed by `signer` (unsigned when None). `unsigned_files` are left out of
    the signature; `tamper` replaces files after signing; `jwts` replaces the JWT list;
    `built_at` goes to the manifest's metadata.warden.built_at (the signed build time)."""
    manifest: dict = {"revision": revision, "roots": list(roots), "rego_version": 1}
    if built_at is not None:
        manifest["metadata"] = {"warden": {"built_at": built_at}}
    files: dict[str, bytes] = {
        ".manifest": json.dumps(manifest).encode(),
        "data.json": json.dumps(data if data is not None else registry(), indent=1).encode(),
    }
    for path, source in (modules if modules is not None else library_modules()).items():
        files[path] = source.encode("utf-8")
    files.update(extra_files or {})
    record_bundle(files)  # for real OPA to compile too (agents_sdk/engine/recorded_bundles.py)
    if signer is not None or jwts is not None:
        listed = [
            {"name": name, "hash": opa_hash(name, content), "algorithm": "SHA-256"}
            for name, content in sorted(files.items())
            if name not in set(unsigned_files)
        ]
        tokens = jwts if jwts is not None else [signer.jwt({"files": listed, "iat": int(time.time())})]
        files[".signatures.json"] = json.dumps({"signatures": tokens}).encode()
    for name, content in (tamper or {}).items():
        files[name] = content
    for name in drop_files:
        del files[name]
    archive = pack(files)
    return BuiltBundle(archive=archive, files=files, revision=revision, etag=f'"{hashlib.sha256(archive).hexdigest()[:16]}"')


@dataclass
class BundleServerState:
    bundle: BuiltBundle | None = None
    token: str = "env-token"
    requests: list[dict] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    fail_with: int | None = None
    long_poll_content_type: str = LONG_POLL_CONTENT_TYPE
    # The control plane's decision-log and status endpoints.
    log_uploads: list[dict] = field(default_factory=list)
    status_reports: list[dict] = field(default_factory=list)
    fail_logs: int = 0  # answer this many log uploads with 503 first

    def decision_events(self) -> list[dict]:
        return [event for upload in self.log_uploads for event in upload["events"]]

    def publish(self, bundle: BuiltBundle) -> None:
        with self.changed:
            self.bundle = bundle
            self.changed.notify_all()


class BundleServer:
    """OPA's bundle service protocol on 127.0.0.1: Bearer auth, ETag/304, long polling."""

    def __init__(self, state: BundleServerState | None = None):
        self.state = state or BundleServerState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items()}
                state.requests.append({"path": self.path, "headers": headers, "at": time.monotonic()})
                if headers.get("Authorization") != f"Bearer {state.token}":
                    return self._reply(401, b'{"detail":"bad token"}', "application/json")
                if state.fail_with:
                    return self._reply(state.fail_with, b"{}", "application/json")
                known = headers.get("If-None-Match")
                prefer = headers.get("Prefer", "")
                wait = int(prefer.split("wait=")[1]) if "wait=" in prefer else None
                with state.changed:
                    if wait is not None:
                        deadline = time.monotonic() + wait
                        while state.bundle is not None and state.bundle.etag == known:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                break
                            state.changed.wait(remaining)
                    bundle = state.bundle
                if bundle is None:
                    return self._reply(404, b'{"detail":"no bundle"}', "application/json")
                if bundle.etag == known:
                    return self._reply(304, b"", None, etag=bundle.etag)
                content_type = state.long_poll_content_type if wait is not None else "application/gzip"
                return self._reply(200, bundle.archive, content_type, etag=bundle.etag)

            def do_POST(self):
                headers = {k: v for k, v in self.headers.items()}
                body = self.rfile.read(int(headers.get("Content-Length", "0")))
                if headers.get("Authorization") != f"Bearer {state.token}":
                    return self._reply(401, b"{}", "application/json")
                if self.path.endswith("/logs"):
                    if state.fail_logs > 0:
                        state.fail_logs -= 1
                        return self._reply(503, b"{}", "application/json")
                    raw = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
                    state.log_uploads.append({"headers": headers, "size": len(body), "events": json.loads(raw)})
                elif self.path.endswith("/status"):
                    state.status_reports.append({"headers": headers, "report": json.loads(body)})
                else:
                    return self._reply(404, b"{}", "application/json")
                return self._reply(200, b"{}", "application/json")

            def _reply(self, status, body, content_type, etag=None):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> BundleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        with self.state.changed:
            self.state.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()
