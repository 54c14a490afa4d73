"""What a sandboxed tool may touch: ``Permissions`` and its ``Limits``.

A profile is plain JSON so that it can travel in the signed bundle. The agent's registry
entry (``data.warden_registry.agents[<name>]``) carries it in three places, so the policy
and the sandbox read the same facts:

    "egress":  {"allow_hosts": [...]}        → Permissions.network_access
    "shell":   {"allow_commands": [...]}     → Permissions.shell_commands
    "sandbox": {"file_read": [...], "file_write": [...], "limits": {...}}

``profile_problem`` is the one validator of the ``sandbox`` object; the control plane calls
it too, so a profile the registry accepts is a profile the SDK can run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from agents_sdk.sandbox.errors import SandboxProfileError

MAX_PATHS = 100
MAX_PATH_LENGTH = 1024
MAX_HOSTS = 200
MAX_COMMANDS = 200

# Host globs as the policy reads them (rego/warden/egress.rego: glob.match with "." as
# delimiter), the same shape the control plane validates; the SDK also takes an IP literal
# and an optional ":port" (without one, ports 80 and 443).
_HOST_GLOB = re.compile(r"^(\*|\*\*|[a-z0-9*]([a-z0-9*\-]{0,62}))(\.(\*|[a-z0-9*]([a-z0-9*\-]{0,62})))*$")

# Paths a profile may never expose: the whole host, or kernel interfaces the sandbox
# replaces with its own minimal /proc and /dev.
_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run. Every limit is per run and always applies."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 10
    memory_mb: int = 512
    processes: int = 64
    output_kb: int = 1024
    file_size_mb: int = 64
    open_files: int = 256

    # (lowest, highest) each limit may be set to: a profile cannot lift the sandbox's ceiling.
    BOUNDS = {
        "wall_seconds": (0.1, 3600),
        "cpu_seconds": (1, 3600),
        "memory_mb": (16, 65536),
        "processes": (1, 4096),
        "output_kb": (1, 1024 * 1024),
        "file_size_mb": (1, 65536),
        "open_files": (16, 65536),
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            integral = name != "wall_seconds"
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                kind = "an integer" if integral else "a number"
                raise SandboxProfileError(f"limits.{name}: must be {kind} between {low} and {high}")
            if not low <= value <= high or value != value:  # value != value catches NaN
                raise SandboxProfileError(f"limits.{name}: {value!r} is outside {low}..{high}")

    @classmethod
    def from_dict(cls, data: Any) -> Limits:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise SandboxProfileError("limits: must be an object such as {\"wall_seconds\": 30}")
        unknown = sorted(set(data) - set(cls.BOUNDS), key=str)
        if unknown:
            raise SandboxProfileError(f"limits.{unknown[0]}: unknown limit; known: {', '.join(cls.BOUNDS)}")
        return cls(**dict(data))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.BOUNDS}


def _check_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SandboxProfileError(f"{where}: must be an absolute path such as '/srv/data'")
    if len(value) > MAX_PATH_LENGTH:
        raise SandboxProfileError(f"{where}: longer than {MAX_PATH_LENGTH} characters")
    if any(ch == "\0" or ("\ud800" <= ch <= "\udfff") or ch in "\n\r" for ch in value):
        raise SandboxProfileError(f"{where}: contains NUL, a line break or a lone surrogate")
    if not value.startswith("/"):
        raise SandboxProfileError(f"{where}: {value!r} must be absolute (start with '/')")
    segments = value.rstrip("/").split("/")[1:]
    if not segments or segments == [""]:
        raise SandboxProfileError(f"{where}: '/' would expose the whole host; list the directories the tool needs")
    if any(segment in ("", ".", "..") for segment in segments):
        raise SandboxProfileError(f"{where}: {value!r} must not contain '.', '..' or '//' segments")
    normal = "/" + "/".join(segments)
    if any(normal == root or normal.startswith(root + "/") for root in _FORBIDDEN_ROOTS):
        raise SandboxProfileError(f"{where}: {value!r} is a kernel interface; the sandbox brings its own /proc and /dev")
    return normal


def _check_paths(values: Any, where: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise SandboxProfileError(f"{where}: must be a list of absolute paths")
    values = list(values)
    if len(values) > MAX_PATHS:
        raise SandboxProfileError(f"{where}: at most {MAX_PATHS} paths")
    paths = tuple(_check_path(value, f"{where}[{index}]") for index, value in enumerate(values))
    if len(set(paths)) != len(paths):
        raise SandboxProfileError(f"{where}: paths must not repeat")
    return paths


def split_host_entry(entry: str) -> tuple[str, int | None]:
    """``"api.example.com:8443"`` → ``("api.example.com", 8443)``; no port → ``None``."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def _check_host(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 260:
        raise SandboxProfileError(f"{where}: must be a host name, glob or IP such as '*.example.com'")
    try:
        host, port = split_host_entry(value)
    except ValueError:
        raise SandboxProfileError(f"{where}: {value!r} has a port that is not a number") from None
    if port is not None and not 1 <= port <= 65535:
        raise SandboxProfileError(f"{where}: port {port} is outside 1..65535")
    try:
        ipaddress.ip_address(host)
        return value
    except ValueError:
        pass
    if len(host) > 253 or not _HOST_GLOB.match(host):
        raise SandboxProfileError(f"{where}: {value!r} is not a lowercase host name or glob such as '*.example.com'")
    return value


def _check_command(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise SandboxProfileError(f"{where}: must be a program name or one command line of at most 500 characters")
    if any(ch in "\0\n\r" or ("\ud800" <= ch <= "\udfff") for ch in value):
        raise SandboxProfileError(f"{where}: contains NUL, a line break or a lone surrogate")
    return value.strip()


def _check_list(values: Any, where: str, limit: int, check) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise SandboxProfileError(f"{where}: must be a list")
    values = list(values)
    if len(values) > limit:
        raise SandboxProfileError(f"{where}: at most {limit} entries")
    return tuple(check(value, f"{where}[{index}]") for index, value in enumerate(values))


@dataclass(frozen=True)
class Permissions:
    """What a sandboxed run may use.

    ``file_read``: paths bound read-only; ``file_write``: paths bound read-write (both must
    exist). ``network_access``: host names, globs (``*.example.com``) or IPs, optionally with
    ``:port``, reachable only through the egress proxy; empty means no network at all.
    ``shell_commands``: programs (an entry without spaces: that program with any arguments)
    or exact command lines the sandbox may start; empty means nothing may start.
    Raises SandboxProfileError, naming the field, for anything malformed.
    """

    file_read: tuple[str, ...] = ()
    file_write: tuple[str, ...] = ()
    network_access: tuple[str, ...] = ()
    shell_commands: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_read", _check_paths(self.file_read, "file_read"))
        object.__setattr__(self, "file_write", _check_paths(self.file_write, "file_write"))
        object.__setattr__(
            self, "network_access", _check_list(self.network_access, "network_access", MAX_HOSTS, _check_host)
        )
        object.__setattr__(
            self, "shell_commands", _check_list(self.shell_commands, "shell_commands", MAX_COMMANDS, _check_command)
        )
        if isinstance(self.limits, Mapping):
            object.__setattr__(self, "limits", Limits.from_dict(self.limits))
        elif not isinstance(self.limits, Limits):
            raise SandboxProfileError("limits: must be a Limits or an object of limits")

    @classmethod
    def from_registry(cls, entry: Mapping[str, Any]) -> Permissions:
        """The permissions of one agent from its registry entry in the bundle
        (``data.warden_registry.agents[<name>]``).

        Raises SandboxProfileError when the entry has no ``sandbox`` profile: an agent the
        registry gives no profile gets no sandboxed runs, never an unsandboxed one.
        """
        if not isinstance(entry, Mapping):
            raise SandboxProfileError("the agent's registry entry must be an object")
        profile = entry.get("sandbox")
        if not profile:
            raise SandboxProfileError(
                "sandbox: the agent's registry entry has no sandbox profile; set one on the agent "
                "(sandbox_profile) before it runs sandboxed tools"
            )
        problem = profile_problem(profile)
        if problem:
            raise SandboxProfileError(problem)
        egress = entry.get("egress") or {}
        shell = entry.get("shell") or {}
        return cls(
            file_read=profile.get("file_read", ()),
            file_write=profile.get("file_write", ()),
            network_access=egress.get("allow_hosts", ()) if isinstance(egress, Mapping) else (),
            shell_commands=shell.get("allow_commands", ()) if isinstance(shell, Mapping) else (),
            limits=Limits.from_dict(profile.get("limits")),
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["limits"] = self.limits.as_dict()
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @property
    def profile_hash(self) -> str:
        """SHA-256 of the canonical JSON of the whole profile: what a run record names."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def allows_command(self, argv: tuple[str, ...]) -> bool:
        """The rule of rego/warden/shell.rego on an argument vector: a program entry matches
        ``argv[0]`` exactly, a command-line entry the whole line."""
        line = " ".join(argv)
        return any((entry == argv[0]) if " " not in entry else (entry == line) for entry in self.shell_commands)


PROFILE_KEYS = ("file_read", "file_write", "limits")


def profile_problem(profile: Any) -> str | None:
    """Why ``profile`` (the registry's ``sandbox`` object) is invalid, naming the field, or None."""
    if not isinstance(profile, Mapping):
        return "must be an object with file_read, file_write and limits"
    unknown = sorted((key for key in profile if key not in PROFILE_KEYS), key=str)
    if unknown:
        return f"{unknown[0]}: unknown field; a sandbox profile has {', '.join(PROFILE_KEYS)}"
    try:
        Permissions(
            file_read=profile.get("file_read", ()),
            file_write=profile.get("file_write", ()),
            limits=Limits.from_dict(profile.get("limits")),
        )
    except SandboxProfileError as exc:
        return str(exc)
    except TypeError as exc:  # e.g. a limit name that is not a string
        return f"limits: {exc}"
    return None
