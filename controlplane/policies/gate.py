"""The publish gate for organisation modules: what a module may declare and call.

Organisation policy adds to the library, never weakens it: a module lives in its own
package under `warden.org.` (the library collects `deny`, `approval_required` and `mask`
from there, see rego/warden/decision.rego), so it cannot add an `allow`, redefine a
library rule or make a library test pass. It may not call builtins that do I/O or read
the environment (a real OPA sidecar would make those calls), even in a branch that is
never reached. Modules that real OPA would refuse (two `default` values for one rule,
cycles through the decision) are refused here, with file, line and column, before any
bundle is built.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agents_sdk.engine import RegoCompileError
from agents_sdk.engine.outline import Located, ModuleOutline, outline
from controlplane.core.exceptions import InvalidInput

ORG_PACKAGE = re.compile(r"^warden\.org\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
# Organisation tests read the decision, so they live outside warden.org (which the library
# collects from): a test there would make the decision depend on itself.
ORG_TEST_PACKAGE = re.compile(r"^warden\.org_test\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

# Builtins, as OPA's capabilities files list them (capabilities/README.md): opa.json is
# OPA's own (every builtin it knows), warden.json what organisation policy may call (OPA's
# minus I/O, the environment and randomness: http.send, net.*, opa.runtime, print, trace,
# rand.*, uuid.*, providers.*, rego.parse_module), usable as `opa build --capabilities`.
CAPABILITIES_DIR = Path(__file__).with_name("capabilities")


def _builtin_names(file_name: str) -> frozenset[str]:
    return frozenset(b["name"] for b in json.loads((CAPABILITIES_DIR / file_name).read_text("utf-8"))["builtins"])


OPA_BUILTINS = _builtin_names("opa.json")
ALLOWED_BUILTINS = _builtin_names("warden.json")
REFUSED_BUILTINS = OPA_BUILTINS - ALLOWED_BUILTINS
# A namespace none of whose builtins is allowed is refused whole ("net."), so a builtin a
# later OPA adds there is refused too.
REFUSED_NAMESPACES = tuple(sorted({
    name.rsplit(".", 1)[0] + "." for name in REFUSED_BUILTINS
    if "." in name and not any(a.startswith(name.rsplit(".", 1)[0] + ".") for a in ALLOWED_BUILTINS)
}))


def refused_builtin(name: str) -> bool:
    """True for a builtin that capabilities/warden.json leaves out."""
    return name in REFUSED_BUILTINS or name.startswith(REFUSED_NAMESPACES)

# Library rules an organisation module may not refer to: they depend on organisation
# policy, so a reference is a cycle (real OPA refuses it), or they are the allow itself.
LIBRARY_AGGREGATES = frozenset({
    "deny", "approval_required", "mask", "decision", "effect", "reasons", "pending_approval", "allowed",
    "approval_granted", "org_policies", "default_deny", "enforced_decision", "log_only_policies", "log_only_deny",
    "log_only_approval_required", "log_only_effect", "log_only_decision",
})


def _refused(at: Located, path: str, message: str) -> dict:
    return {"file": path, "line": at.line, "column": at.column, "message": message}


def _raise(problems: list[dict]) -> None:
    first = problems[0]
    raise InvalidInput(
        f"{first['file']}:{first['line']}:{first['column']}: {first['message']}", field="source", details=problems
    )


def check_organisation_module(bundle_path: str, source: str) -> ModuleOutline:
    """Refuse a module that is not organisation policy as the gate defines it; return its
    outline. Raises InvalidInput (field "source") with file, line and column."""
    try:
        found = outline(bundle_path, source)
    except RegoCompileError as exc:
        _raise([{"file": e.file, "line": e.line, "column": e.column, "message": e.message} for e in exc.errors])
    problems: list[dict] = []
    is_test = bundle_path.endswith("_test.rego")
    if not (ORG_TEST_PACKAGE if is_test else ORG_PACKAGE).match(found.package):
        expected = "warden.org_test.<name> (tests)" if is_test else "warden.org.<name>"
        problems.append(_refused(
            Located(found.package, 1, 1), bundle_path,
            f"package {found.package} is not allowed: this organisation module lives in package {expected} "
            "(warden and warden_test are the library's, warden_registry and system are reserved)",
        ))
    for call in found.calls:
        if refused_builtin(call.name):
            problems.append(_refused(call, bundle_path, f"{call.name} is not allowed in policy: it does I/O, reads the environment or is not deterministic (not in controlplane/policies/capabilities/warden.json)"))
        elif call.name == "<dynamic>":
            problems.append(_refused(call, bundle_path, "a function called through a computed reference cannot be checked"))
    for ref in found.data_refs + [i for i in found.imports if i.name.startswith("data")]:
        parts = ref.name.split(".")
        if ref.name in ("data", "data.warden") or parts[:2] == ["data", "<dynamic>"]:
            problems.append(_refused(ref, bundle_path, f"{ref.name} is too wide a reference: name the document you read"))
        elif not is_test and parts[:2] == ["data", "warden"] and (parts[2] in LIBRARY_AGGREGATES or parts[2] == "<dynamic>"):
            problems.append(_refused(ref, bundle_path, f"{ref.name} depends on organisation policy or is the library's allow: organisation rules may not read it"))
        elif parts[:2] == ["data", "system"]:
            problems.append(_refused(ref, bundle_path, "data.system is OPA's own and reserved"))
    problems.extend(duplicate_defaults({bundle_path: found}))
    if problems:
        _raise(problems)
    return found


def duplicate_defaults(outlines: dict[str, ModuleOutline]) -> list[dict]:
    """Rules with more than one `default` across modules of one package (OPA: rego_type_error)."""
    seen: dict[tuple[str, str], tuple[str, Located]] = {}
    problems = []
    for path in sorted(outlines):
        for default in outlines[path].defaults:
            key = (outlines[path].package, default.name)
            if key in seen:
                first_path, first = seen[key]
                problems.append(_refused(default, path, f"multiple default rules data.{key[0]}.{key[1]} (the first at {first_path}:{first.line}); real OPA refuses the bundle"))
            else:
                seen[key] = (path, default)
    return problems


def check_organisation_policy(modules: dict[str, str]) -> None:
    """Checks across all organisation modules together (after each passed on its own)."""
    problems = duplicate_defaults({path: outline(path, source) for path, source in modules.items()})
    if problems:
        _raise(problems)
