"""The request body shown in docs/console.md is one the playground accepts."""

import json
import re
from pathlib import Path

from tests.console.test_playground import URL, prod  # noqa: F401 - fixture

DOC = Path(__file__).resolve().parents[2] / "docs" / "console.md"


def test_documented_playground_request_is_decided(prod, auditor_client):  # noqa: F811
    body = json.loads(re.search(r"```json\n(.*?)\n```", DOC.read_text(), re.S).group(1))
    response = auditor_client.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["decision"]["effect"] == "deny"
