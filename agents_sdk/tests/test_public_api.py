"""The SDK's public surface: ``import agents_sdk as warden``, one exception root, py.typed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import agents_sdk as warden
from agents_sdk.tests.conftest import REPO_ROOT

# Modules that need an optional extra (a framework) to import.
OPTIONAL = {"agents_sdk.integrations.langchain", "agents_sdk.integrations.openai_agents",
            "agents_sdk.integrations.haystack", "agents_sdk.integrations.mcp_proxy"}
# Exceptions allowed outside WardenError: none.
PENDING_ROOT: set[str] = set()


def sdk_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(warden.__path__, "agents_sdk."):
        if ".tests" in info.name or info.name in OPTIONAL or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_every_public_name_resolves_and_all_is_exactly_the_export_map():
    assert set(warden.__all__) == {"__version__", *warden._EXPORTS}
    for name in warden.__all__:
        assert getattr(warden, name) is not None, name
    assert warden.Guard is importlib.import_module("agents_sdk.guard").Guard
    assert warden.Decision is importlib.import_module("agents_sdk.guard.decision").Decision


def test_an_unknown_name_is_an_attribute_error():
    try:
        warden.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_does_not_load_the_engine():
    """The control plane imports agents_sdk.records; that must not pull in regorus."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, agents_sdk, agents_sdk.records; print('regorus' in sys.modules)"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=True,
    )
    assert done.stdout.strip() == "False"


def test_every_exception_the_sdk_defines_derives_from_warden_error():
    outside = set()
    for module_name in sdk_modules():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            assert not (exc.name or "").startswith("agents_sdk"), exc
            continue  # needs an optional third-party package (e.g. the OPA oracle's bindings)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module_name
                    and not issubclass(value, warden.WardenError)):
                outside.add(name)
    assert outside - {"RegoCompileError", "RegoEvaluationError"} == PENDING_ROOT


def test_every_error_in_the_errors_tree_is_exported():
    tree = inspect.getdoc(importlib.import_module("agents_sdk.errors")) or ""
    for name in warden.__all__:
        value = getattr(warden, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert name in tree, f"{name} is missing from the tree in agents_sdk/errors.py"


def test_the_package_is_marked_typed():
    assert (REPO_ROOT / "agents_sdk" / "py.typed").is_file()
    assert 'agents_sdk = ["py.typed"]' in (REPO_ROOT / "agents_sdk" / "pyproject.toml").read_text()


def test_the_distribution_ships_every_package_of_the_sdk():
    """`pip install ./agents_sdk` installs only the packages pyproject.toml lists: a new
    subpackage left out imports from the repo and fails for every user (as approvals did)."""
    import tomllib
    from pathlib import Path

    root = Path(warden.__file__).parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(("agents_sdk", *init.parent.relative_to(root).parts)).rstrip(".")
        for init in root.rglob("__init__.py")
        if not {"tests", "build"} & set(init.relative_to(root).parts)
    }
    assert on_disk == listed
