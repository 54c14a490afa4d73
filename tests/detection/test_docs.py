"""docs/detection.md stays true: its Python examples run as written."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "detection.md"


def test_the_python_examples_of_the_detection_page_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert blocks, "the page shows how a receiver verifies the webhook signature"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})


def test_the_settings_table_lists_exactly_the_settings_detection_reads():
    source = "".join(p.read_text() for p in (DOC.parents[1] / "controlplane" / "detection").rglob("*.py"))
    read = set(re.findall(r'"(WARDEN_DETECTION_[A-Z_]+)"', source))
    documented = set(re.findall(r"^\| `(WARDEN_DETECTION_[A-Z_]+)` \|", DOC.read_text(), re.MULTILINE))
    assert read == documented
