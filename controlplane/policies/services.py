"""Writes on organisation policies and the tool catalog.

Saving a module compiles it together with the library and every other module, so
a syntax or type error is refused at the door with file, line and column.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import threading
from collections import OrderedDict

from django.core.exceptions import ValidationError
from django.db import transaction

from agents_sdk.engine import CompiledPolicy, RegoCompileError, RegoEngine, TestReport
from agents_sdk.engine.worker import compile_in_worker
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.policies.gate import check_organisation_module, check_organisation_policy
from controlplane.policies.library import library_modules
from controlplane.policies.models import PolicyModule, PolicyRevision, Tool
from controlplane.policies.replay import recent_decision_inputs, relaxations

MAX_MODULE_BYTES = 256 * 1024

ENGINE = RegoEngine()
# Test reports per module set (tests are pure functions of the modules): repeated runs on
# unchanged policies answer at once instead of re-running every test (seconds of CPU).
_TEST_REPORTS: OrderedDict[str, TestReport] = OrderedDict()
_TEST_REPORTS_KEPT = 16
_test_reports_lock = threading.Lock()
# Digests of module sets the limited worker compiled (insertion-ordered, oldest dropped first).
_compiled_in_worker: dict[str, None] = {}


def organisation_modules(*, replace: dict[str, str | None] | None = None) -> dict[str, str]:
    """{bundle path: source} of the current organisation modules, with `replace` applied
    (a path mapped to None is left out)."""
    modules = {
        module.bundle_path: module.current_revision.source
        for module in PolicyModule.objects.filter(is_deleted=False).select_related("current_revision")
        if module.current_revision is not None
    }
    for path, source in (replace or {}).items():
        if source is None:
            modules.pop(path, None)
        else:
            modules[path] = source
    return modules


def compile_modules(modules: dict[str, str], data: dict | None = None) -> CompiledPolicy:
    """Compile modules with the engine; a Rego error becomes a 400 naming file, line and column."""
    try:
        return ENGINE.compile(modules, data)
    except RegoCompileError as exc:
        first = exc.errors[0]
        raise InvalidInput(
            f"{first.file}:{first.line}:{first.column}: {first.message}",
            field="source",
            details=[
                {"file": e.file, "line": e.line, "column": e.column, "message": e.message} for e in exc.errors
            ],
        ) from exc


def run_policy_tests(modules: dict[str, str], data: dict | None = None) -> TestReport:
    """Run the test_ rules of every *_test.rego among `modules`; a module set already tested
    in this process (without data) gets its earlier report."""
    key = None if data is not None else _modules_digest(modules)
    if key is not None:
        with _test_reports_lock:
            cached = _TEST_REPORTS.get(key)
            if cached is not None:
                _TEST_REPORTS.move_to_end(key)
                return TestReport(results=list(cached.results))
    try:
        report = ENGINE.run_tests(modules, data)
    except RegoCompileError:
        compile_modules(modules, data)  # raises the 400 with file, line, column
        raise
    if key is not None:
        with _test_reports_lock:
            _TEST_REPORTS[key] = report
            while len(_TEST_REPORTS) > _TEST_REPORTS_KEPT:
                _TEST_REPORTS.popitem(last=False)
        return TestReport(results=list(report.results))
    return report


def _modules_digest(modules: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(modules, sort_keys=True).encode("utf-8", "surrogatepass")).hexdigest()


def _check_source(bundle_path: str, source: str) -> str:
    """The gate (controlplane.policies.gate) on the module alone; returns its package."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_MODULE_BYTES:  # the gate refuses surrogates
        raise InvalidInput(f"a module is at most {MAX_MODULE_BYTES // 1024} KiB", field="source")
    return check_organisation_module(bundle_path, source).package


def check_policy_in_worker(modules: dict[str, str]) -> None:
    """Compile library and organisation modules in a worker process with CPU-time and
    memory limits (a slow module is refused, the web process stays responsive).

    Callers pass the library without its tests: they cannot clash with organisation
    packages, cost seconds of CPU to check, and every publish runs them anyway."""
    check_organisation_policy({path: source for path, source in modules.items() if path.startswith("org/")})
    digest = _modules_digest(modules)
    if digest in _compiled_in_worker:
        return  # the same modules compiled within the limits before: the answer cannot differ
    try:
        compile_in_worker(modules)
    except RegoCompileError as exc:
        first = exc.errors[0]
        raise InvalidInput(
            f"{first.file}:{first.line}:{first.column}: {first.message}",
            field="source",
            details=[{"file": e.file, "line": e.line, "column": e.column, "message": e.message} for e in exc.errors],
        ) from exc
    _compiled_in_worker[digest] = None
    while len(_compiled_in_worker) > 256:
        _compiled_in_worker.pop(next(iter(_compiled_in_worker)))


def _relaxations(before: dict[str, str], after: dict[str, str], removed: list[str]) -> list[dict]:
    library = library_modules(include_tests=False)
    return relaxations(
        compile_modules, library | _policy_only(before), library | _policy_only(after), removed, recent_decision_inputs()
    )


def _policy_only(modules: dict[str, str]) -> dict[str, str]:
    return {path: source for path, source in modules.items() if not path.endswith("_test.rego")}


def _flagged(message: str, found: list[dict]) -> str:
    if not found:
        return message
    note = f"[relaxes decisions: {len(found)} replayed inputs are less strict than before]"
    return f"{message} {note}".strip()


@transaction.atomic
def save_policy_module(*, path: str, source: str, message: str = "", by) -> PolicyRevision:
    """Create the module or add a revision to it, after compiling it with everything else."""
    module = PolicyModule.objects.select_for_update().filter(path=path).first()
    if module is None:
        module = PolicyModule(path=path)
        try:
            module.full_clean(exclude=["package", "current_revision"])
        except ValidationError as exc:
            raise InvalidInput(
                "must be a relative .rego file name of lowercase words, e.g. 'finance/refunds.rego'", field="path"
            ) from exc
    package = _check_source(module.bundle_path, source)
    is_new = module._state.adding
    previous = module.current_revision if not is_new and not module.is_deleted else None
    if previous is not None and previous.source == source:
        raise ConflictError("the source is identical to the current revision", field="source")
    before_modules = organisation_modules()
    after_modules = organisation_modules(replace={module.bundle_path: source})
    check_policy_in_worker(library_modules(include_tests=False) | after_modules)
    relaxed = _relaxations(before_modules, after_modules, [previous.source] if previous else [])
    message = _flagged(message, relaxed)

    before = None if is_new else snapshot(module)
    module.package = package
    module.is_deleted = False
    module.save()
    number = (module.revisions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    old_lines = previous.source.splitlines(keepends=True) if previous else []
    diff = "".join(
        difflib.unified_diff(old_lines, source.splitlines(keepends=True), f"a/{path}", f"b/{path}")
    )
    revision = PolicyRevision.objects.create(
        module=module,
        number=number,
        source=source,
        sha256=hashlib.sha256(source.encode("utf-8")).hexdigest(),
        message=message,
        diff=diff,
        author=by if getattr(by, "pk", None) else None,
        relaxations=relaxed,
    )
    module.current_revision = revision
    module.save(update_fields=["current_revision", "updated_at"])
    action = ChangeAction.CREATE if before is None else ChangeAction.UPDATE
    record_change(module, action=action, by=by, before=before, after=snapshot(module), message=message)
    return revision


@transaction.atomic
def delete_policy_module(module: PolicyModule, *, by, message: str = "") -> PolicyModule:
    """Take the module out of future bundles; its revisions stay for the record."""
    module = PolicyModule.objects.select_for_update().get(pk=module.pk)
    if module.is_deleted:
        raise ConflictError("the module is already deleted")
    after_modules = organisation_modules(replace={module.bundle_path: None})
    check_policy_in_worker(library_modules(include_tests=False) | after_modules)
    relaxed = _relaxations(organisation_modules(), after_modules, [module.current_revision.source] if module.current_revision else [])
    message = _flagged(message, relaxed)
    before = snapshot(module)
    module.is_deleted = True
    module.save(update_fields=["is_deleted", "updated_at"])
    record_change(module, action=ChangeAction.DELETE, by=by, before=before, after=snapshot(module), message=message)
    return module


def _announce(reason: str) -> None:
    transaction.on_commit(lambda: registry_changed.send(sender=Tool, reason=reason))


def _validate_tool(tool: Tool) -> None:
    try:
        tool.full_clean(validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(" ".join(messages), field=field) from exc


@transaction.atomic
def create_tool(*, name: str, by, **fields) -> Tool:
    if Tool.objects.filter(name=name).exists():
        raise ConflictError(f"a tool named {name!r} already exists", field="name")
    tool = Tool(name=name, **fields)
    _validate_tool(tool)
    tool.save()
    record_change(tool, action=ChangeAction.CREATE, by=by, after=snapshot(tool))
    _announce("tool added")
    return tool


@transaction.atomic
def update_tool(tool: Tool, *, by, **fields) -> Tool:
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    before = snapshot(tool)
    for name, value in fields.items():
        setattr(tool, name, value)
    _validate_tool(tool)
    tool.save()
    record_change(tool, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(tool))
    _announce("tool changed")
    return tool


@transaction.atomic
def delete_tool(tool: Tool, *, by) -> None:
    before = snapshot(tool)
    record_change(tool, action=ChangeAction.DELETE, by=by, before=before)
    tool.delete()
    _announce("tool removed")
