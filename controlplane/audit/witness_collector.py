"""A witness collector: a small HTTP service, run apart from the control plane, that keeps
every audit witness line it is sent, append-only (docs/audit.md, "An HTTP witness").

    python -m controlplane.audit.witness_collector --listen 0.0.0.0:8470 \
        --store /srv/warden-witness --token-file /etc/warden-witness/token \
        --public-key <checkpoint public key> [--public-key <the next one, during a rotation>]

Run it on another host (or at least as another user, on storage the control plane's hosts
cannot write): neither the database's roles nor the web process can then rewrite what it
holds. Like a certificate-transparency monitor it checks what it keeps: a checkpoint head
must carry its statement, hash to its `statement_hash` and be signed by a pinned checkpoint
key, and a second, different head for a sequence it holds is refused (409) and kept aside
as evidence of a rewritten log. Several control planes may share one collector: each
writes to its own log, `/logs/<name>/`.

    POST /logs/<name>/entries   a witness line (JSON object), `Authorization: Bearer <token>`;
                                201 stored, 200 already held, 409 another head for that sequence
    GET  /logs/<name>/entries   every line held, JSON Lines (reading needs no token)
    GET  /logs/<name>/head      the newest checkpoint head, 404 before the first

No Django: the collector imports only the SDK's canonical JSON and key parsing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.errors import CanonicalJSONError
from agents_sdk.records import canonical_json
from agents_sdk.verify import public_key_map

FORMAT = "warden-audit-witness/1"
MAX_ENTRY_BYTES = 1 << 20  # a batch line lists runs of ids; a head is ~1 KiB
LOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
PATH = re.compile(r"^/logs/([^/]+)/(entries|head)$")


class Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class WitnessLog:
    """One log's lines: a JSONL file, appended with O_APPEND and fsync, indexed in memory."""

    def __init__(self, path: Path, keys: dict[str, Ed25519PublicKey]):
        self.path = path
        self.rejected = path.with_suffix(".rejected.jsonl")
        self.keys = keys
        self.heads: dict[int, dict[str, Any]] = {}
        self.batches: set[int] = set()
        if path.exists():
            with open(path, "rb") as handle:
                for raw in handle:
                    self._index(json.loads(raw))

    def _index(self, entry: dict[str, Any]) -> None:
        if entry.get("type") == "checkpoint":
            self.heads.setdefault(entry["sequence"], entry)
        elif entry.get("type") == "batch":
            self.batches.add(entry["batch_id"])

    def add(self, entry: dict[str, Any]) -> HTTPStatus:
        """Keep `entry`: CREATED, or OK if held already. Raises Refused."""
        if entry.get("format") != FORMAT:
            raise Refused(HTTPStatus.BAD_REQUEST, f"not a {FORMAT} entry")
        kind = entry.get("type")
        if kind == "checkpoint":
            self._check_head(entry)
            held = self.heads.get(entry["sequence"])
            if held is not None:
                if held["statement_hash"] == entry["statement_hash"]:
                    return HTTPStatus.OK
                _append(self.rejected, entry)  # evidence: someone signed a second history
                raise Refused(HTTPStatus.CONFLICT, (
                    f"checkpoint {entry['sequence']} is held with statement hash {held['statement_hash']}; "
                    "a different head for it means the log was rewritten"
                ))
        elif kind == "batch":
            if not isinstance(entry.get("batch_id"), int) or not _runs(entry.get("events")):
                raise Refused(HTTPStatus.BAD_REQUEST, "a batch line needs batch_id and events [[first, last], …]")
            if entry["batch_id"] in self.batches:
                return HTTPStatus.OK
        else:
            raise Refused(HTTPStatus.BAD_REQUEST, "type must be checkpoint or batch")
        _append(self.path, entry)
        self._index(entry)
        return HTTPStatus.CREATED

    def _check_head(self, entry: dict[str, Any]) -> None:
        statement = entry.get("statement")
        if not isinstance(statement, dict) or not isinstance(entry.get("sequence"), int):
            raise Refused(HTTPStatus.BAD_REQUEST, "a checkpoint head needs its sequence and statement")
        body = canonical_json(statement)
        if hashlib.sha256(body).hexdigest() != entry.get("statement_hash"):
            raise Refused(HTTPStatus.BAD_REQUEST, "statement_hash is not the SHA-256 of the statement")
        for name in ("sequence", "merkle_root", "last_event_id", "key_id"):
            if statement.get(name) != entry.get(name):
                raise Refused(HTTPStatus.BAD_REQUEST, f"{name} differs from the statement's")
        key = self.keys.get(str(statement.get("key_id")))
        if key is None:
            raise Refused(HTTPStatus.FORBIDDEN, f"key {str(statement.get('key_id'))[:16]}… is not a pinned checkpoint key")
        try:
            key.verify(base64.b64decode(str(entry.get("signature")), validate=True), body)
        except (InvalidSignature, ValueError) as exc:
            raise Refused(HTTPStatus.FORBIDDEN, "the signature does not verify with the pinned key") from exc

    def lines(self) -> bytes:
        return self.path.read_bytes() if self.path.exists() else b""

    def head(self) -> dict[str, Any] | None:
        return self.heads[max(self.heads)] if self.heads else None


def _runs(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(run, list) and len(run) == 2 and all(isinstance(i, int) for i in run) and run[0] <= run[1]
        for run in value
    )


def _append(path: Path, entry: dict[str, Any]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, canonical_json(entry) + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Collector:
    def __init__(self, store: Path, token: str, keys: dict[str, Ed25519PublicKey]):
        self.store, self.token, self.keys = store, token, keys
        self.logs: dict[str, WitnessLog] = {}
        self.lock = threading.Lock()  # one writer at a time: checks and appends stay in order

    def log(self, name: str) -> WitnessLog:
        if not LOG_NAME.match(name):
            raise Refused(HTTPStatus.NOT_FOUND, "no such log")
        if name not in self.logs:
            self.logs[name] = WitnessLog(self.store / f"{name}.jsonl", self.keys)
        return self.logs[name]

    def authorised(self, header: str | None) -> bool:
        scheme, _, presented = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.token.encode())


def handler_for(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "warden-witness-collector/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _answer(self, status: HTTPStatus, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._answer(status, json.dumps({"detail": message}).encode())

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            match = PATH.match(self.path.split("?", 1)[0])
            if match is None:
                return self._error(HTTPStatus.NOT_FOUND, "no such path")
            try:
                with collector.lock:
                    log = collector.log(match[1])
                    if match[2] == "entries":
                        return self._answer(HTTPStatus.OK, log.lines(), "application/x-ndjson")
                    head = log.head()
            except Refused as refused:
                return self._error(refused.status, str(refused))
            if head is None:
                return self._error(HTTPStatus.NOT_FOUND, "no checkpoint head yet")
            self._answer(HTTPStatus.OK, canonical_json(head))

        def do_POST(self) -> None:  # noqa: N802
            match = PATH.match(self.path)
            if match is None or match[2] != "entries":
                return self._error(HTTPStatus.NOT_FOUND, "no such path")
            if not collector.authorised(self.headers.get("Authorization")):
                return self._error(HTTPStatus.UNAUTHORIZED, "a valid bearer token is required")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_ENTRY_BYTES:
                return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an entry is at most {MAX_ENTRY_BYTES} bytes")
            try:
                entry = json.loads(self.rfile.read(length))
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
                with collector.lock:
                    status = collector.log(match[1]).add(entry)
            except Refused as refused:
                return self._error(refused.status, str(refused))
            except (ValueError, CanonicalJSONError, KeyError, TypeError) as exc:
                return self._error(HTTPStatus.BAD_REQUEST, f"not a witness entry: {exc}")
            self._answer(status, json.dumps({"stored": status == HTTPStatus.CREATED}).encode())

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8470", help="host:port (port 0: any free port)")
    parser.add_argument("--store", required=True, help="directory of the logs' JSONL files")
    parser.add_argument("--token-file", help="file holding the bearer token writers present "
                                             "(default: $WARDEN_WITNESS_COLLECTOR_TOKEN)")
    parser.add_argument("--public-key", action="append", default=[], required=True,
                        help="a checkpoint public key (base64 or PEM) heads must be signed with; repeatable")
    args = parser.parse_args(argv)
    token = (Path(args.token_file).read_text() if args.token_file
             else os.environ.get("WARDEN_WITNESS_COLLECTOR_TOKEN", "")).strip()
    if not token:
        parser.error("a token is required (--token-file or WARDEN_WITNESS_COLLECTOR_TOKEN)")
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    host, _, port = args.listen.rpartition(":")
    collector = Collector(store, token, public_key_map(args.public_key))
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler_for(collector))
    # The bound address, for whoever started it with port 0.
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on {bound_host!s}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
