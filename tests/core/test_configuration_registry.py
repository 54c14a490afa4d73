"""Configuration cannot drift from its documentation: .env.example and the table in
docs/configuration.md list exactly the variables of the registry, with its defaults, and
settings read no WARDEN_* variable the registry does not declare."""

import re
import tomllib
from pathlib import Path

from controlplane.settings.registry import VARIABLES, default_text

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {variable.name for variable in VARIABLES}


def env_example_variables() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {m.group(1): m.group(2) for line in lines if (m := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)", line))}


def documented_rows() -> dict[str, list[str]]:
    table = (ROOT / "docs" / "configuration.md").read_text().split("## Every variable", 1)[1]
    rows = {}
    for line in table.splitlines():
        if match := re.match(r"^\| `([A-Z][A-Z0-9_]*)` \|(.*)\|$", line):
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_env_example_lists_exactly_the_declared_variables():
    listed = env_example_variables()
    assert set(listed) - DECLARED == set(), "in .env.example but not declared in settings/registry.py"
    assert DECLARED - set(listed) == set(), "declared in settings/registry.py but missing from .env.example"


def test_env_example_shows_the_declared_defaults():
    listed = env_example_variables()
    for variable in VARIABLES:
        if variable.default_text or variable.default in ("", ()) or variable.name.endswith("_URL"):
            continue
        assert listed[variable.name] == default_text(variable), variable.name


def test_the_configuration_page_documents_exactly_the_declared_variables_with_their_defaults():
    rows = documented_rows()
    assert set(rows) == DECLARED
    for variable in VARIABLES:
        kind, default, description = rows[variable.name]
        assert kind == ("list" if variable.kind is tuple else variable.kind.__name__), variable.name
        assert default == default_text(variable), variable.name
        assert description == variable.description, variable.name


def test_the_page_no_longer_claims_connections_are_kept_60_seconds():
    """The drift this test was written for: the page said 60 s, the default was 0."""
    assert documented_rows()["WARDEN_DB_CONN_MAX_AGE"][1] == "0"
    assert "60 s" not in (ROOT / "docs" / "configuration.md").read_text()


def test_settings_read_only_declared_variables():
    source = "\n".join(path.read_text() for path in (ROOT / "controlplane" / "settings").glob("*.py"))
    assert "os.environ.get(" not in source.replace('os.environ.get(name)', ""), "read variables through registry.read"
    used = set(re.findall(r'read\("([A-Z][A-Z0-9_]*)"', source))
    assert used == DECLARED, "every declared variable is read in settings, and only those"


def test_weasyprint_is_a_declared_dependency_so_make_lock_keeps_it():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"weasyprint\b", dependency) for dependency in dependencies)
    assert re.search(r"^weasyprint==", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
