"""The sidecar's configuration: OPA's own config.yaml format."""


from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents_sdk.bundles import (
    VerificationConfig,
    VerificationKey,
)
from agents_sdk.errors import WardenError
from agents_sdk.version import __version__

VERSION_LABEL = f"warden-sidecar-{__version__}"
DEFAULT_ADDR = "127.0.0.1:8181"
MAX_REQUEST_BODY = 8 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
READ_TIMEOUT = 10.0
"""Seconds a request may take to arrive, from its first byte to its last (agents_sdk.sidecar.serving)."""
PATH_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")




class ConfigError(WardenError):
    """The sidecar's config file is missing, unreadable, or not a valid OPA configuration."""


# -- configuration (OPA's config.yaml) --------------------------------------------------


@dataclass(frozen=True)
class Service:
    """``services.<name>``: where the control plane is and how to authenticate."""

    name: str
    url: str
    token: str | None = None
    token_path: str | None = None
    scheme: str = "Bearer"
    headers: Mapping[str, str] = field(default_factory=dict)
    response_header_timeout: float = 10.0

    def authorization(self) -> str | None:
        if self.token_path:
            return f"{self.scheme} {Path(self.token_path).read_text('utf-8').strip()}"
        return f"{self.scheme} {self.token}" if self.token else None

    def endpoint(self, resource: str) -> str:
        # OPA joins with one slash, trimming slashes around the resource.
        return self.url.rstrip("/") + "/" + resource.strip("/")


@dataclass(frozen=True)
class BundleConfig:
    name: str
    service: str
    resource: str
    verification: VerificationConfig | None
    long_polling_timeout: int | None
    min_delay: float
    max_delay: float
    persist: bool
    # Warden's addition to OPA's bundle config: fail closed on a bundle older than this
    # (agents_sdk.bundles.freshness); None = no maximum.
    max_age: float | None = None


@dataclass(frozen=True)
class DecisionLogConfig:
    service: str
    resource: str = "/logs"
    min_delay: float = 300.0
    max_delay: float = 600.0
    upload_size_limit_bytes: int = 32768
    buffer_size_limit_events: int = 10000


@dataclass(frozen=True)
class SidecarConfig:
    """What the sidecar takes from OPA's config.yaml."""

    services: Mapping[str, Service]
    bundle: BundleConfig
    labels: Mapping[str, str]
    # Further bundles with disjoint roots, loaded together with `bundle` (docs/opa.md,
    # "Bundle layout": bundles/<env>/policy and bundles/<env>/registry).
    more_bundles: tuple[BundleConfig, ...] = ()
    decision_logs: DecisionLogConfig | None = None
    status_service: str | None = None
    status_partition: str = ""
    persistence_directory: str = ".opa"


def _expand_env(text: str) -> str:
    return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), text)


def load_config(path: str | os.PathLike[str]) -> SidecarConfig:
    """Read an OPA config file (YAML, or JSON) with ``${VAR}`` expanded from the environment.

    Raises ConfigError naming the field at fault; reading YAML needs PyYAML (JSON doesn't).
    """
    try:
        text = _expand_env(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is in the sidecar extra
            raise ConfigError(
                f"{path} is YAML: install PyYAML (pip install 'warden-agents-sdk[sidecar]') or write it as JSON"
            ) from exc
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping (OPA's configuration)")
    return parse_config(raw, base_dir=Path(path).resolve().parent)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _number(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number")
    return float(value)


def parse_config(raw: Mapping[str, Any], *, base_dir: Path | None = None) -> SidecarConfig:
    """Build a SidecarConfig from OPA's configuration as a dict. Raises ConfigError."""
    services_raw = raw.get("services")
    if isinstance(services_raw, list):  # OPA accepts a list of {name: …, url: …} too
        services_raw = {s.get("name"): s for s in services_raw if isinstance(s, dict)}
    services_raw = _mapping(services_raw, "services")
    if not services_raw:
        raise ConfigError("services: at least one service (the control plane) is required")
    services: dict[str, Service] = {}
    for name, spec in services_raw.items():
        spec = _mapping(spec, f"services.{name}")
        url = spec.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"services.{name}.url must be an http(s) URL")
        bearer = _mapping(_mapping(spec.get("credentials"), f"services.{name}.credentials").get("bearer"),
                          f"services.{name}.credentials.bearer")
        if bearer.get("token") and bearer.get("token_path"):
            raise ConfigError(f"services.{name}.credentials.bearer: give token or token_path, not both")
        token_path = bearer.get("token_path")
        if token_path and base_dir is not None and not os.path.isabs(token_path):
            token_path = str(base_dir / token_path)
        services[name] = Service(
            name=name,
            url=url,
            token=bearer.get("token") or None,
            token_path=token_path or None,
            scheme=bearer.get("scheme") or "Bearer",
            headers={str(k): str(v) for k, v in _mapping(spec.get("headers"), f"services.{name}.headers").items()},
            response_header_timeout=_number(
                spec.get("response_header_timeout_seconds"), f"services.{name}.response_header_timeout_seconds", 10.0
            ),
        )
    first_service = next(iter(services))

    keys: dict[str, VerificationKey] = {}
    for key_id, spec in _mapping(raw.get("keys"), "keys").items():
        spec = _mapping(spec, f"keys.{key_id}")
        try:
            keys[key_id] = VerificationKey(
                key_id=key_id,
                algorithm=spec.get("algorithm") or "RS256",
                key=spec.get("key") or "",
                scope=spec.get("scope") or "",
            )
        except ValueError as exc:
            raise ConfigError(f"keys.{key_id}: {exc}") from exc

    bundles = _mapping(raw.get("bundles"), "bundles")
    if not bundles:
        raise ConfigError(
            "bundles: configure exactly one bundle (the environment's Warden bundle), or its policy and registry bundles"
        )
    parsed = [_bundle_config(name, spec, services, keys, first_service) for name, spec in bundles.items()]


    decision_logs = None
    logs = _mapping(raw.get("decision_logs"), "decision_logs")
    if logs and not logs.get("console") or logs.get("service"):
        log_service = logs.get("service") or first_service
        if log_service not in services:
            raise ConfigError(f"decision_logs.service: no service named {log_service!r}")
        reporting = _mapping(logs.get("reporting"), "decision_logs.reporting")
        decision_logs = DecisionLogConfig(
            service=log_service,
            resource=logs.get("resource") or "/logs",
            min_delay=_number(reporting.get("min_delay_seconds"), "decision_logs.reporting.min_delay_seconds", 300),
            max_delay=_number(reporting.get("max_delay_seconds"), "decision_logs.reporting.max_delay_seconds", 600),
            upload_size_limit_bytes=int(
                _number(reporting.get("upload_size_limit_bytes"), "decision_logs.reporting.upload_size_limit_bytes", 32768)
            ),
            buffer_size_limit_events=int(
                _number(reporting.get("buffer_size_limit_events"), "decision_logs.reporting.buffer_size_limit_events", 10000)
            ),
        )

    status = _mapping(raw.get("status"), "status")
    status_service = None
    if status and not status.get("console") or status.get("service"):
        status_service = status.get("service") or first_service
        if status_service not in services:
            raise ConfigError(f"status.service: no service named {status_service!r}")

    labels = {str(k): str(v) for k, v in _mapping(raw.get("labels"), "labels").items()}
    # OPA's default is .opa in the working directory.
    persistence = str(Path(raw.get("persistence_directory") or ".opa").absolute())
    return SidecarConfig(
        services=services,
        bundle=parsed[0],
        more_bundles=tuple(parsed[1:]),
        labels=labels,
        decision_logs=decision_logs,
        status_service=status_service,
        status_partition=str(status.get("partition_name") or ""),
        persistence_directory=persistence,
    )


def _bundle_config(bundle_name: str, raw_spec: Any, services: Mapping[str, Service], keys: Any, first_service: str) -> BundleConfig:
    """One entry of OPA's `bundles` (Warden's split layout has two: policy and registry)."""
    spec = _mapping(raw_spec, f"bundles.{bundle_name}")
    service = spec.get("service") or first_service
    if service not in services:
        raise ConfigError(f"bundles.{bundle_name}.service: no service named {service!r}")
    signing = _mapping(spec.get("signing"), f"bundles.{bundle_name}.signing")
    verification = None
    if signing or keys:
        try:
            verification = VerificationConfig(
                keys=keys,
                keyid=signing.get("keyid") or "",
                scope=signing.get("scope") or "",
                exclude_files=tuple(signing.get("exclude_files") or ()),
            )
        except ValueError as exc:
            raise ConfigError(f"bundles.{bundle_name}.signing.keyid: {exc}") from exc
    polling = _mapping(spec.get("polling"), f"bundles.{bundle_name}.polling")
    long_poll = polling.get("long_polling_timeout_seconds")
    if long_poll is not None and (not isinstance(long_poll, int) or long_poll < 1):
        raise ConfigError(f"bundles.{bundle_name}.polling.long_polling_timeout_seconds must be at least 1")
    min_delay = _number(polling.get("min_delay_seconds"), f"bundles.{bundle_name}.polling.min_delay_seconds", 60)
    max_delay = _number(polling.get("max_delay_seconds"), f"bundles.{bundle_name}.polling.max_delay_seconds", 120)
    if max_delay < min_delay:
        raise ConfigError(f"bundles.{bundle_name}.polling: max polling delay must be >= min polling delay")
    max_age = spec.get("max_age_seconds")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int | float) or not max_age > 0):
        raise ConfigError(
            f"bundles.{bundle_name}.max_age_seconds must be a positive number of seconds (e.g. 86400), not {max_age!r:.40}"
        )
    return BundleConfig(
        name=bundle_name,
        service=service,
        resource=spec.get("resource") or f"bundles/{bundle_name}",
        verification=verification,
        long_polling_timeout=long_poll,
        min_delay=min_delay,
        max_delay=max_delay,
        persist=bool(spec.get("persist", False)),
        max_age=float(max_age) if max_age is not None else None,
    )
