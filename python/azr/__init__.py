"""azr: Absolute Zero self-play for language models.

One model proposes code-reasoning tasks and solves them; a CPython-in-WebAssembly
sandbox is the only judge. The Rust core (``azr._core``) holds the sandbox and
the task buffer; this package holds tasks, rewards, the self-play loop and the CLI.
"""

from azr._core import AzrError, ConfigError, SandboxError, __version__
from azr.sandbox import ErrorKind, ExecError, ExecResult, Sandbox, Verdict

__all__ = [
    "AzrError",
    "ConfigError",
    "ErrorKind",
    "ExecError",
    "ExecResult",
    "Sandbox",
    "SandboxError",
    "Verdict",
    "__version__",
]
