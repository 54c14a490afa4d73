"""AuthZEN 1.0 served by the control plane for one environment.

The environment's active bundle decides, through the mapping `warden sidecar` uses
(agents_sdk.sidecar.authzen), with the same input checks and fail-closed results; each
decision is stored as a decision log of that environment exactly as an OPA upload would be
(controlplane.opa.services.ingest_decision_logs). A sidecar answers without the extra hop;
this serves PEPs that can only reach the control plane.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from agents_sdk.guard.decision import fail_closed_result
from agents_sdk.guard.inputs import input_problem
from agents_sdk.sidecar import authzen
from controlplane.bundles import archive
from controlplane.bundles.models import Bundle, Environment
from controlplane.opa.services import ingest_decision_logs
from controlplane.policies.services import compile_modules

INSTANCE_LABEL = "warden-controlplane-authzen"

_compiled: dict[str, Any] = {}  # bundle id -> CompiledPolicy (one per active bundle, kept small)
_compiled_lock = threading.Lock()


def _policy_of(bundle: Bundle) -> Any:
    key = f"{bundle.pk}:{bundle.revision}"
    with _compiled_lock:
        policy = _compiled.get(key)
    if policy is None:
        files = archive.read_tar_gz(bytes(bundle.archive))
        modules = {name: content.decode("utf-8") for name, content in files.items() if name.endswith(".rego")}
        data = json.loads(files.get("data.json", b"{}") or b"{}")
        policy = compile_modules(modules, data)
        with _compiled_lock:
            if len(_compiled) > 16:
                _compiled.clear()
            _compiled[key] = policy
    return policy


class EnvironmentPDP:
    """What agents_sdk.sidecar.authzen needs of a decider, over one environment's active bundle."""

    def __init__(self, environment: Environment, base_url: str) -> None:
        self.environment = environment
        self.url = base_url
        self.bundle = environment.active_bundle
        self.policy = _policy_of(self.bundle) if self.bundle is not None else None
        self.backend = self
        self.events: list[dict[str, Any]] = []

    @property
    def revision(self) -> str | None:
        return self.bundle.revision if self.bundle is not None else None

    def evaluate(self, query: str, input: Any = None) -> Any:
        if self.policy is None:
            raise LookupError("no active bundle")
        return self.policy.evaluate(query, input)

    def _data(self, method: str, path: str, params: dict[str, list[str]], body: bytes,
              requested_by: str) -> tuple[int, Any]:
        # Called by authzen.handle with {"input": …} for data.warden.decision, and only that.
        decision_id = str(uuid.uuid4())
        value = json.loads(body)["input"]
        problem = input_problem(value, root="/input")
        if problem is not None:
            result = fail_closed_result("malformed-input", problem)
        elif self.policy is None:
            result = fail_closed_result("stale-bundle", f"Every action is denied: environment "
                                        f"{self.environment.name} has no active bundle")
        else:
            try:
                result = self.policy.decide(value)
            except Exception as exc:  # noqa: BLE001 - any engine failure is a deny that says so
                result = fail_closed_result("engine-error", f"Policy evaluation failed: {type(exc).__name__}: {exc}")
        if not isinstance(result, dict):
            result = fail_closed_result("engine-error", "The policy gave no decision")
        result = json.loads(json.dumps(result, default=sorted))  # sets as arrays, as the sidecar answers
        event: dict[str, Any] = {"labels": {"id": INSTANCE_LABEL, "version": "controlplane"},
                                 "decision_id": decision_id, "path": "warden/decision", "result": result,
                                 "requested_by": requested_by,
                                 "timestamp": _now()}
        if problem is None:
            event["input"] = value
        if self.revision:
            event["bundles"] = {self.environment.name: {"revision": self.revision}}
        self.events.append(event)
        return 200, {"decision_id": decision_id, "result": result}


def _now() -> str:
    from django.utils import timezone

    return timezone.now().isoformat().replace("+00:00", "Z")


def answer(environment: Environment, method: str, path: str, body: bytes, *, base_url: str,
           requested_by: str) -> tuple[int, Any]:
    """The AuthZEN answer for ``path`` (``/access/v1/...`` or the well-known document) in
    ``environment``; the decisions made are stored as that environment's decision logs."""
    pdp = EnvironmentPDP(environment, base_url)
    reply = authzen.handle(pdp, method, path, body, requested_by)
    if pdp.events:
        ingest_decision_logs(environment, pdp.events)
    if reply is None:
        return 404, {"code": "resource_not_found", "message": f"{path} is not an AuthZEN endpoint"}
    return reply
