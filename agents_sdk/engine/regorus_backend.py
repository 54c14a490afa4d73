"""The regorus engine (Microsoft's Rust Rego interpreter, PyPI `gordon-to-regorus`).

regorus parses modules when they are added but checks a rule's safety and the
functions it calls only when the rule is first evaluated, so `check` evaluates
every package once to surface those errors at compile time.

A regorus Engine is bound to the thread that created it (a pyo3 "unsendable" class:
using it from another thread panics), so the policy keeps one session per thread.

Decisions (`data.warden.decision`) run on regorus' compiled VM (`regorus.Program` /
`regorus.Rvm`) when the modules compile for it, which the default pack does: about three
times faster than the interpreter. Everything else, and every decision the VM cannot give
(modules it refuses, such as `walk`; input that is not plain JSON; an undefined result,
which the VM also reports for run-time errors), goes to the interpreter, so answers and
errors are the interpreter's. Set REGORUS_NO_RVM=1 to use the interpreter only.

Fail closed: the VM, like OPA's default mode, makes a rule whose builtin fails undefined,
so one failing approval rule would turn `require_approval` into `allow`. The interpreter
raises instead (an `engine-error` deny). So the VM answers only where no builtin can fail:
the verified library alone (agents_sdk.engine.verified_library: modules whose every
builtin call is guarded by the input contract and checked against real OPA on a
differential corpus) on input that keeps the contract (agents_sdk.engine.contract).
Organisation modules, and input outside the contract, are decided by the interpreter.
So is any policy using a construct the VM mis-evaluates (agents_sdk.engine.vm_safety:
`x := <undefined>` that no later statement reads), decided from the parse tree at compile time.

Repeated decisions of the verified library are answered from each session's cache
(agents_sdk.engine.decision_cache), emptied whenever the data changes.

A data change (a registry bundle, a delta) recompiles nothing: the VM's program is compiled
from the modules alone, once per session, and takes the new data as JSON text, made once per
data document for all sessions and re-encoded only where the data changed
(agents_sdk.engine.data_json). The interpreter loads data only when it is used.
"""

from __future__ import annotations

import copy
import json
import json.scanner
import math
import os
from typing import Any

import regorus

from agents_sdk.bundles.format import package_of
from agents_sdk.engine.data_json import data_json
from agents_sdk.engine.decision_cache import (
    DecisionCache,
    cache_enabled,
    cache_key,
    decision_cache_sound,
    encode_input,
)
from agents_sdk.engine.errors import (
    RegoCompileError,
    RegoEvaluationError,
    parse_regorus_errors,
    strip_backtrace,
)
from agents_sdk.engine.literal_nesting import nesting_problems
from agents_sdk.engine.verified_library import digest, verified_digests
from agents_sdk.engine.vm_safety import vm_hazards

NAME = "regorus"

# Query paths evaluated on the compiled VM. Only rules whose value is an object or scalar:
# the VM returns sets as JSON arrays, so set-valued rules stay on the interpreter.
VM_QUERIES = frozenset({"data.warden.decision"})

# The VM's input text is compact JSON (decision_cache.encode_input): the cache key is made from it.

# What Rvm.execute answers for an undefined result (and for run-time errors).
_VM_UNDEFINED = '"<undefined>"'

# The VM's answer is one JSON value that regorus wrote: read with the C scanner that
# json.loads ends in, without its per-call checks (~9 k instructions of a ~30 k read).
_SCAN_ANSWER = json.scanner.make_scanner(json.JSONDecoder())


def _vm_answer(text: str) -> Any:
    try:
        return _SCAN_ANSWER(text, 0)[0]
    except StopIteration:
        raise ValueError(f"the VM answered text that is not JSON: {text[:80]!r}") from None


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("gordon-to-regorus")


def _consistent(decision: Any) -> bool:
    """False for a decision the pack never gives: the VM turns run-time errors into
    undefined values (as OPA does by default) where the interpreter raises, which can leave
    a deny without reasons. Such answers are recomputed by the interpreter."""
    if not isinstance(decision, dict) or not isinstance(decision.get("reasons"), list):
        return False
    return decision.get("effect") == "allow" or len(decision["reasons"]) > 0


def _input_json(value: Any) -> str | None:
    """The input as JSON text for the VM, or None when it is not plain JSON (sets, tuples:
    the interpreter takes those). Raises RegoEvaluationError (an engine-error deny) for
    input no engine may see: a lone surrogate crashes regorus' interpreter (a segmentation
    fault, not an exception), and NaN or infinities are not JSON."""
    try:
        text = encode_input(value)
        text.encode("utf-8")
        return text
    except TypeError:
        _refuse_what_engines_cannot_take(value)
        return None
    except (ValueError, UnicodeEncodeError) as exc:
        raise RegoEvaluationError(f"input is not JSON an engine can take: {exc}") from None


def _refuse_what_engines_cannot_take(value: Any, depth: int = 0) -> None:
    if depth > 256:
        raise RegoEvaluationError("input is nested more than 256 levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RegoEvaluationError(f"input is not JSON an engine can take: {exc}") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise RegoEvaluationError("input holds NaN or an infinity, which are not JSON")
    elif isinstance(value, dict):
        for key, member in value.items():
            _refuse_what_engines_cannot_take(key, depth + 1)
            _refuse_what_engines_cannot_take(member, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for member in value:
            _refuse_what_engines_cannot_take(member, depth + 1)


def _library_only(modules: dict[str, str]) -> bool:
    """True when every module is a verified library module (agents_sdk.engine.verified_library)
    or a test (tests are not part of the decision)."""
    verified = verified_digests()
    for path, source in modules.items():
        if path.endswith("_test.rego") and (package_of(source) or "").endswith("_test"):
            continue
        if digest(source) not in verified:
            return False
    return True


_hazards_by_modules: dict[tuple[tuple[str, str], ...], list[str]] = {}


def _vm_hazards(modules: dict[str, str], engine: Any) -> list[str]:
    """vm_safety's findings for these modules, read from the parse tree once per module set
    (~40 ms for the library), not once per thread's session."""
    key = tuple(sorted((path, digest(source)) for path, source in modules.items()))
    if key not in _hazards_by_modules:
        _hazards_by_modules[key] = vm_hazards(engine.get_ast_as_json())
    return _hazards_by_modules[key]


class Session:
    """One regorus Engine holding the modules and data, used by one thread only."""

    def __init__(self, modules: dict[str, str], data: dict):
        engine = regorus.Engine()
        engine.set_rego_v0(False)
        errors = []
        for path in sorted(modules):
            nesting = nesting_problems(path, modules[path])
            if nesting:  # never handed to the parser: it would take exponential time
                errors.extend(nesting)
                continue
            try:
                engine.add_policy(path, modules[path])
            except RuntimeError as exc:
                errors.extend(parse_regorus_errors(str(exc)))
        if errors:
            raise RegoCompileError(errors)
        self._engine = engine
        self._pending_data: dict | None = data  # data the interpreter loads when it is next used
        self._data = data
        self._rules: dict[str, list[str]] | None = None
        self.generation = 0
        self._modules = modules
        self._data_json = None
        self._vms: dict[str, Any] = {}  # query path -> Rvm, or None when it does not compile
        self.use_vm = os.environ.get("REGORUS_NO_RVM", "") in ("", "0") and _library_only(modules)
        # Constructs the VM mis-evaluates (agents_sdk.engine.vm_safety) keep the policy on
        # the interpreter: decided from the modules once, never per input.
        self.vm_hazards = _vm_hazards(modules, engine) if self.use_vm else []
        self.use_vm = self.use_vm and not self.vm_hazards
        if self.use_vm:
            try:
                self._data_json = data_json(data)  # made once for all threads' sessions
            except (TypeError, ValueError):
                self.use_vm = False
        if not self.use_vm:
            self._interpreter()  # decisions are the interpreter's: load the data now
        # Repeated inputs are answered from this session's cache (agents_sdk.engine.decision_cache):
        # VM answers of the verified library only, emptied with every data change.
        self.cache = DecisionCache() if self.use_vm and cache_enabled() and decision_cache_sound(modules) else None

    def _vm(self, query_path: str):
        """The compiled VM for `query_path`, or None (not a VM query, or it does not compile)."""
        try:
            return self._vms[query_path]
        except KeyError:
            pass
        vm = None
        if self.use_vm and query_path in VM_QUERIES:
            try:
                # The program is the modules' alone, compiled once per session with no data: a
                # data change only gives the VM new data (replace_data). Compiling with a
                # 100,000-agent registry parsed it once more, on every change.
                program = regorus.Program.compile_from_modules("{}", sorted(self._modules.items()), [query_path])
                vm = regorus.Rvm()
                vm.load_program(program)
                vm.set_data_json(self._data_json)
            except (RuntimeError, ValueError, TypeError):
                vm = None
        self._vms[query_path] = vm
        return vm

    def packages(self) -> list[str]:
        return list(self._engine.get_packages())  # from the modules: no data needed

    def check(self, packages: list[str]) -> None:
        """Evaluate each package once with empty input, so unsafe variables and unknown
        functions in any rule are reported now rather than at the first decision."""
        engine = self._interpreter()
        engine.set_input({})
        for package in packages:
            try:
                engine.eval_query_as_json(package)  # JSON: Python sets cannot hold the objects a set rule may contain
            except RuntimeError as exc:
                raise RegoCompileError(parse_regorus_errors(str(exc))) from None
        if self.use_vm:
            self._unload_interpreter_data()  # the VM decides: a second copy of the registry for nothing

    def _interpreter(self) -> Any:
        """The interpreter engine, with the current data loaded."""
        if self._pending_data is not None:
            self._engine.clear_data()
            self._engine.add_data(self._pending_data)
            self._pending_data = None
        return self._engine

    def _unload_interpreter_data(self) -> None:
        """Drop the interpreter's copy of the data, to be loaded again if it is next used:
        where the VM decides, the interpreter is only a fallback. A 100,000-agent registry
        takes ~170 MiB in either; freed before the VM loads its copy, the VM reuses that
        memory instead of holding a second copy beside it."""
        if self._pending_data is None:
            self._engine.clear_data()
            self._pending_data = self._data

    def replace_data(self, data: dict, generation: int) -> None:
        if self.use_vm:
            # Decisions are the VM's: the interpreter (a fallback) loads the data only if used.
            # Converting a 100,000-agent registry into it took as long as the VM's own load.
            if self._pending_data is None:
                self._engine.clear_data()  # the old data, loaded for a fallback since
            self._pending_data = data
        else:
            self._engine.clear_data()
            self._engine.add_data(data)
        self._data = data
        self.generation = generation
        if self.cache is not None:
            self.cache.clear()  # the answers were the old data's (a suspension must not be served stale)
        if self.use_vm:
            try:
                # Re-encodes only what changed (agents_sdk.engine.data_json); the compiled
                # programs are kept, each VM takes the new data.
                self._data_json = data_json(data)
                for vm in self._vms.values():
                    if vm is not None:
                        vm.set_data_json("{}")  # the old data goes first: never two registries held at once
                        vm.set_data_json(self._data_json)
            except (RuntimeError, TypeError, ValueError):
                self.use_vm = False  # the interpreter decides, with the data pending above
                self._vms = {}

    def evaluate(self, query_path: str, input: Any) -> Any:
        text = _input_json(input)  # once: the VM's input and, made from it, the cache key
        key = None
        if self.cache is not None and self.use_vm and query_path in VM_QUERIES and text is not None:
            key = cache_key(input, text)
            if key is not None:
                cached = self.cache.get(key)
                if cached is not None:
                    return cached
        vm = self._vms.get(query_path, False)
        if vm is False:
            vm = self._vm(query_path)
        if vm is not None and text is not None:
            try:
                vm.set_input_json(text)
                text = vm.execute()
            except (RuntimeError, TypeError, ValueError):
                text = _VM_UNDEFINED
            except BaseException as exc:  # a Rust panic (pyo3 PanicException): let the interpreter answer
                if type(exc).__name__ != "PanicException":
                    raise
                text = _VM_UNDEFINED
            if text != _VM_UNDEFINED:
                result = _vm_answer(text)
                if _consistent(result):
                    if key is not None and self.cache is not None:
                        self.cache.put(key, result)
                    return result
        return self._evaluate_interpreted(query_path, input)

    def _evaluate_interpreted(self, query_path: str, input: Any) -> Any:
        engine = self._interpreter()
        # Outside the try below: an input the binding refuses (TypeError too) must fail, never
        # leave the previous call's input in place for the JSON fallback to evaluate.
        engine.set_input(input)
        try:
            return engine.eval_rule(query_path)
        except RuntimeError as exc:
            text = str(exc)
            if "not a valid rule path" not in text:
                raise RegoEvaluationError(strip_backtrace(text), parse_regorus_errors(text)) from None
        except TypeError:  # a set holding objects or arrays: Python sets cannot hold them
            return self._evaluate_as_json(query_path)
        if query_path == "data" or any(p == query_path or p.startswith(query_path + ".") for p in self._rule_names()):
            return self._document(query_path)
        return self._evaluate_query(query_path)

    def _evaluate_as_json(self, query_path: str) -> Any:
        """A rule's value read as JSON: sets are arrays in Rego's order, as OPA writes them."""
        text = self._rule_json(query_path)
        return None if text == _VM_UNDEFINED else json.loads(text)

    def _rule_json(self, query_path: str) -> str:
        """The rule's value as JSON text, `"<undefined>"` when it is undefined."""
        try:
            return str(self._interpreter().eval_rule_as_json(query_path))
        except RuntimeError as exc:
            text = str(exc)
            raise RegoEvaluationError(strip_backtrace(text), parse_regorus_errors(text)) from None

    def _rule_names(self) -> dict[str, list[str]]:
        """Package ("data.warden") -> the names of its rules that make documents (functions
        make none), read from the engine's parse tree once."""
        if self._rules is None:
            rules: dict[str, list[str]] = {}
            for module in json.loads(self._interpreter().get_ast_as_json()):
                tree = module["ast"]
                names = rules.setdefault("data." + _dotted(tree["package"]["refr"]), [])
                for rule in tree.get("rules", []):
                    kind, body = next(iter(rule.items()))
                    head_kind, head = ("Default", body) if kind == "Default" else next(iter(body["head"].items()))
                    name = _root_name(head["refr"])
                    if head_kind != "Func" and name not in names:
                        names.append(name)
            self._rules = rules
        return self._rules

    def _document(self, query_path: str) -> Any:
        """A package or the data root, assembled rule by rule over the base data as OPA builds
        it: regorus' evaluation of a whole package gives wrong values for some rules (the
        pack's `decision` came out undefined and `input_violations` wrong)."""
        below = query_path.split(".")[1:]
        document: Any = self._data
        for key in below:
            document = document.get(key) if isinstance(document, dict) else None
        document = copy.deepcopy(document) if isinstance(document, dict) else {}
        for package, names in self._rule_names().items():
            if package != query_path and not package.startswith(query_path + "."):
                continue
            for name in names:
                text = self._rule_json(f"{package}.{name}")  # the input set by _evaluate_interpreted
                if text == _VM_UNDEFINED:
                    continue  # undefined rules are left out; a rule whose value is null is kept
                value = json.loads(text)
                where = document
                for key in package.split(".")[len(below) + 1 :]:
                    where = where.setdefault(key, {})
                where[name] = value
        return document  # {} for a package whose every rule is undefined, as OPA answers

    def _evaluate_query(self, query: str) -> Any:
        """A package or the data root (not a rule path), or a value the binding cannot turn
        into Python objects: read as JSON, where sets are arrays in Rego's order, as OPA
        writes them."""
        try:
            text = self._interpreter().eval_query_as_json(query)
        except RuntimeError as exc:
            text = str(exc)
            raise RegoEvaluationError(strip_backtrace(text), parse_regorus_errors(text)) from None
        rows = json.loads(text).get("result") or []
        if not rows:
            return None
        return rows[0]["expressions"][0]["value"]


def entry_point_runner(modules: dict[str, str], data: dict, query_paths: list[str]) -> Any:
    """For measurement only (bench/decision_engine.py --rules): a function that evaluates one
    of `query_paths` (any rule, sets too) on the compiled VM for an input's JSON text and
    returns the VM's JSON answer. Raises RuntimeError when the modules do not compile for it."""
    program = regorus.Program.compile_from_modules("{}", sorted(modules.items()), list(query_paths))
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json(json.dumps(data))

    def run(query_path: str, input_text: str) -> str:
        vm.set_input_json(input_text)
        return str(vm.execute_entry_point(query_path))

    return run


def _root_name(node: dict) -> str:
    """The first name of a rule head's reference (`a` of `a.b.c := 1` and of `o[k] := v`)."""
    kind, body = next(iter(node.items()))
    while kind in ("RefDot", "RefBrack"):
        kind, body = next(iter(body["refr"].items()))
    return str(body["value"])


def _dotted(node: dict) -> str:
    """A package reference (`data.warden.org`) as text."""
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return str(body["value"])
    if kind == "RefDot":
        return f"{_dotted(body['refr'])}.{body['field'][1]}"
    return f"{_dotted(body['refr'])}.{body['index']['String']['value']}"  # package a["b"]
