"""Writes for authored rules: generate, test, save as organisation modules; log-only and enforce.

A rule's module is saved at org/authoring/<name>.rego and its example tests beside it, as
revisions of ordinary organisation modules (the gate, the relaxation replay and the change
log apply as to any module). Log-only is one line of the module (`log_only := true`), so
enforcing is a new revision without it, also for a module an engineer has edited.
"""

from __future__ import annotations

import re

from django.db import transaction

from controlplane.authoring.examples import example_tests, validate_examples
from controlplane.authoring.models import AuthoredRule
from controlplane.authoring.templates import module_kind, module_source, sentence, validate
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.policies.models import PolicyModule
from controlplane.policies.services import ENGINE, compile_modules, save_policy_module

LOG_ONLY_LINE = "log_only := true"
_LOG_ONLY = re.compile(r"^log_only := true[ \t]*\n", re.MULTILINE)
_IMPORT = re.compile(r"^import rego\.v1[ \t]*\n", re.MULTILINE)


def module_path(name: str) -> str:
    return f"authoring/{name}.rego"


def draft(*, template: str, params: dict, examples: list) -> dict:
    """The module, its tests, the sentence and the test results, without saving anything."""
    params = validate(template, params)
    examples = validate_examples(examples)
    source = module_source(template, params)
    tests = example_tests(params, examples, module_kind(template, params))
    name = params["name"]
    files = {f"org/{module_path(name)}": source, f"org/authoring/{name}_test.rego": tests}
    compile_modules(files)  # a 400 naming file, line and column (never expected)
    report = ENGINE.run_tests(files)
    return {
        "sentence": sentence(template, params),
        "module": source,
        "tests": tests,
        "test_results": [{"test": r.path, "passed": r.passed, "message": r.message} for r in report.results],
    }


def _refuse_failing_examples(result: dict) -> None:
    failed = [r for r in result["test_results"] if not r["passed"]]
    if failed:
        raise InvalidInput(
            f"{len(failed)} example(s) do not hold for this rule: " + ", ".join(r["test"].rsplit(".", 1)[-1] for r in failed),
            field="examples", details=failed,
        )


@transaction.atomic
def save_authored_rule(*, template: str, params: dict, examples: list, by, message: str = "") -> AuthoredRule:
    """Create or update the rule; its examples must hold (each one is a Rego test)."""
    result = draft(template=template, params=params, examples=examples)
    _refuse_failing_examples(result)
    name = params["name"]
    rule = AuthoredRule.objects.select_for_update().filter(name=name).first()
    if rule is not None and rule.template != template:
        raise ConflictError(f"rule {name!r} was made from the {rule.template} template", field="template")
    text = message or f"{'updated' if rule else 'authored'} from template {template}: {result['sentence']}"
    module = _save_if_changed(module_path(name), result["module"], text, by)
    tests = _save_if_changed(f"authoring/{name}_test.rego", result["tests"], text, by)
    if rule is None:
        rule = AuthoredRule(name=name, template=template, created_by=by if getattr(by, "pk", None) else None)
    rule.params, rule.examples, rule.sentence = params, examples, result["sentence"]
    rule.log_only = bool(params.get("log_only"))
    rule.module, rule.test_module = module, tests
    rule.save()
    return rule


def _save_if_changed(path: str, source: str, message: str, by) -> PolicyModule:
    module = PolicyModule.objects.filter(path=path).select_related("current_revision").first()
    if module and not module.is_deleted and module.current_revision and module.current_revision.source == source:
        return module
    return save_policy_module(path=path, source=source, message=message, by=by).module


def is_log_only(source: str) -> bool:
    return bool(_LOG_ONLY.search(source))


@transaction.atomic
def set_log_only(module: PolicyModule, *, log_only: bool, by, message: str = "") -> PolicyModule:
    """Put an organisation module in log-only mode or enforce it: one revision that adds or
    removes the `log_only := true` line (works for hand-edited modules too)."""
    module = PolicyModule.objects.select_for_update(of=("self",)).select_related("current_revision").get(pk=module.pk)
    if module.is_deleted or module.current_revision is None or module.is_test:
        raise ConflictError("only a current, non-test organisation module can be log-only or enforced")
    source = module.current_revision.source
    if is_log_only(source) == log_only:
        raise ConflictError(f"{module.path} is already {'log-only' if log_only else 'enforced'}")
    if log_only:
        found = _IMPORT.search(source)
        if found is None:
            raise InvalidInput("the module has no `import rego.v1` line to put the log-only line after", field="source")
        new = source[: found.end()] + f"\n# Log-only: evaluated and logged with every decision, not enforced.\n{LOG_ONLY_LINE}\n" + source[found.end():]
    else:
        new = _LOG_ONLY.sub("", source).replace("# Log-only: evaluated and logged with every decision, not enforced.\n", "")
    default = "log-only: evaluated and logged, not enforced" if log_only else "enforced (was log-only)"
    save_policy_module(path=module.path, source=new, message=message or default, by=by)
    for rule in AuthoredRule.objects.select_for_update().filter(module=module):
        rule.log_only, rule.params = log_only, {**rule.params, "log_only": log_only}
        rule.save(update_fields=["log_only", "params", "updated_at"])
    return module


def edited_as_rego(rule: AuthoredRule) -> bool:
    """Whether the module's current text is no longer what the template generates."""
    if rule.module is None or rule.module.current_revision is None:
        return False
    expected = module_source(rule.template, {**rule.params, "log_only": is_log_only(rule.module.current_revision.source)})
    return rule.module.current_revision.source != expected
