"""OPA's configuration rules, written from OPA's source (v1/config/config.go,
v1/plugins/rest/{rest,auth}.go, v1/keys/keys.go, v1/plugins/bundle/config.go,
v1/plugins/discovery/config.go, v1/plugins/logs/plugin.go, v1/plugins/status/plugin.go),
independently of agents_sdk.sidecar.config: tests check deploy/opa/*.yaml the way OPA
checks a config file at start, plus one rule OPA does not have: an unknown key is refused
(OPA ignores it, so a misspelt `decision_log:` would silently log nothing).

`check(config)` returns every problem found, in OPA's words where OPA has them.
"""

from __future__ import annotations

import os
import re
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

# config.Config's JSON fields.
TOP_LEVEL = {
    "services", "labels", "discovery", "bundles", "decision_logs", "status", "plugins", "keys",
    "default_decision", "default_authorization_decision", "caching", "nd_builtin_cache",
    "persistence_directory", "distributed_tracing", "server", "storage", "extra",
}
SERVICE = {"name", "url", "headers", "allow_insecure_tls", "response_header_timeout_seconds", "tls",
           "credentials", "keys", "type"}
CREDENTIALS = {"bearer", "oauth2", "client_tls", "s3_signing", "gcp_metadata", "azure_managed_identity", "plugin"}
BEARER = {"token", "token_path", "scheme"}
KEY = {"algorithm", "key", "private_key", "scope"}
# v1/keys: the algorithms jwx verifies bundle signatures with.
ALGORITHMS = {"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "PS256", "PS384", "PS512", "RS256", "RS384",
              "RS512"}
POLLING = {"min_delay_seconds", "max_delay_seconds", "long_polling_timeout_seconds"}
SIGNING = {"keyid", "scope", "exclude_files"}
BUNDLE = {"service", "resource", "signing", "persist", "polling", "trigger", "size_limit_bytes"}
DISCOVERY = {"name", "resource", "service", "decision", "signing", "persist", "polling", "trigger"}
LOGS = {"service", "partition_name", "reporting", "request_context", "mask_decision", "drop_decision", "plugin",
        "console", "resource", "nd_builtins", "buffer_type"}
REPORTING = {"buffer_size_limit_events", "buffer_size_limit_bytes", "upload_size_limit_bytes", "min_delay_seconds",
             "max_delay_seconds", "trigger"}
STATUS = {"service", "partition_name", "console", "prometheus", "prometheus_config", "plugin", "trigger"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(text: str, env: dict[str, str] | None = None) -> str:
    """OPA's ${VAR} substitution from the environment, before the YAML is parsed."""
    values = os.environ if env is None else env
    return _ENV.sub(lambda m: values.get(m.group(1), ""), text)


def _unknown(where: str, value: Any, allowed: set[str], problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be an object")
        return {}
    problems.extend(f"{where}.{key}: unknown field" for key in value if key not in allowed)
    return value


def _polling(where: str, polling: Any, problems: list[str]) -> None:
    polling = _unknown(f"{where}.polling", polling, POLLING, problems)
    low, high = polling.get("min_delay_seconds", 60), polling.get("max_delay_seconds", 120)
    for name, value in (("min_delay_seconds", low), ("max_delay_seconds", high)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where}.polling.{name}: must be a whole number of seconds")
            return
    if high < low:
        problems.append(f"{where}: max polling delay must be >= min polling delay")
    long_poll = polling.get("long_polling_timeout_seconds")
    if long_poll is not None and (isinstance(long_poll, bool) or not isinstance(long_poll, int) or long_poll <= 0):
        problems.append(f"{where}: long polling timeout must be set to a value greater than zero")


def _service_ref(where: str, name: Any, services: dict, problems: list[str]) -> None:
    if name is None:
        if not services:
            problems.append(f"{where}: no service configured")
        return
    if name not in services:
        problems.append(f"{where}: invalid service name {name!r}")


def _signing(where: str, signing: Any, keys: dict, problems: list[str]) -> None:
    signing = _unknown(f"{where}.signing", signing, SIGNING, problems)
    keyid = signing.get("keyid")
    if signing and keyid and keyid not in keys:
        problems.append(f"{where}.signing: keyid {keyid!r} not found in keys")


def check(config: Any) -> list[str]:
    problems: list[str] = []
    config = _unknown("config", config, TOP_LEVEL, problems)

    raw_services = config.get("services") or {}
    if isinstance(raw_services, list):  # OPA also takes a list of objects with a name
        raw_services = {s.get("name"): s for s in raw_services if isinstance(s, dict)}
    services: dict[str, dict] = {}
    for name, spec in _unknown("services", raw_services, set(raw_services), problems).items():
        spec = _unknown(f"services.{name}", spec, SERVICE, problems)
        services[name] = spec
        url = spec.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            problems.append(f"services.{name}.url: must be an http(s) URL, not {url!r}")
        credentials = _unknown(f"services.{name}.credentials", spec.get("credentials"), CREDENTIALS, problems)
        if len(credentials) > 1:
            problems.append(f"services.{name}.credentials: a maximum of one credential method is supported")
        bearer = _unknown(f"services.{name}.credentials.bearer", credentials.get("bearer"), BEARER, problems)
        if bearer and bool(bearer.get("token")) == bool(bearer.get("token_path")):
            problems.append(f'services.{name}: invalid config: specify a value for either the "token" or '
                            f'"token_path" field')

    keys = _unknown("keys", config.get("keys"), set(config.get("keys") or {}), problems)
    for key_id, spec in keys.items():
        spec = _unknown(f"keys.{key_id}", spec, KEY, problems)
        algorithm = spec.get("algorithm", "RS256")
        if algorithm not in ALGORITHMS:
            problems.append(f"keys.{key_id}: unsupported algorithm {algorithm!r}")
        elif not algorithm.startswith("HS"):
            try:
                load_pem_public_key(str(spec.get("key", "")).encode())
            except ValueError:
                problems.append(f"keys.{key_id}.key: not a PEM public key")

    bundles = config.get("bundles") or {}
    for name, spec in _unknown("bundles", bundles, set(bundles), problems).items():
        where = f"bundles.{name}"
        spec = _unknown(where, spec, BUNDLE, problems)
        _service_ref(f"{where}.service", spec.get("service"), services, problems)
        _polling(where, spec.get("polling"), problems)
        _signing(where, spec.get("signing"), keys, problems)
        if spec.get("trigger", "periodic") not in ("periodic", "manual"):
            problems.append(f"{where}.trigger: invalid trigger mode {spec.get('trigger')!r}")

    if "discovery" in config:
        discovery = _unknown("discovery", config["discovery"], DISCOVERY, problems)
        if not discovery.get("resource") and not discovery.get("name"):
            problems.append("discovery: missing required discovery.resource field")
        _service_ref("discovery.service", discovery.get("service"), services, problems)
        _polling("discovery", discovery.get("polling"), problems)
        _signing("discovery", discovery.get("signing"), keys, problems)

    if "decision_logs" in config:
        logs = _unknown("decision_logs", config["decision_logs"], LOGS, problems)
        if not logs.get("console") or logs.get("service"):
            _service_ref("decision_logs.service", logs.get("service"), services, problems)
        reporting = _unknown("decision_logs.reporting", logs.get("reporting"), REPORTING, problems)
        low, high = reporting.get("min_delay_seconds", 300), reporting.get("max_delay_seconds", 600)
        if high < low:
            problems.append("decision_logs: max reporting delay must be >= min reporting delay")
        if reporting.get("upload_size_limit_bytes", 32768) <= 0:
            problems.append("decision_logs.reporting.upload_size_limit_bytes: must be greater than zero")
        if logs.get("buffer_type", "size") not in ("size", "event"):
            problems.append(f"decision_logs.buffer_type: unknown buffer type {logs.get('buffer_type')!r}")

    if "status" in config:
        status = _unknown("status", config["status"], STATUS, problems)
        if not status.get("console") or status.get("service"):
            _service_ref("status.service", status.get("service"), services, problems)

    labels = config.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        problems.append("labels: must map names to strings")
    return problems
