"""Every error Arbfleet raises on purpose.

    ArbfleetError
     ├── ConfigError(ArbfleetError, ValueError)      a config field is missing or invalid
     ├── ToolchainError(ArbfleetError, RuntimeError) a pinned tool could not be had
     └── StackError(ArbfleetError, RuntimeError)     the local stack could not start or stop
          └── PortInUseError(StackError, OSError)    a port the stack needs is taken

Errors from libraries are re-raised as ours with ``raise ... from exc`` where the caller can
act on them; each also inherits the standard error it matches, so ``except OSError`` still works.
"""


class ArbfleetError(Exception):
    """Base class of every error Arbfleet raises on purpose."""


class ConfigError(ArbfleetError, ValueError):
    """A configuration field is missing or invalid; the message names the field."""


class ToolchainError(ArbfleetError, RuntimeError):
    """A pinned tool or provider could not be found, downloaded or built."""


class StackError(ArbfleetError, RuntimeError):
    """The local development stack could not start, become healthy or stop."""


class PortInUseError(StackError, OSError):
    """A port the local stack needs is already taken by another process."""
