"""deploy/opa/*.yaml, the files deploy/ runs a real OPA and `warden sidecar` with: valid by
OPA's configuration rules (opa_config.py), accepted by `warden sidecar`, and working against
the control plane: each request they configure, made as OPA makes it (sidecar.py), is
answered, and the bundle verifies with the key and keyid they configure."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from pathlib import Path

import pytest
import yaml

from agents_sdk.sidecar.config import load_config
from controlplane.opa.models import DecisionLog
from tests.opa.opa_client import verify_bundle
from tests.opa.opa_config import check, substitute
from tests.opa.sidecar import EmulatedOPA, asgi_client, run

OPA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "opa"
SHIPPED = ("config.yaml", "config.token-path.yaml", "discovery.yaml")
PLACEHOLDER = re.compile(
    r"( +)-----BEGIN PUBLIC KEY-----\n\s*REPLACE-WITH-WARDEN-BUNDLE-SIGNING-PUBLIC-KEY\n\s*-----END PUBLIC KEY-----\n"
)


def materialise(name: str, tmp_path: Path, *, kid: str, pem: str, token: str, environment: str = "dev") -> Path:
    """The file as an operator fills it in: the key's PEM pasted, the token file mounted,
    the environment set (OPA substitutes ${VAR} itself; here it is done ahead)."""
    text = (OPA_DIR / name).read_text()
    text = PLACEHOLDER.sub(lambda m: "".join(m.group(1) + line + "\n" for line in pem.strip().splitlines()), text)
    token_file = tmp_path / "opa-token"
    token_file.write_text(token + "\n")
    text = text.replace("/var/run/secrets/warden/opa-token", str(token_file))
    text = text.replace("/var/lib/opa", str(tmp_path / "opa"))
    text = substitute(text, {"WARDEN_URL": "http://testserver", "WARDEN_ENVIRONMENT": environment,
                             "WARDEN_BUNDLE_KEY_ID": kid, "WARDEN_OPA_TOKEN": token})
    path = tmp_path / name
    path.write_text(text)
    return path


def _token(service: dict) -> str:
    bearer = service["credentials"]["bearer"]
    return bearer.get("token") or Path(bearer["token_path"]).read_text().strip()


def _path(service: dict, resource: str) -> str:
    # OPA joins the service URL and the resource with one slash.
    return (service["url"].rstrip("/") + "/" + resource.lstrip("/")).removeprefix("http://testserver")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_files_lack_only_the_operators_key(name):
    config = yaml.safe_load(substitute((OPA_DIR / name).read_text(), {
        "WARDEN_URL": "https://warden.example.com", "WARDEN_ENVIRONMENT": "prod",
        "WARDEN_BUNDLE_KEY_ID": "warden-0123", "WARDEN_OPA_TOKEN": "wdn_x"}))
    assert check(config) == ["keys.warden-0123.key: not a PEM public key"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda c: c.update(decision_log=c.pop("decision_logs")), "config.decision_log: unknown field"),
    (lambda c: c["bundles"]["dev"]["polling"].update(min_delay_seconds=30, max_delay_seconds=10),
     "bundles.dev: max polling delay must be >= min polling delay"),
    (lambda c: c["bundles"]["dev"]["polling"].update(long_polling_timeout_seconds=0),
     "bundles.dev: long polling timeout must be set to a value greater than zero"),
    (lambda c: c["bundles"]["dev"]["signing"].update(keyid="another"), "bundles.dev.signing: keyid 'another' not found in keys"),
    (lambda c: c["decision_logs"].update(service="opa-cloud"), "decision_logs.service: invalid service name 'opa-cloud'"),
    (lambda c: c["services"]["warden"]["credentials"]["bearer"].update(token="t"),
     'services.warden: invalid config: specify a value for either the "token" or "token_path" field'),
])
def test_the_rules_refuse_what_opa_refuses(tmp_path, change, problem):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    config = yaml.safe_load(materialise("config.token-path.yaml", tmp_path, kid="k1", pem=pem, token="wdn_x").read_text())
    assert check(config) == []
    change(config)
    assert problem in check(config)


def test_the_deploy_configs_pull_verify_log_and_report(tmp_path, dev, dev_token, signing_key):
    """Both bundle configurations, then discovery, against one environment (building its
    bundle is the slow part)."""
    for name in ("config.yaml", "config.token-path.yaml"):
        (tmp_path / name).mkdir()
        _pull_verify_log_and_report(tmp_path / name, name, dev, dev_token, signing_key)
    (tmp_path / "discovery").mkdir()
    _discover_a_valid_config_and_a_verifiable_bundle(tmp_path / "discovery", dev, dev_token, signing_key)


def _pull_verify_log_and_report(tmp_path, name, dev, dev_token, signing_key):
    path = materialise(name, tmp_path, kid=signing_key.kid, pem=signing_key.public_key_pem, token=dev_token)
    config = yaml.safe_load(path.read_text())
    assert check(config) == []
    sidecar = load_config(path)  # and `warden sidecar --config` takes the same file
    assert sidecar.bundle.name == "dev" and sidecar.bundle.long_polling_timeout == 30

    (bundle_name, bundle), = config["bundles"].items()
    service = config["services"][bundle["service"]]
    key = config["keys"][bundle["signing"]["keyid"]]

    async def scenario():
        async with asgi_client() as client:
            opa = EmulatedOPA(client, token=_token(service), resource="")
            download = await client.get(_path(service, bundle["resource"]), headers=opa.headers())
            decision = {"labels": {"id": str(uuid.uuid4()), "version": "1.20.0", **config["labels"]},
                        "decision_id": str(uuid.uuid4()), "path": "warden/decision",
                        "bundles": {bundle_name: {"revision": dev.active_bundle.revision}},
                        "input": {"agent": {"id": "billing-bot"}}, "result": {"allow": True},
                        "timestamp": "2026-11-30T05:00:00.000000001Z"}
            logs_service = config["services"][config["decision_logs"]["service"]]
            logs = await opa.post(_path(logs_service, config["decision_logs"].get("resource", "/logs")),
                                  gzip.compress(json.dumps([decision]).encode()), gzipped=True)
            status_service = config["services"][config["status"]["service"]]
            status = await opa.post(_path(status_service, "/status"), json.dumps({
                "labels": decision["labels"],
                "bundles": {bundle_name: {"name": bundle_name, "active_revision": dev.active_bundle.revision}},
            }).encode())
            return download, logs, status, decision

    download, logs, status, decision = run(scenario())
    assert download.status_code == 200, download.text
    verified = verify_bundle(download.content, public_key_pem=key["key"], keyid=bundle["signing"]["keyid"])
    assert verified.manifest["revision"] == dev.active_bundle.revision
    assert logs.is_success and status.is_success, (logs.text, status.text)
    assert DecisionLog.objects.filter(environment=dev, decision_id=decision["decision_id"]).exists()
    instance = dev.opa_instances.get(instance_id=decision["labels"]["id"])
    assert instance.active_revision == dev.active_bundle.revision
    assert instance.labels["app"] == ("my-agent-service" if name == "config.yaml" else "example-agent")


def _discover_a_valid_config_and_a_verifiable_bundle(tmp_path, dev, dev_token, signing_key):
    boot = yaml.safe_load(materialise("discovery.yaml", tmp_path, kid=signing_key.kid,
                                      pem=signing_key.public_key_pem, token=dev_token).read_text())
    assert check(boot) == []
    discovery = boot["discovery"]
    service = boot["services"][discovery["service"]]

    async def fetch(resource):
        async with asgi_client() as client:
            return await EmulatedOPA(client, token=_token(service), resource="").client.get(
                _path(service, resource), headers=EmulatedOPA(client, token=_token(service), resource="").headers())

    answer = run(fetch(discovery["resource"]))
    assert answer.status_code == 200
    discovered = verify_bundle(answer.content, public_key_pem=boot["keys"][discovery["signing"]["keyid"]]["key"],
                               keyid=discovery["signing"]["keyid"]).data[discovery["decision"]]
    # What OPA runs with: the boot config's services, keys and labels, and the discovered rest.
    effective = {**{k: v for k, v in boot.items() if k != "discovery"}, **discovered}
    assert check(effective) == []
    (bundle_name, bundle), = effective["bundles"].items()
    download = run(fetch(bundle.get("resource", f"bundles/{bundle_name}")))
    keyid = bundle["signing"]["keyid"]
    verified = verify_bundle(download.content, public_key_pem=boot["keys"][keyid]["key"], keyid=keyid)
    assert verified.manifest["revision"] == dev.active_bundle.revision
