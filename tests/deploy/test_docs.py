"""docs/deploy.md against what it describes: the manifest list is the tree, every metric
it names is one the web tier or the workers expose, the alert rules parse and use only
those, and the `make prodlike` steps it shows are the runner's."""

from __future__ import annotations

import re

import pytest
import yaml
from prometheus_client.registry import REGISTRY

from tests.deploy.conftest import DEPLOY, ROOT

DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def block(language: str, index: int = 0) -> str:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)[index]


def test_the_manifest_list_is_the_tree():
    listed = block("text", 0).split()
    assert len(listed) == len(set(listed))
    assert set(listed) == {str(p.relative_to(ROOT)) for p in (DEPLOY / "k8s").rglob("*.yaml")}


@pytest.mark.django_db
def test_every_documented_metric_is_exposed():
    import controlplane.metrics.worker  # noqa: F401  (the workers' instruments)
    from controlplane.metrics.state import StateCollector

    exposed = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    for family in REGISTRY.collect():  # labelled series have no sample until first used
        exposed |= {family.name, f"{family.name}_total" if family.type == "counter" else family.name}
    exposed |= {family.name for family in StateCollector().collect()}
    exposed |= {"warden_audit_last_checkpoint_age_seconds"}  # only once a checkpoint exists
    roles = {"warden_owner", "warden_app", "warden_retention", "warden_audit_deleter"}
    documented = set(re.findall(r"\bwarden_[a-z_]+[a-z]\b", DOC)) - roles
    unknown = {name for name in documented if name not in exposed}
    assert unknown == set()
    assert len(documented) >= 15


def test_the_alert_rules_parse_and_use_documented_series():
    rules = yaml.safe_load(block("yaml"))["groups"][0]["rules"]
    assert len(rules) >= 6
    for rule in rules:
        assert rule["alert"].startswith("Warden") and re.search(r"\bwarden_[a-z_]+", rule["expr"])


def test_the_prodlike_steps_shown_are_the_runners():
    runner = (DEPLOY / "prodlike" / "run.py").read_text()
    steps = [re.compile(re.sub(r"\\\{[^}]+\\\}", ".+", re.escape(text)) + "$")
             for text in re.findall(r'self\.step\(f?"(.+?)"\)', runner)]
    shown = re.findall(r"✓ (.+?)  \(", block("text", 1))
    assert len(shown) >= 12
    for step in shown:
        assert any(pattern.match(step) for pattern in steps), step
