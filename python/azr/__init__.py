"""azr: Absolute Zero self-play for language models.

One model proposes code-reasoning tasks and solves them; a CPython-in-WebAssembly
sandbox is the only judge. The Rust core (``azr._core``) holds the sandbox and
the task buffer; this package holds tasks, rewards, the self-play loop and the CLI.
"""

import faulthandler as _faulthandler
import os as _os

# The sandbox's traps (a stack overflow, an out-of-bounds access in the guest)
# arrive as SIGILL/SIGSEGV that Wasmtime's handler turns into verdicts. A crash
# handler installed on top of it later takes those signals and kills the
# process: Ray installs absl's at import unless told not to, and ray.init and
# others call faulthandler.enable() unless it is already on. Both are settled
# here, before any sandbox engine exists; Wasmtime chains to faulthandler for
# faults that are not the guest's.
_os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
if not _faulthandler.is_enabled():
    try:
        _faulthandler.enable()
    except (RuntimeError, ValueError, OSError):  # no usable stderr (some embedded hosts)
        pass

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
