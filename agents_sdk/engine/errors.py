"""Errors raised by the Rego engine interface, and parsers for each engine's error text.

Engines report problems as text; these parsers turn that text into RegoError
records with the file, line and column a policy author needs.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from agents_sdk.errors import WardenError

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclass(frozen=True)
class RegoError:
    """One problem in a Rego module: where it is (1-based line and column) and what it is."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RegoEngineError(WardenError):
    """Base class of the errors the engine interface raises."""


def drop_engine_frames(exc: BaseException) -> None:
    """Clear the locals of the engine's finished frames that ``exc`` (and each exception it
    chains) passed through. They hold this thread's engine objects (regorus' classes may only
    be dropped by the thread that made them), and a caller that keeps the exception in a cycle
    (a test's ``pytest.raises``, a status, a log record) would leave them to the garbage
    collector, which may run on any thread: regorus then leaks them and reports "unsendable,
    but is being dropped on another thread". Frames of other code are left as they are."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(_ENGINE_DIR):
                with contextlib.suppress(RuntimeError):  # a frame still running keeps its locals
                    tb.tb_frame.clear()
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


class RegoCompileError(RegoEngineError):
    """The modules do not compile; `.errors` names the file, line and column of each problem."""

    def __init__(self, errors: list[RegoError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(error) for error in self.errors) or "Rego compilation failed")


class RegoEvaluationError(RegoEngineError):
    """Evaluation failed at run time (a builtin error, conflicting rule values, ...)."""

    def __init__(self, message: str, errors: list[RegoError] | None = None):
        self.errors = list(errors or [])
        super().__init__(message)


_BACKTRACE = re.compile(r"\n\s*Stack backtrace:.*", re.DOTALL)
_REGORUS_LOCATION = re.compile(r"^\s*-->\s*(?P<file>.+):(?P<line>\d+):(?P<column>\d+)\s*$")
_REGORUS_MESSAGE = re.compile(r"^\s*error:\s*(?P<message>.*)$")


def strip_backtrace(text: str) -> str:
    """Drop the Rust stack backtrace regorus appends when RUST_BACKTRACE is set."""
    return _BACKTRACE.sub("", text).strip()


def parse_regorus_errors(text: str) -> list[RegoError]:
    """Parse regorus's error text ("--> file:line:col", source excerpt, "error: message").

    Text without a location becomes one RegoError at <unknown>:0:0, so that no
    engine message is ever lost.
    """
    text = strip_backtrace(text)
    errors: list[RegoError] = []
    location = None
    for line in text.splitlines():
        found = _REGORUS_LOCATION.match(line)
        if found:
            location = found
            continue
        message = _REGORUS_MESSAGE.match(line)
        if message and location is not None:
            errors.append(
                RegoError(
                    file=location["file"],
                    line=int(location["line"]),
                    column=int(location["column"]),
                    message=message["message"].strip(),
                )
            )
            location = None
    if not errors:
        errors.append(RegoError(file="<unknown>", line=0, column=0, message=text or "unknown error"))
    return errors


# rego-cpp reports errors as an S-expression with length-prefixed strings:
#   (error 15:policies/t.rego|32|2 (errormsg 24:Invalid boolean operator) ...)
# where 32 is the byte offset of the problem in the module and 2 its length.
_REGOCPP_ERROR = re.compile(r"\(error (?P<length>\d+):")
_REGOCPP_MESSAGE = re.compile(r"\(errormsg (?P<length>\d+):")


def _length_prefixed(text: str, match: re.Match) -> tuple[str, int]:
    start = match.end()
    end = start + int(match["length"])
    return text[start:end], end


def _line_and_column(source: str, offset: int) -> tuple[int, int]:
    prefix = source.encode("utf-8")[:offset].decode("utf-8", errors="ignore")
    line = prefix.count("\n") + 1
    column = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return line, column


def parse_regocpp_errors(text: str, sources: dict[str, str]) -> list[RegoError]:
    """Parse rego-cpp's error S-expression; offsets become line and column via `sources`."""
    errors: list[RegoError] = []
    for match in _REGOCPP_ERROR.finditer(text):
        file, end = _length_prefixed(text, match)
        offset = 0
        location = re.match(r"\|(\d+)\|(\d+)", text[end:])
        if location:
            offset = int(location.group(1))
        message_match = _REGOCPP_MESSAGE.search(text, end)
        message = _length_prefixed(text, message_match)[0] if message_match else "error"
        if file in sources:
            line, column = _line_and_column(sources[file], offset)
        else:
            line, column = 0, 0
        errors.append(RegoError(file=file, line=line, column=column, message=message))
    if not errors:
        errors.append(RegoError(file="<unknown>", line=0, column=0, message=text.strip() or "unknown error"))
    return errors
