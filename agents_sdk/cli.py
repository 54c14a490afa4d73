"""The ``warden`` command line.

    warden audit verify FILE --public-key KEY [--public-key KEY ...]
    warden identity create --name NAME --owner EMAIL [--scope SCOPE ...] --out PATH
    warden identity show PATH
    warden agent register PATH --url URL [--token-env VAR] [--risk-tier TIER] [--environment ENV ...]
    warden sidecar --config FILE [--addr HOST:PORT]
    warden gateway --config FILE

Runnable without installation as ``python -m agents_sdk ...`` or ``python -m agents_sdk.cli ...``.
Exit status: 0 success, 1 verification failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents_sdk.delegation.audit import chain_problems
from agents_sdk.errors import IdentityError, IdentityExistsError, RegistrationError, WardenError
from agents_sdk.identity import (
    METADATA_FORMAT,
    RISK_TIERS,
    AgentIdentity,
    metadata_path_for,
    register_public_identity,
)
from agents_sdk.keys import InvalidPublicKey, key_fingerprint, parse_public_key, raw_public_key
from agents_sdk.records import iter_jsonl
from agents_sdk.reports import MANIFEST_SUBJECT, verify_package, verify_pdf
from agents_sdk.verify import verify_records

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(WardenError):
    """The command line or an input file named on it is wrong; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``warden`` argument parser (other commands add subparsers to it)."""
    parser = argparse.ArgumentParser(prog="warden", description="Warden agent governance tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = commands.add_parser("audit", help="work with signed action logs")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_commands.add_parser(
        "verify",
        help="verify a JSONL log of signed records offline",
        description="Verify the signatures and per-session chains of a JSONL log of signed records. "
        "Exits 0 if every record verifies, 1 naming the first bad record otherwise.",
    )
    verify.add_argument("file", metavar="FILE", help="JSONL file, one signed record per line")
    verify.add_argument(
        "--public-key",
        "-k",
        dest="public_keys",
        action="append",
        required=True,
        metavar="KEY_OR_FILE",
        help="a trusted public key: base64 of the raw 32 bytes, or a file holding a PEM public key, "
        "an identity's metadata (.json) or an identity's private key file. Repeat for several keys.",
    )
    verify.set_defaults(handler=_audit_verify)
    recover = audit_commands.add_parser(
        "recover",
        help="sign the records a crashed agent left on its signer spool",
        description="Sign, in order, the records dead background signers of an identity left unsigned in "
        "a spool directory, appending them to each signer's JSONL log (docs/signed-records.md).",
    )
    recover.add_argument("spool_dir", type=Path, metavar="SPOOL_DIR", help="the signer's spool_dir")
    recover.add_argument("--identity", required=True, type=Path, metavar="PATH", help="the agent's private key file")
    recover.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding the key's passphrase")
    recover.set_defaults(handler=_audit_recover)

    identity = commands.add_parser("identity", help="create and inspect agent identities")
    identity_commands = identity.add_subparsers(dest="identity_command", required=True, metavar="COMMAND")
    create = identity_commands.add_parser(
        "create",
        help="create a new agent identity (Ed25519 key + metadata)",
        description="Create an agent identity: the private key at --out (mode 0600) and its "
        "public metadata at --out + '.json'.",
    )
    create.add_argument("--name", required=True, help="agent name (a slug)")
    create.add_argument("--owner", required=True, help="owner's e-mail address")
    create.add_argument(
        "--scope", dest="scopes", action="append", default=[], metavar="VERB:RESOURCE", help="repeatable"
    )
    create.add_argument("--out", required=True, type=Path, metavar="PATH", help="private key file to write")
    create.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="encrypt the key with the passphrase in environment variable VAR "
        "(never put a passphrase on the command line)",
    )
    replace = create.add_mutually_exclusive_group()
    replace.add_argument("--overwrite", action="store_true", help="replace an existing identity at PATH")
    replace.add_argument(
        "--exist-ok", action="store_true",
        help="keep an identity already at PATH (same name) and print it: makes set-up scripts safe to re-run",
    )
    create.set_defaults(handler=_identity_create)

    show = identity_commands.add_parser("show", help="print an identity's name, scopes, key id and public key")
    show.add_argument("path", type=Path, metavar="PATH", help="private key file or its metadata (.json)")
    show.set_defaults(handler=_identity_show)

    agent = commands.add_parser("agent", help="register agents with the control plane")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")
    register = agent_commands.add_parser(
        "register",
        help="register an identity's agent and public key with the control plane",
        description="Register the agent named in an identity's metadata, and its public key, with the control "
        "plane's API (POST /api/v1/agents/ and /api/v1/agents/NAME/keys/). Only public data is sent; the "
        "private key is not read. Safe to repeat: an agent or key already registered is reported, not an error.",
    )
    register.add_argument("path", type=Path, metavar="PATH", help="identity private key file or its metadata (.json)")
    register.add_argument("--url", required=True, metavar="URL", help="the control plane, e.g. http://127.0.0.1:8000")
    register.add_argument(
        "--token-env", default="WARDEN_API_TOKEN", metavar="VAR",
        help="environment variable holding an admin's API token (default WARDEN_API_TOKEN; never put a token "
        "on the command line)",
    )
    register.add_argument("--display-name", metavar="TEXT", help="shown in the console (default: the agent's name)")
    register.add_argument("--risk-tier", choices=RISK_TIERS, default="minimal", help="EU AI Act risk tier")
    register.add_argument(
        "--environment", dest="environments", action="append", default=[], metavar="ENV",
        help="an environment the agent runs in (repeatable)",
    )
    register.set_defaults(handler=_agent_register)

    sidecar = commands.add_parser(
        "sidecar",
        help="serve OPA's decision API locally, fed by the control plane's signed bundles",
        description="A local decision server speaking OPA's REST API (POST /v1/data/{path}, GET /health), "
        "configured with OPA's own config.yaml (services, keys, bundles, decision_logs, status, labels).",
    )
    sidecar.add_argument("--config", required=True, metavar="FILE", help="OPA config file (YAML or JSON)")
    sidecar.add_argument(
        "--addr", default="127.0.0.1:8181", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8181)"
    )
    sidecar.set_defaults(handler=_sidecar)

    mcp_proxy = commands.add_parser(
        "mcp-proxy",
        help="govern an MCP server's tool calls: decide, sign, and refuse by policy",
        description="Sit between an MCP client and an MCP server (upstream over stdio or streamable HTTP); "
        "needs the mcp extra: pip install ./agents_sdk[mcp]",
    )
    mcp_proxy.add_argument("--config", required=True, metavar="FILE", help="proxy config file (YAML or JSON)")
    mcp_proxy.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="how to serve the client (default stdio)")
    mcp_proxy.add_argument("--addr", default="127.0.0.1:8765", metavar="HOST:PORT", help="for --transport http (default 127.0.0.1:8765)")
    mcp_proxy.add_argument("--path", default="/mcp", help="streamable HTTP endpoint path (default /mcp)")
    mcp_proxy.set_defaults(handler=_mcp_proxy)

    gateway = commands.add_parser(
        "gateway",
        help="decide gateways' calls over gRPC: agentgateway ExtMcp and Envoy ext_authz",
        description="One gRPC server with agentgateway's ExtMcp processor and Envoy's Authorization service "
        "(docs/interop.md); needs the gateways extra: pip install ./agents_sdk[gateways]",
    )
    gateway.add_argument("--config", required=True, metavar="FILE", help="gateway config file (YAML or JSON)")
    gateway.set_defaults(handler=_gateway)

    # `warden report verify`: compliance reports and evidence packages (agents_sdk.reports)
    report = commands.add_parser("report", help="verify signed compliance reports and evidence packages")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="COMMAND")
    verify = report_commands.add_parser(
        "verify",
        help="verify a report PDF (with its detached signature) or an evidence package offline",
        description="Verify a compliance report PDF against its detached signature (FILE.sig.json by default), "
        "or an evidence package zip: its signed manifest and every file's SHA-256. Exits 0 if valid, "
        "1 naming the problems otherwise, 2 on unreadable input.",
    )
    verify.add_argument("file", metavar="FILE", help="report PDF or evidence package (.zip)")
    verify.add_argument("--signature", "-s", metavar="SIG", help="detached signature of a PDF (default FILE.sig.json)")
    verify.add_argument(
        "--public-key", "-k", dest="public_keys", action="append", required=True, metavar="KEY_OR_FILE",
        help="Warden's trusted checkpoint public key: base64 of the raw 32 bytes or a PEM file. Repeatable.",
    )
    verify.set_defaults(handler=_report_verify)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the ``warden`` command line; return the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, stdout))
    except (UsageError, IdentityError) as exc:
        print(f"warden: error: {exc}", file=stderr)
        return EXIT_USAGE
    except RegistrationError as exc:
        print(f"warden: error: {exc}", file=stderr)
        return EXIT_FAILED


def _report_verify(args: argparse.Namespace, out: TextIO) -> int:
    trusted = [load_public_key(value)[0] for value in args.public_keys]
    path = Path(args.file)
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head.startswith(b"PK"):
        result = verify_package(path, trusted)
    else:
        signature_path = Path(args.signature) if args.signature else path.with_name(path.name + ".sig.json")
        try:
            pdf, signature = path.read_bytes(), signature_path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror or exc}; pass --signature") from exc
        result = verify_pdf(pdf, signature, trusted)
    if result.ok:
        what = "evidence package" if result.subject == MANIFEST_SUBJECT else "report PDF"
        print(f"OK: {what} of report {result.report_id} verified ({result.files} file(s), SHA-256 {result.sha256}, "
              f"key {result.key_id[:16]})", file=out)
        return 0
    for problem in result.problems:
        print(f"FAIL: {problem}", file=out)
    return 1


def _sidecar(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: the sidecar loads the Rego engine, which `audit verify` never needs.
    from agents_sdk.sidecar import ConfigError, run

    try:
        return run(args.config, args.addr)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _mcp_proxy(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: the proxy needs the optional mcp extra.
    from agents_sdk.integrations.mcp_proxy import ProxyConfigError, run

    try:
        return run(args.config, transport=args.transport, addr=args.addr, path=args.path)
    except ProxyConfigError as exc:
        raise UsageError(str(exc)) from exc


def _gateway(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: the gRPC services need the optional gateways extra.
    from agents_sdk.gateways.config import GatewayConfigError
    from agents_sdk.gateways.server import run

    try:
        return run(args.config)
    except GatewayConfigError as exc:
        raise UsageError(str(exc)) from exc


# -- audit verify ----------------------------------------------------------------------


def _audit_verify(args: argparse.Namespace, out: TextIO) -> int:
    public_keys: dict[str, Ed25519PublicKey] = {}
    key_agents: dict[str, str] = {}
    for value in args.public_keys:
        key, agent = load_public_key(value)
        key_id = key_fingerprint(raw_public_key(key))
        public_keys[key_id] = key
        if agent is not None:
            key_agents[key_id] = agent

    lines: list[int] = []
    records: list[Any] = []
    try:
        for line, item in iter_jsonl(args.file):
            lines.append(line)
            records.append(item)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    if not records:
        print(f"FAIL: {args.file} holds no records", file=out)
        return EXIT_FAILED

    result = verify_records(records, public_keys, key_agents=key_agents)
    if result.failure is None:
        # Delegation chains the records carry: signatures, parent hashes, audiences, sessions.
        chains, problems = chain_problems(records, public_keys)
        for index, problem in problems:
            print(f"FAIL: line {lines[index]}: delegation {problem}", file=out)
        if problems:
            return EXIT_FAILED
        delegated = f", {_count(chains, 'delegation chain')} verified" if chains else ""
        print(f"OK: {result.records} records in {result.sessions} sessions verified{delegated}", file=out)
        return EXIT_OK
    failure = result.failure
    print(
        f"FAIL: line {lines[failure.index]}: {failure.reason}: {failure.message} "
        f"(record_id {failure.record_id or '?'}, session {failure.session_id or '?'}, "
        f"seq {'?' if failure.seq is None else failure.seq}); "
        f"{_count(result.records, 'record')} before it verified",
        file=out,
    )
    return EXIT_FAILED


def _audit_recover(args: argparse.Namespace, out: TextIO) -> int:
    from agents_sdk.records.background import recover_spool

    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None
    identity = AgentIdentity.load(args.identity, passphrase=passphrase)
    problems = 0
    for item in recover_spool(args.spool_dir, identity):
        if item.problem:
            problems += 1
            print(f"SKIPPED: {item.spool}: {item.problem}", file=out)
        else:
            print(f"RECOVERED: {item.log}: {item.recovered} records signed, {item.already_signed} were signed", file=out)
    return EXIT_FAILED if problems else EXIT_OK


def load_public_key(value: str) -> tuple[Ed25519PublicKey, str | None]:
    """Resolve a ``--public-key`` argument to a key and, when known, the agent it belongs to.

    ``value`` is base64 of the raw key, or a path to a PEM public key, an identity
    metadata file, or an identity's private key file (its metadata is used when present,
    so an encrypted key needs no passphrase). Raises UsageError.
    """
    path = Path(value)
    if not path.is_file():
        try:
            return parse_public_key(value), None
        except InvalidPublicKey as exc:
            raise UsageError(f"--public-key {value!r} is neither a file nor a base64 public key ({exc})") from exc
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read public key file {path}: {exc}") from exc
    if text.startswith("{"):
        return _key_from_metadata(path, text)
    if "PRIVATE KEY-----" in text:
        meta_path = metadata_path_for(path)
        if meta_path.is_file():
            return _key_from_metadata(meta_path, meta_path.read_text(encoding="utf-8"))
        if "ENCRYPTED PRIVATE KEY" in text:
            raise UsageError(f"{path} is encrypted and has no metadata file {meta_path}; pass the public key instead")
        try:
            private = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except ValueError as exc:
            raise UsageError(f"{path} is not a valid PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise UsageError(f"{path} is not an Ed25519 key")
        return private.public_key(), None
    try:
        return parse_public_key(text), None
    except InvalidPublicKey as exc:
        raise UsageError(f"{path} does not hold a public key: {exc}") from exc


def _key_from_metadata(path: Path, text: str) -> tuple[Ed25519PublicKey, str | None]:
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise UsageError(f"{path} is not a Warden identity metadata file")
    try:
        key = parse_public_key(metadata.get("public_key", ""))
    except InvalidPublicKey as exc:
        raise UsageError(f"{path}: public_key: {exc}") from exc
    if metadata.get("key_id") != key_fingerprint(raw_public_key(key)):
        raise UsageError(f"{path}: key_id does not match public_key")
    name = metadata.get("name")
    return key, name if isinstance(name, str) else None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# -- identity --------------------------------------------------------------------------


def _identity_create(args: argparse.Namespace, out: TextIO) -> int:
    if args.exist_ok and metadata_path_for(args.out).exists():
        existing = _read_metadata(args.out)
        if existing.get("name") != args.name:
            raise UsageError(f"{args.out} holds identity {existing.get('name')!r}, not {args.name!r}")
        print(f"kept identity {args.name} at {args.out} (key id {existing.get('key_id')})", file=out)
        return EXIT_OK
    passphrase = None
    if args.passphrase_env:
        passphrase = os.environ.get(args.passphrase_env)
        if not passphrase:
            raise UsageError(f"environment variable {args.passphrase_env} is not set or empty")
    identity = AgentIdentity.create(name=args.name, owner=args.owner, scopes=args.scopes)
    try:
        key_path = identity.save(args.out, passphrase=passphrase, overwrite=args.overwrite)
    except IdentityExistsError as exc:
        raise UsageError(f"{exc.path or args.out} already exists; pass --overwrite to replace it") from exc
    print(f"created identity {identity.name}", file=out)
    print(f"  private key: {key_path} (mode 0600{', encrypted' if passphrase else ''})", file=out)
    print(f"  metadata:    {metadata_path_for(key_path)}", file=out)
    print(f"  key id:      {identity.key_id}", file=out)
    print(f"  public key:  {identity.public_key_b64}", file=out)
    return EXIT_OK


def _read_metadata(path: Path) -> dict[str, Any]:
    meta_path = path if path.suffix == ".json" else metadata_path_for(path)
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read identity metadata {meta_path}: {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise UsageError(f"{meta_path} is not a Warden identity metadata file")
    return metadata


def _identity_show(args: argparse.Namespace, out: TextIO) -> int:
    metadata = _read_metadata(args.path)
    print(f"name:       {metadata.get('name')}", file=out)
    print(f"owner:      {metadata.get('owner')}", file=out)
    print(f"scopes:     {' '.join(metadata.get('scopes', [])) or '(none)'}", file=out)
    print(f"key id:     {metadata.get('key_id')}", file=out)
    print(f"public key: {metadata.get('public_key')}", file=out)
    for old in metadata.get("previous_key_ids", []):
        print(f"replaced:   {old}", file=out)
    return EXIT_OK


# -- agent register --------------------------------------------------------------------


def _agent_register(args: argparse.Namespace, out: TextIO) -> int:
    metadata = _read_metadata(args.path)
    token = os.environ.get(args.token_env)
    if not token:
        raise UsageError(f"environment variable {args.token_env} is not set or empty; put an admin's API token there")
    done = register_public_identity(
        args.url, token, metadata, display_name=args.display_name, risk_tier=args.risk_tier,
        environments=args.environments,
    )
    name = metadata["name"]
    print(f"agent {name}: {'registered' if done.agent_created else 'already registered (left unchanged)'}", file=out)
    print(f"key {done.key_id}: {'registered' if done.key_created else 'already registered'}", file=out)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
