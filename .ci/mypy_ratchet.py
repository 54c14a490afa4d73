"""Type-check the control plane with a ratchet: no file may gain mypy errors.

    python .ci/mypy_ratchet.py            # fail if any file has more errors than its baseline
    python .ci/mypy_ratchet.py --update   # record today's counts (only ever lower them)

The control plane is not yet annotated enough for ``--strict`` (and Django needs stubs for
that), so it is checked in mypy's default mode against a per-file baseline of error counts
(.ci/mypy-controlplane-baseline.json). A file not in the baseline, a new file for example,
must have none. When a file improves, the run says so; ``--update`` then lowers its count.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-controlplane-baseline.json"
COMMAND = [
    # --config-file "": pyproject's [tool.mypy] is the SDK's strict setup, not this one.
    sys.executable, "-m", "mypy", "--config-file", "", "--python-version", "3.11", "--ignore-missing-imports",
    "--exclude", "/migrations/", "controlplane",
]
ERROR = re.compile(r"^(controlplane/[^:]+\.py):\d+: error: ")


def counts() -> Counter[str]:
    done = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or (done.returncode == 1 and not ERROR.search(done.stdout.split("\n", 1)[0])):
        sys.exit(f"mypy did not run: {(done.stderr or done.stdout)[:2000]}")
    found: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            found[match.group(1)] += 1
    return found


def main(argv: list[str]) -> int:
    found = counts()
    if "--update" in argv:
        BASELINE.write_text(json.dumps(dict(sorted(found.items())), indent=1) + "\n", encoding="utf-8")
        print(f"mypy ratchet: baseline recorded, {sum(found.values())} errors in {len(found)} files")
        return 0
    baseline: dict[str, int] = json.loads(BASELINE.read_text("utf-8")) if BASELINE.exists() else {}
    worse = {path: (baseline.get(path, 0), n) for path, n in found.items() if n > baseline.get(path, 0)}
    better = {path: (n, found.get(path, 0)) for path, n in baseline.items() if found.get(path, 0) < n}
    for path, (was, now) in sorted(worse.items()):
        print(f"{path}: {now} mypy errors, baseline {was}; run `mypy controlplane` and fix the new ones")
    if better:
        print(f"mypy ratchet: {len(better)} file(s) improved; run `python .ci/mypy_ratchet.py --update` to keep it")
    print(f"mypy ratchet: {sum(found.values())} errors (baseline {sum(baseline.values())})")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
