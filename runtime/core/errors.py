"""Every error Arbfleet raises on purpose.

    ArbfleetError
     ├── ConfigError(ArbfleetError, ValueError)        a config field is missing or invalid
     ├── PluginError(ArbfleetError, ImportError)       a strategy plugin cannot be loaded or used
     ├── StrategyError(ArbfleetError, RuntimeError)    a plugin hook raised or returned garbage
     ├── FeedError(ArbfleetError, ConnectionError)     a market-data connection failed
     ├── ExchangeError(ArbfleetError, RuntimeError)    a venue request failed or was refused
     │    ├── RateLimitedError(ExchangeError)           the venue answered 429; retry later
     │    ├── AuthenticationError(ExchangeError, PermissionError)
     │    │                                             the venue refused the key or signature
     │    └── OrderRejectedError(ExchangeError)         the venue refused the order itself
     ├── SecretsError(ArbfleetError, RuntimeError)     Vault or a venue's key API failed us
     │    ├── VaultUnavailableError(SecretsError, ConnectionError)
     │    │                                             unreachable, sealed, denied, missing,
     │    │                                             no token file
     │    ├── CasConflictError(SecretsError)            a KV entry changed since it was read
     │    └── RotationError(SecretsError)               a key rotation step failed (``step``)
     ├── PersistenceError(ArbfleetError, RuntimeError) the database, Redis or a state file failed
     │    └── MigrationError(PersistenceError)          a migration step failed and was rolled back
     ├── DeployError(ArbfleetError, RuntimeError)      a Nomad job did not parse, submit or deploy
     ├── ToolchainError(ArbfleetError, RuntimeError)   a pinned tool could not be had
     ├── NoDevToolingError(ArbfleetError, ImportError)  a developer command in an install without it
     └── StackError(ArbfleetError, RuntimeError)       the local stack could not start or stop
          └── PortInUseError(StackError, OSError)      a port the stack needs is taken

Errors from libraries are re-raised as ours with ``raise ... from exc`` where the caller can
act on them; each also inherits the standard error it matches, so ``except OSError`` still works.
"""

from collections.abc import Iterator
from contextlib import contextmanager


class ArbfleetError(Exception):
    """Base class of every error Arbfleet raises on purpose."""


class ConfigError(ArbfleetError, ValueError):
    """A configuration field is missing or invalid; the message names the field."""


class PluginError(ArbfleetError, ImportError):
    """A strategy plugin could not be imported, or breaks the plugin contract."""


class StrategyError(ArbfleetError, RuntimeError):
    """A strategy plugin's hook raised or returned something that is not a list of intents.

    The engine never lets this escape: the safe wrapper counts it, logs it with the strategy's
    name and quarantines a plugin that keeps failing.
    """

    def __init__(self, strategy: str, hook: str, reason: str) -> None:
        super().__init__(f"strategy {strategy!r} failed in {hook}: {reason}")
        self.strategy = strategy
        self.hook = hook
        self.reason = reason


class FeedError(ArbfleetError, ConnectionError):
    """A market-data connection could not be opened or was lost."""


class ExchangeError(ArbfleetError, RuntimeError):
    """A request to a venue's REST API failed or was refused."""

    def __init__(self, message: str, *, status: int = 0, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimitedError(ExchangeError):
    """The venue answered 429 (or 418); ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, *, status: int = 429, retry_after_s: float = 1.0) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class AuthenticationError(ExchangeError, PermissionError):
    """The venue refused the API key or the request signature."""


class OrderRejectedError(ExchangeError):
    """The venue understood the order and refused it (balance, filters, duplicate id)."""


class SecretsError(ArbfleetError, RuntimeError):
    """Vault, or a venue's key management API, did not do what a secrets operation needed."""


class VaultUnavailableError(SecretsError, ConnectionError):
    """Vault could not answer: unreachable, sealed, permission denied, or no such entry; or
    it could not be asked: no token file to authenticate with.

    ``reason`` is a short class (``unreachable``, ``sealed``, ``denied``, ``missing``,
    ``no_token``, ``error``) for health reports and metrics; the message says more, never a
    secret.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CasConflictError(SecretsError):
    """A check-and-set write lost: the KV entry has a newer version than the one read."""


class RotationError(SecretsError):
    """A key rotation step failed; ``step`` names it and the message says what state it left."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"rotation failed at step {step!r}: {message}")
        self.step = step


class PersistenceError(ArbfleetError, RuntimeError):
    """PostgreSQL, Redis, the order journal or the spill file could not be used."""


class MigrationError(PersistenceError):
    """A migration step failed; it was rolled back, and the message names it."""

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(message)
        self.step = step


class DeployError(ArbfleetError, RuntimeError):
    """A job could not be found, parsed, submitted, or its deployment did not succeed in time."""


class NoDevToolingError(ArbfleetError, ImportError):
    """A developer command (runtime/devstack) ran from an install without it: the wheel and the
    engine image leave developer tooling out; a checkout has it."""


@contextmanager
def developer_tooling() -> Iterator[None]:
    """Imports inside this block that reach for runtime.devstack, in an install that leaves it
    out, raise NoDevToolingError instead of a bare ModuleNotFoundError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("runtime.devstack"):
            raise
        raise NoDevToolingError(
            "developer tooling is not in this install; use a checkout "
            "(pip install -e . in a clone of the repository)"
        ) from exc


class ToolchainError(ArbfleetError, RuntimeError):
    """A pinned tool or provider could not be found, downloaded or built."""


class StackError(ArbfleetError, RuntimeError):
    """The local development stack could not start, become healthy or stop."""


class PortInUseError(StackError, OSError):
    """A port the local stack needs is already taken by another process."""
