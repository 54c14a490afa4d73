"""Log-only rollout of a whole revision: publish the current policies so that every
organisation rule the revision adds is evaluated and logged but not enforced.

Only the bundle's copy of each new module gets the log-only line; the stored modules stay as
written, so enforcing the rollout is an ordinary publish of the same policies (it can use the
same impact preview). A revision that changes or removes an enforced module cannot go out
log-only: its enforced decisions would change with it (per-rule log-only covers that case).
"""

from __future__ import annotations

import re

from django.db import transaction

from controlplane.bundles.models import Bundle, Environment
from controlplane.bundles.services import (
    activate_bundle,
    build_bundle,
    check_policy_tests,
    current_policy_files,
    policy_files_of,
)
from controlplane.changelog.models import ChangeAction
from controlplane.core.exceptions import ConflictError

ROLLOUT_COMMENT = "# Log-only rollout of this revision: evaluated and logged, not enforced."
_MARK = f"\n{ROLLOUT_COMMENT}\nlog_only := true\n"
_IMPORT = re.compile(r"^import rego\.v1[ \t]*\n", re.MULTILINE)


def _is_org_policy(path: str) -> bool:
    return path.startswith("org/") and not path.endswith("_test.rego")


def rollout_files(environment: Environment) -> tuple[dict[str, str], list[str]]:
    """The policy files of a log-only rollout to `environment`, and the modules made log-only.
    Raises ConflictError naming the modules that block it."""
    candidate = current_policy_files()
    active_bundle = Environment.objects.select_related("active_bundle").get(pk=environment.pk).active_bundle
    active = policy_files_of(active_bundle) if active_bundle else {}
    still_log_only = {p for p, source in active.items() if ROLLOUT_COMMENT in source}  # an earlier rollout's
    active = {p: source.replace(_MARK, "", 1) for p, source in active.items()}
    enforced = {p: source for p, source in active.items() if _is_org_policy(p) and p not in still_log_only}
    changed = sorted(p for p in candidate if p in enforced and enforced[p] != candidate[p])
    removed = sorted(p for p in enforced if p not in candidate)
    if changed or removed:
        raise ConflictError(
            "a log-only rollout may only add rules, and this revision changes or removes enforced ones ("
            + ", ".join(changed + removed) + "): publish it enforced, or put those modules in log-only mode one by one",
            field="log_only",
        )
    added = sorted(p for p in candidate if _is_org_policy(p) and (p not in active or p in still_log_only))
    if not added:
        raise ConflictError("this revision adds no organisation rule to roll out log-only", field="log_only")
    # A module of an earlier rollout stays log-only until a publish without log_only enforces it.
    files = dict(candidate)
    for path in added:
        found = _IMPORT.search(files[path])
        if found is None:
            raise ConflictError(f"{path} has no `import rego.v1` line to put the log-only line after", field="log_only")
        source = files[path]
        files[path] = source[: found.end()] + _MARK + source[found.end():]
    return files, added


def rollout_modules(bundle: Bundle) -> list[str]:
    """The modules `bundle` carries as a log-only rollout (none: everything is enforced)."""
    return sorted(path for path, source in policy_files_of(bundle).items() if ROLLOUT_COMMENT in source)


@transaction.atomic
def publish_log_only(environment: Environment, *, by, message: str) -> Bundle:
    """Test, build and activate the current policies with every new organisation rule log-only.

    No four-eyes hold: the enforced decisions are the active revision's (nothing changed or
    removed), only what is logged beside them is new."""
    passed = check_policy_tests()
    files, added = rollout_files(environment)
    reason = f"{message} [log-only rollout: {', '.join(added)}]"[:500]
    bundle = build_bundle(environment, policy_files=files, by=by, reason=reason, tests_passed=passed)
    return activate_bundle(environment, bundle, by=by, action=str(ChangeAction.ACTIVATE), reason=reason)
