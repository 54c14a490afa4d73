"""Permissions and profiles: what a profile may say, and hostile shapes refused with the field named."""

from __future__ import annotations

import pytest

from agents_sdk.sandbox import Limits, Permissions, SandboxProfileError, profile_problem


def test_the_registry_entry_becomes_permissions_with_the_policys_hosts_and_commands():
    entry = {
        "egress": {"allow_hosts": ["*.example.com"]},
        "shell": {"allow_commands": ["python3", "git status"]},
        "sandbox": {"file_read": ["/srv/data/"], "file_write": ["/srv/out"], "limits": {"memory_mb": 256}},
    }
    permissions = Permissions.from_registry(entry)
    assert permissions.file_read == ("/srv/data",)
    assert permissions.network_access == ("*.example.com",)
    assert permissions.shell_commands == ("python3", "git status")
    assert permissions.limits == Limits(memory_mb=256)
    assert permissions.allows_command(("python3", "-c", "1"))
    assert permissions.allows_command(("git", "status"))
    assert not permissions.allows_command(("git", "push"))
    assert not permissions.allows_command(("/tmp/python3",))


def test_the_profile_hash_changes_with_any_field_and_only_then():
    base = Permissions(file_read=["/srv/a"], shell_commands=["python3"])
    assert base.profile_hash == Permissions(file_read=["/srv/a"], shell_commands=["python3"]).profile_hash
    for other in (
        Permissions(file_read=["/srv/b"], shell_commands=["python3"]),
        Permissions(file_read=["/srv/a"], file_write=["/srv/a/out"], shell_commands=["python3"]),
        Permissions(file_read=["/srv/a"], shell_commands=["python3"], network_access=["pypi.org"]),
        Permissions(file_read=["/srv/a"], shell_commands=["python3"], limits={"processes": 8}),
    ):
        assert other.profile_hash != base.profile_hash


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file_read", "/srv", "file_read: must be a list"),
        ("file_read", ["relative/path"], "file_read[0]: 'relative/path' must be absolute"),
        ("file_read", ["/"], "file_read[0]: '/' would expose the whole host"),
        ("file_read", ["/srv/../etc"], "must not contain '.', '..'"),
        ("file_read", ["/srv//x"], "must not contain '.', '..'"),
        ("file_write", ["/srv/\0x"], "file_write[0]: contains NUL"),
        ("file_write", ["/srv/\udc80"], "lone surrogate"),
        ("file_write", ["/proc/1/root"], "kernel interface"),
        ("file_read", ["/sys"], "kernel interface"),
        ("file_read", [42], "file_read[0]: must be an absolute path"),
        ("file_read", ["/a"] * 2, "paths must not repeat"),
        ("file_read", ["/a" + "b" * 2000], "longer than"),
        ("file_read", [f"/p{i}" for i in range(101)], "at most 100"),
        ("network_access", ["Example.COM"], "network_access[0]"),
        ("network_access", ["evil.com/path"], "network_access[0]"),
        ("network_access", ["host:99999"], "port 99999 is outside"),
        ("network_access", ["host:http"], "port that is not a number"),
        ("shell_commands", ["ls\nrm -rf /"], "shell_commands[0]: contains NUL, a line break"),
        ("shell_commands", ["  "], "shell_commands[0]"),
        ("limits", {"memory_mb": 10**9}, "limits.memory_mb"),
        ("limits", {"processes": 0}, "limits.processes"),
        ("limits", {"processes": True}, "limits.processes: must be an integer"),
        ("limits", {"wall_seconds": float("nan")}, "limits.wall_seconds"),
        ("limits", {"cpu_seconds": "10"}, "limits.cpu_seconds: must be an integer"),
        ("limits", {"bogus": 1}, "limits.bogus: unknown limit"),
        ("limits", [1], "limits: must be"),
    ],
)
def test_hostile_fields_are_refused_naming_the_field(field, value, message):
    with pytest.raises(SandboxProfileError) as raised:
        Permissions(**{field: value})
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (None, "must be an object"),
        ([], "must be an object"),
        ({"file_read": ["/srv"], "network": ["x"]}, "network: unknown field"),
        ({"file_read": "/srv"}, "file_read: must be a list"),
        ({"limits": {"memory_mb": -1}}, "limits.memory_mb"),
        ({"limits": {1: 2}}, "limits.1: unknown limit"),
        ({"file_write": [{"path": "/x"}]}, "file_write[0]"),
    ],
)
def test_profile_problem_names_the_field(profile, message):
    assert message in profile_problem(profile)


def test_a_valid_profile_has_no_problem_and_an_empty_one_runs_nothing():
    assert profile_problem({"file_read": ["/srv"], "file_write": [], "limits": {"wall_seconds": 2.5}}) is None
    with pytest.raises(SandboxProfileError, match="no sandbox profile"):
        Permissions.from_registry({"egress": {"allow_hosts": ["x.example.com"]}, "sandbox": {}})
    with pytest.raises(SandboxProfileError, match="registry entry must be an object"):
        Permissions.from_registry(["sandbox"])
