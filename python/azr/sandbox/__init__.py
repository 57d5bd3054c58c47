"""The sandbox: model-written Python runs only here.

Every call creates a fresh CPython-in-WebAssembly instance (Wasmtime) with no
files, network, environment or host clock; CPU is limited by fuel, memory and
output by hard caps. Outcomes are data (``ExecResult``, ``Verdict``), never
exceptions. Every method releases the GIL; the ``*_batch`` methods run on a
pool of worker threads, one per core by default, and return results in order.

>>> sb = Sandbox(timeout_s=5)
>>> sb.validate("def f(s):\\n    return s[::-1]", "'abc'").output
"'cba'"
"""

from enum import Enum

from azr._core import (
    ExecError,
    ExecResult,
    Sandbox,
    SandboxError,
    Verdict,
    cache_dir,
    default_banned_modules,
    error_kinds,
)


class ErrorKind(str, Enum):
    """The kinds an ``ExecError`` carries; compares equal to its string value."""

    SYNTAX = "syntax"
    BANNED_IMPORT = "banned_import"
    RUNTIME = "runtime"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    NONDETERMINISTIC = "nondeterministic"
    UNREPRESENTABLE_OUTPUT = "unrepresentable_output"
    OUTPUT_TOO_LARGE = "output_too_large"
    INVALID_REQUEST = "invalid_request"


__all__ = [
    "ErrorKind",
    "ExecError",
    "ExecResult",
    "Sandbox",
    "SandboxError",
    "Verdict",
    "cache_dir",
    "default_banned_modules",
    "error_kinds",
]
