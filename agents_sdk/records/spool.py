"""The record spool and its signing: one logic for the live signer process and for recovery.

A spool (``<stem>.spool``) is a header line (JSON: format, agent, key_id, salt, and the chain
heads a spool continues from when it starts a new segment: ``heads``, a list of
``[session_id, next seq, prev_hash]``), then one line
per record, ``<time_ns>,<kind>,<len(session_json)>:<session_json><payload_json>``. Its log
(``<stem>.jsonl``) holds the signed records, one canonical JSON line each, line ``i`` signed
from spool entry ``i``. Everything that varies in a record is fixed by its spool line:
``time`` by the append, ``record_id`` by the spool's random salt and the entry's position,
``seq``/``prev_hash`` by the order, and Ed25519 (RFC 8032) is deterministic. So whoever signs a
spool, the signer process while the agent lives or ``recover_spool`` after a crash, writes
byte-identical lines, and a log can be continued from wherever the last signer stopped.

Locks: the agent holds an exclusive ``flock`` on the spool while it may append; the signer
process holds one on the log while it may write it. Recovery takes both (non-blocking), so it
never runs beside a live agent or a signer still finishing a dead agent's spool.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agents_sdk.errors import SigningError
from agents_sdk.records.canonical import json_string, record_head, seal
from agents_sdk.records.form import GENESIS_HASH, RECORD_KINDS
from agents_sdk.records.jsonl import loads_strict

SPOOL_FORMAT = "warden-signer-spool/2"
_FORMATS = ("warden-signer-spool/1", SPOOL_FORMAT)  # /1 has no ``heads``

Deliver = Callable[[str, bytes], None]
"""Called with (session_id, signed line) for every record, in signing order."""

Sign = Callable[[bytes], bytes]


def record_id_for(salt: bytes, index: int) -> str:
    """The record id of spool entry ``index``: a version-4 UUID drawn from SHA-256(salt, index)."""
    raw = bytearray(hashlib.sha256(salt + index.to_bytes(8, "big")).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_last_second: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half of it


def time_of(time_ns: int) -> str:
    """RFC 3339 UTC with microseconds, as ``utc_timestamp`` writes it."""
    global _last_second
    seconds, micros = divmod(time_ns // 1000, 1_000_000)
    cached = _last_second
    if cached[0] != seconds:
        cached = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micros:06d}Z"


def ed25519_signer(seed: bytes) -> tuple[Sign, bytes]:
    """A signing function for the 32-byte Ed25519 private key ``seed`` and its raw public key.

    libsodium (PyNaCl) signs about 1.6x faster than OpenSSL through ``cryptography`` here;
    both implement RFC 8032, so the signatures are the same bytes. ``cryptography`` when
    PyNaCl is not installed.
    """
    try:
        from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
    except ImportError:  # pragma: no cover - PyNaCl is a dependency; kept working without it
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(seed)
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return key.sign, public
    public, secret = crypto_sign_seed_keypair(seed)

    def sign(data: bytes) -> bytes:
        return crypto_sign(data, secret)[:64]  # signed message = signature + message

    return sign, public


class Chains:
    """Per-session chain heads of one spool, and the sealing of its entries."""

    def __init__(
        self, sign: Sign, agent: str, key_id: str, salt: bytes, heads: dict[bytes, tuple[int, str]] | None = None
    ) -> None:
        self.sign = sign
        self.salt = salt
        self.head = record_head(agent, key_id)
        # By session id as JSON, as the spool holds it; a segment starts from its header's heads.
        self.heads: dict[bytes, tuple[int, str]] = dict(heads or {})

    def seal(self, index: int, session_json: bytes, kind: str, time_ns: int, payload_json: bytes) -> bytes:
        seq, prev_hash = self.heads.get(session_json, (0, GENESIS_HASH))
        line, _ = seal(
            self.sign,
            self.head,
            kind,
            payload_json,
            prev_hash,
            record_id_for(self.salt, index),
            seq,
            session_json,
            time_of(time_ns),
        )
        self.heads[session_json] = (seq + 1, hashlib.sha256(line).hexdigest())
        return line

    def resume(self, log_fd: int) -> int:
        """Take the chain heads from the signed lines of an open log; cut a torn last line
        (a signer died writing it). Returns how many records the log holds."""
        content = _read_all(log_fd)
        complete = content[: content.rfind(b"\n") + 1]
        if len(complete) != len(content):
            os.ftruncate(log_fd, len(complete))
        done = 0
        for line in complete.splitlines():
            record = loads_strict(line)
            self.heads[json_string(record["session_id"])] = (record["seq"] + 1, hashlib.sha256(line).hexdigest())
            done += 1
        return done


class SpoolError(SigningError, ValueError):
    """A file that is not a signer spool of the expected key."""


@dataclass(frozen=True)
class SpoolHeader:
    agent: str
    key_id: str
    salt: bytes
    heads: dict[bytes, tuple[int, str]]  # the chain heads this spool's records continue


def header_line(agent: str, key_id: str, salt: bytes, heads: dict[str, tuple[int, str]]) -> bytes:
    """A spool's header line; ``heads`` by session id: (next seq, hash of the last record)."""
    header = {
        "format": SPOOL_FORMAT,
        "agent": agent,
        "key_id": key_id,
        "salt": salt.hex(),
        "heads": [[session_id, seq, prev_hash] for session_id, (seq, prev_hash) in heads.items()],
    }
    return json.dumps(header, sort_keys=True).encode("ascii") + b"\n"


def read_header(line: bytes) -> SpoolHeader:
    """The header line of a spool. Raises SpoolError."""
    try:
        header = json.loads(line)
        if header.get("format") not in _FORMATS:
            raise ValueError(f"format {header.get('format')!r}")
        heads = {json_string(str(sid)): (int(seq), str(prev)) for sid, seq, prev in header.get("heads", [])}
        return SpoolHeader(str(header["agent"]), str(header["key_id"]), bytes.fromhex(header["salt"]), heads)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpoolError(f"not a signer spool ({exc})") from exc


_KINDS = {kind.encode("ascii"): kind for kind in RECORD_KINDS}


def parse_entry(raw: bytes, *, strict: bool) -> tuple[bytes, str, int, bytes] | None:
    """(session_json, kind, time_ns, payload_json) of a spool line, None if it is garbled.

    ``strict`` (recovery: a machine crash may leave anything at the end) also parses the
    session id and payload as JSON; the live signer reads lines its own agent wrote."""
    try:
        head, rest = raw.split(b":", 1)
        stamp, kind_bytes, length_text = head.split(b",")
        length = int(length_text)
        session_json, payload_json = rest[:length], rest[length:]
        kind = _KINDS[kind_bytes]
        if strict and (
            not isinstance(loads_strict(session_json), str) or not isinstance(loads_strict(payload_json), dict)
        ):
            return None
        return session_json, kind, int(stamp), payload_json
    except (ValueError, KeyError, UnicodeDecodeError):  # RecordFormatError is a ValueError
        return None


@dataclass(frozen=True)
class RecoveredSpool:
    """What ``recover_spool`` did with one spool a dead signer left."""

    spool: Path
    log: Path
    already_signed: int
    recovered: int
    problem: str | None = None


def recover_spool(
    spool_dir: str | os.PathLike[str], identity: AgentIdentityLike, deliver: Deliver | None = None
) -> list[RecoveredSpool]:
    """Sign what dead signers of ``identity`` left unsigned in ``spool_dir``, in spool order.

    A spool whose agent or signer process lives (their ``flock``) is left alone, as is one of
    another key (named in ``problem``). For each other spool: the records its log already
    holds are kept (a torn last line is cut off), the rest are signed exactly as the dead
    signer would have signed them, appended to its log (fsynced) and passed to ``deliver``;
    then the spool is removed. A torn last spool line (a machine crash) ends the spool.
    """
    results: list[RecoveredSpool] = []
    directory = Path(spool_dir)
    if not directory.is_dir():
        return results
    for spool in sorted(directory.glob("*.spool")):
        try:
            fd = os.open(spool, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live agent's
            if not os.path.exists(spool):
                continue  # recovered by another process meanwhile
            result = _recover_one(spool, identity, deliver)
            if result is not None:
                results.append(result)
        finally:
            os.close(fd)
    return results


class AgentIdentityLike(Protocol):
    """What recovery needs of an identity (``AgentIdentity`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def _recover_one(spool: Path, identity: AgentIdentityLike, deliver: Deliver | None) -> RecoveredSpool | None:
    log = spool.with_suffix(".jsonl")
    lines = spool.read_bytes().split(b"\n")
    try:
        header = read_header(lines[0])
    except SpoolError as exc:
        return RecoveredSpool(spool, log, 0, 0, str(exc))
    key_id = header.key_id
    if key_id != identity.key_id:
        return RecoveredSpool(spool, log, 0, 0, f"signed with key {key_id}, not this identity's")
    log_fd = os.open(log, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(log_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a signer process still finishing it (its agent died): it removes the spool
        # Every complete line ends in \n: the last element of the split is the torn remainder (or b"").
        entries = []
        for raw in lines[1:-1]:
            entry = parse_entry(raw, strict=True)
            if entry is None:
                break  # a torn or garbled line: nothing after it was appended by a call that returned
            entries.append(entry)
        chains = Chains(identity.sign, identity.name, key_id, header.salt, header.heads)
        done = chains.resume(log_fd)
        if done > len(entries):
            return RecoveredSpool(spool, log, done, 0, f"the log holds {done} records, the spool only {len(entries)}")
        recovered = [(entry[0], chains.seal(index, *entry)) for index, entry in enumerate(entries) if index >= done]
        if recovered:
            write_all(log_fd, b"".join(line + b"\n" for _, line in recovered))
            os.fsync(log_fd)
        if deliver is not None:
            for session_json, line in recovered:
                deliver(json.loads(session_json), line)
        spool.unlink()
        return RecoveredSpool(spool, log, done, len(recovered))
    finally:
        os.close(log_fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "agent"


def open_segment(directory: Path, agent: str, key_id: str, heads: dict[str, tuple[int, str]]) -> tuple[Path, Path, int]:
    """A new spool in ``directory`` (locked, header fsynced) continuing the chains ``heads``, and
    its empty log: (spool, log, the spool's open descriptor)."""
    stem = f"{slug(agent)}-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
    spool_path, log_path = directory / f"{stem}.spool", directory / f"{stem}.jsonl"
    fd = os.open(spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
    write_all(fd, header_line(agent, key_id, os.urandom(16), heads))
    os.fsync(fd)
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    fsync_dir(directory)
    return spool_path, log_path, fd


def session_of(line: bytes) -> str:
    """The session id of a signed log line, read without decoding the record."""
    # Keys are sorted: session_id is the last key before signature, after the payload.
    start = line.rindex(b',"session_id":') + 14
    session_id: str = json.loads(line[start : line.rindex(b',"signature":')])
    return session_id


def chain_heads(last_lines: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    """Each session's (next seq, prev_hash) after its last signed log line."""
    return {session_id: (json.loads(line)["seq"] + 1, hashlib.sha256(line).hexdigest())
            for session_id, line in last_lines.items()}
