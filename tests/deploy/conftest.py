"""deploy/ is checked offline: no cluster and no container engine run here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(DEPLOY / "k8s" / "overlays" / overlay) for overlay in OVERLAYS}
