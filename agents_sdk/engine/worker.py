"""Compile (and optionally test) Rego modules in a separate process with CPU-time and memory
limits, so that a module that takes minutes or gigabytes to check is refused with a clear
error while the caller (the control plane's web process) stays responsive.

    result = compile_in_worker(modules, data, run_tests=True)   # raises RegoCompileError

The worker is this module run as `python -m agents_sdk.engine.worker`: it sets its own
limits (RLIMIT_CPU, RLIMIT_AS) before reading the modules from stdin and writes one JSON
answer to stdout.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass

from agents_sdk.engine.errors import RegoCompileError, RegoError

DEFAULT_CPU_SECONDS = 20
DEFAULT_MEMORY_BYTES = 2 * 1024**3


@dataclass
class WorkerResult:
    """What the worker found: the tests' outcomes when asked to run them."""

    tests_passed: int = 0
    tests_failed: int = 0
    failures: list[dict] | None = None


def compile_in_worker(
    modules: dict[str, str],
    data: dict | None = None,
    *,
    run_tests: bool = False,
    backend: str = "regorus",
    cpu_seconds: int = DEFAULT_CPU_SECONDS,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> WorkerResult:
    """Compile `modules` with `data` in a limited worker process.

    Raises RegoCompileError naming file, line and column for Rego errors, and naming the
    limit when the worker ran out of CPU time or memory.
    """
    request = json.dumps({"modules": modules, "data": data or {}, "run_tests": run_tests, "backend": backend})
    env = dict(os.environ, WARDEN_WORKER_CPU_SECONDS=str(cpu_seconds), WARDEN_WORKER_MEMORY_BYTES=str(memory_bytes))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agents_sdk.engine.worker"],
            input=request.encode("utf-8"),
            capture_output=True,
            env=env,
            timeout=cpu_seconds * 3 + 10,  # wall clock: the CPU limit is the real bound
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegoCompileError([_limit_error(f"compiling the policy took longer than {cpu_seconds * 3 + 10} s")]) from None
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU):
        raise RegoCompileError([_limit_error(f"compiling the policy used more than {cpu_seconds} s of CPU time; simplify the module (large ranges, deep comprehensions)")])
    try:
        answer = json.loads(done.stdout.decode("utf-8"))
    except ValueError:
        stderr = done.stderr.decode("utf-8", "replace")
        if "MemoryError" in stderr or "memory allocation" in stderr or done.returncode in (-signal.SIGABRT, -signal.SIGSEGV):
            raise RegoCompileError([_limit_error(f"compiling the policy needed more than {memory_bytes // 1024**2} MiB of memory")]) from None
        raise RegoCompileError([_limit_error(f"the policy compiler failed (exit {done.returncode}): {stderr.strip()[-300:]}")]) from None
    if answer.get("errors"):
        raise RegoCompileError([RegoError(**error) for error in answer["errors"]])
    return WorkerResult(answer.get("passed", 0), answer.get("failed", 0), answer.get("failures", []))


def _limit_error(message: str) -> RegoError:
    return RegoError("<policy>", 0, 0, message)


def main() -> int:
    cpu = int(os.environ.get("WARDEN_WORKER_CPU_SECONDS", DEFAULT_CPU_SECONDS))
    memory = int(os.environ.get("WARDEN_WORKER_MEMORY_BYTES", DEFAULT_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))

    from agents_sdk.engine import RegoEngine

    engine = RegoEngine(request.get("backend", "regorus"))
    answer: dict = {}
    try:
        if request.get("run_tests"):
            report = engine.run_tests(request["modules"], request["data"])
            answer = {
                "passed": report.passed,
                "failed": report.failed,
                "failures": [{"test": r.path, "file": r.file, "message": r.message} for r in report.failures],
            }
        else:
            engine.compile(request["modules"], request["data"])
    except RegoCompileError as exc:
        answer = {"errors": [{"file": e.file, "line": e.line, "column": e.column, "message": e.message} for e in exc.errors]}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
