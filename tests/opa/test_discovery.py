"""Discovery: a signed bundle whose data.config is the OPA configuration of the environment."""

import pytest

from controlplane.bundles import services as bundle_services
from tests.opa.opa_client import verify_bundle
from tests.opa.sidecar import EmulatedOPA, asgi_client, run



async def _discover(token, environment, *, times=1, wait=None):
    async with asgi_client() as client:
        opa = EmulatedOPA(client, token=token, resource=f"discovery/{environment}")
        return [await opa.download(wait=wait) for _ in range(times)]


def test_discovery_bundle_is_signed_and_carries_the_opa_config(dev, dev_token, signing_key):
    first, second = run(_discover(dev_token, "dev", times=2))
    assert first.status_code == 200 and "Content-Encoding" not in first.headers
    assert second.status_code == 304  # same configuration, same ETag

    verified = verify_bundle(first.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    # OPA evaluates data.<decision> with the boot config's `decision: config`.
    config = verified.data["config"]
    assert config["bundles"] == {
        "dev": {
            "service": "warden",
            "resource": "bundles/dev",
            "persist": True,
            "polling": {"min_delay_seconds": 10, "max_delay_seconds": 20, "long_polling_timeout_seconds": 30},
            "signing": {"keyid": signing_key.kid},
        }
    }
    assert config["decision_logs"]["service"] == "warden"
    assert config["status"] == {"service": "warden"}
    assert "discovery" not in config and "services" not in config and "keys" not in config


def test_discovery_follows_the_decision_logging_switch(dev, dev_token, admin, signing_key):
    (before,) = run(_discover(dev_token, "dev"))
    bundle_services.update_environment(dev, by=admin, decision_logging=False)
    (after,) = run(_discover(dev_token, "dev"))
    assert after.headers["ETag"] != before.headers["ETag"]
    config = verify_bundle(after.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid).data
    assert "decision_logs" not in config["config"]


def test_discovery_long_poll_without_change_is_304(dev, dev_token):
    async def scenario():
        async with asgi_client() as client:
            opa = EmulatedOPA(client, token=dev_token, resource="discovery/dev")
            await opa.download()
            return await opa.download(wait=1)

    assert run(scenario()).status_code == 304


def test_discovery_of_another_environment_is_forbidden(dev, staging, staging_token):
    (response,) = run(_discover(staging_token, "dev"))
    assert response.status_code == 403
