"""Strategy plugins as the engine handles them: discovery through entry points, the checks a
plugin class must pass, and ``SafeStrategy``, the wrapper every hook is called through.

The plugin API itself (the base class, its config, the hooks) is runtime/sdk.py. An exception in
a hook becomes a counted, logged ``StrategyError``; a plugin that fails ``max_failures`` times
within ``window_s`` is quarantined (it gets no more events) while the others keep trading.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import msgspec
import pydantic
from loguru import logger

from runtime.core.errors import ConfigError, PluginError, StrategyError
from runtime.core.events import BookTicker, Trade
from runtime.core.orders import Fill, OrderIntent
from runtime.core.subscriptions import Subscription
from runtime.sdk import (
    ENTRY_POINT_GROUP,
    INTERFACE_VERSION,
    OPTIONAL_HOOKS,
    REQUIRED_HOOK,
    Intents,
    Strategy,
    StrategyConfig,
    StrategyContext,
)

# --- discovery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    """A strategy class that passed every check, and where it came from."""

    name: str
    strategy_class: type[Strategy[Any]]
    source: str

    @property
    def version(self) -> str:
        return self.strategy_class.version

    def config_schema(self) -> dict[str, Any]:
        return self.strategy_class.config_class.model_json_schema()


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that was skipped, and why."""

    name: str
    source: str
    reason: str


@dataclass
class PluginRegistry:
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def get(self, name: str) -> PluginInfo:
        """The plugin called ``name``; PluginError saying why if there is none."""
        if name in self.plugins:
            return self.plugins[name]
        reasons = [f.reason for f in self.failures if f.name == name]
        if reasons:
            raise PluginError(f"strategy plugin {name!r} could not be loaded: {reasons[0]}")
        known = ", ".join(sorted(self.plugins)) or "none"
        raise PluginError(f"no strategy plugin named {name!r} (installed: {known})")


def check_strategy_class(candidate: object) -> type[Strategy[Any]]:
    """``candidate`` if it honours the plugin contract; PluginError naming the breach if not."""
    if not (isinstance(candidate, type) and issubclass(candidate, Strategy)):
        raise PluginError(f"{candidate!r} is not a subclass of runtime.engine.plugins.Strategy")
    if inspect.isabstract(candidate):
        missing = ", ".join(sorted(getattr(candidate, "__abstractmethods__", ())))
        raise PluginError(f"{candidate.__qualname__} does not implement {missing}")
    if candidate.interface_version != INTERFACE_VERSION:
        raise PluginError(
            f"{candidate.__qualname__} targets plugin interface "
            f"{candidate.interface_version}; this engine speaks {INTERFACE_VERSION}"
        )
    config_class = getattr(candidate, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, StrategyConfig)):
        raise PluginError(f"{candidate.__qualname__}.config_class must subclass StrategyConfig")
    if not config_class.model_config.get("frozen"):
        raise PluginError(f"{config_class.__qualname__} must be frozen")
    for hook in OPTIONAL_HOOKS:
        _check_hook_signature(candidate, hook)
    return candidate


def _check_hook_signature(cls: type[Strategy[Any]], hook: str) -> None:
    implementation = getattr(cls, hook)
    if implementation is getattr(Strategy, hook):
        return
    if not callable(implementation):
        raise PluginError(f"{cls.__qualname__}.{hook} is not a method")
    params = inspect.signature(implementation).parameters.values()
    expected = inspect.signature(getattr(Strategy, hook)).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise PluginError(f"{cls.__qualname__}.{hook} must accept **kwargs")
    required = [p for p in params if p.kind in positional and p.default is p.empty]
    wanted = [p for p in expected if p.kind in positional]
    if len(required) != len(wanted):
        names = ", ".join(p.name for p in wanted)
        raise PluginError(f"{cls.__qualname__}.{hook} must take ({names}, **kwargs)")


def _entry_point_source(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return f"{where} ({entry_point.value})"


def discover(
    group: str = ENTRY_POINT_GROUP,
    *,
    blocked: Iterable[str] = (),
    entry_points: Iterable[metadata.EntryPoint] | None = None,
) -> PluginRegistry:
    """Load every strategy declared in ``group``; broken ones become failures, not crashes.

    Blocked names are skipped, and so is a second plugin claiming a name already taken.
    """
    registry = PluginRegistry()
    blocked_names = set(blocked)
    found = entry_points if entry_points is not None else metadata.entry_points(group=group)
    for entry_point in found:
        source = _entry_point_source(entry_point)
        reason = _skip_reason(entry_point.name, blocked_names, registry)
        if reason is None:
            try:
                strategy_class = check_strategy_class(entry_point.load())
            except Exception as exc:  # a plugin's import may raise anything
                reason = f"{type(exc).__name__}: {exc}"
            else:
                registry.plugins[entry_point.name] = PluginInfo(
                    entry_point.name, strategy_class, source
                )
                continue
        registry.failures.append(PluginFailure(entry_point.name, source, reason))
        logger.bind(plugin=entry_point.name, source=source).warning(
            f"strategy plugin {entry_point.name!r} skipped: {reason}"
        )
    return registry


def _skip_reason(name: str, blocked: set[str], registry: PluginRegistry) -> str | None:
    if name in blocked:
        return "blocked by configuration"
    if name in registry.plugins:
        return f"name already taken by {registry.plugins[name].source}"
    return None


def load_by_path(reference: str) -> PluginInfo:
    """A strategy named by ``"package.module:Class"`` instead of an entry point."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"{reference!r} is not of the form 'package.module:Class'")
    try:
        candidate = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot load strategy {reference!r}: {exc}") from exc
    return PluginInfo(reference, check_strategy_class(candidate), reference)


# --- configuration ---------------------------------------------------------------------------


def config_errors(config_class: type[StrategyConfig], raw: Mapping[str, Any]) -> list[str]:
    """Every problem with ``raw`` as ``config_class``, each naming its field; [] if valid."""
    try:
        config_class.model_validate(raw)
    except pydantic.ValidationError as exc:
        return format_validation_errors(exc)
    return []


def format_validation_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[str]:
    """pydantic's errors as ``field.path: message`` lines."""
    lines = []
    head = prefix.split(".") if prefix else []
    for error in exc.errors():
        path = ".".join([*head, *(str(part) for part in error["loc"])])
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {message}" if path else message)
    return lines


def build_strategy(
    info: PluginInfo, raw_config: Mapping[str, Any], context: StrategyContext, prefix: str = ""
) -> Strategy[Any]:
    """Validate ``raw_config`` and instantiate the plugin; ConfigError naming every bad field."""
    try:
        config = info.strategy_class.config_class.model_validate(raw_config)
    except pydantic.ValidationError as exc:
        where = prefix or info.name
        raise ConfigError("; ".join(format_validation_errors(exc, where))) from exc
    return info.strategy_class(config, context)


# --- isolation -------------------------------------------------------------------------------


class HookTracker:
    """Which strategy is inside a hook right now, for the loop watchdog to name a blocker."""

    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running: str | None = None


class SafeStrategy:
    """Calls one plugin's hooks; see the module docstring for what happens when they fail."""

    def __init__(
        self,
        strategy: Strategy[Any],
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        tracker: HookTracker | None = None,
        on_quarantine: Callable[[SafeStrategy], None] | None = None,
    ) -> None:
        self.strategy = strategy
        self.name = strategy.fleet_id
        self.quarantined = False
        self.quarantines = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.last_error: StrategyError | None = None
        self._failures: collections.deque[float] = collections.deque(maxlen=max_failures)
        self._window_s = window_s
        self._clock = clock
        self._tracker = tracker if tracker is not None else HookTracker()
        self._on_quarantine = on_quarantine
        self._logged: collections.Counter[str] = collections.Counter()
        cls = type(strategy)
        self.wants = {
            hook: getattr(cls, hook) is not getattr(Strategy, hook) for hook in OPTIONAL_HOOKS
        }
        self._on_book = strategy.on_book
        self._on_trade = strategy.on_trade
        self._on_fill = strategy.on_fill
        self._on_timer = strategy.on_timer

    def subscriptions(self) -> list[Subscription]:
        try:
            subscriptions = list(self.strategy.subscriptions())
        except Exception as exc:
            self._fail(REQUIRED_HOOK, exc)
            return []
        if not all(isinstance(s, Subscription) for s in subscriptions):
            self._fail(REQUIRED_HOOK, TypeError("subscriptions() must return Subscription items"))
            return []
        return subscriptions

    def on_book(self, top: BookTicker) -> Intents | None:
        return self._call("on_book", self._on_book, top)

    def on_trade(self, trade: Trade) -> Intents | None:
        return self._call("on_trade", self._on_trade, trade)

    def on_fill(self, fill: Fill) -> Intents | None:
        return self._call("on_fill", self._on_fill, fill)

    def on_timer(self, now_ns: int) -> Intents | None:
        return self._call("on_timer", self._on_timer, now_ns)

    def on_start(self) -> None:
        self._call_no_result("on_start", self.strategy.on_start)

    def on_stop(self) -> None:
        self._call_no_result("on_stop", self.strategy.on_stop)

    def save_state(self) -> dict[str, Any] | None:
        """The plugin's state to snapshot, checked to encode as JSON; None if it keeps none."""
        if not self.wants["on_save_state"]:
            return None
        try:
            state = self.strategy.on_save_state()
            if state is not None and not isinstance(state, dict):
                raise TypeError(f"returned {type(state).__name__}, not a dict")
            msgspec.json.encode(state)
        except Exception as exc:
            self._fail("on_save_state", exc)
            return None
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        if self.wants["on_restore_state"]:
            self._call("on_restore_state", self.strategy.on_restore_state, state)

    def _call(self, hook: str, method: Callable[[Any], Any], argument: object) -> Intents | None:
        tracker = self._tracker
        tracker.running = self.name
        try:
            intents = method(argument)
        except Exception as exc:
            self._fail(hook, exc)
            return None
        finally:
            tracker.running = None
        if intents is None:
            return None
        return self._checked(hook, intents)

    def _call_no_result(self, hook: str, method: Callable[[], object]) -> None:
        tracker = self._tracker
        tracker.running = self.name
        try:
            method()
        except Exception as exc:
            self._fail(hook, exc)
        finally:
            tracker.running = None

    def _checked(self, hook: str, intents: object) -> Intents | None:
        if type(intents) is not list:
            self._fail(hook, TypeError(f"returned {type(intents).__name__}, not a list"))
            return None
        for intent in intents:
            if type(intent) is not OrderIntent:
                self._fail(hook, TypeError(f"returned a {type(intent).__name__} among intents"))
                return None
            if intent.strategy != self.name:
                self._fail(hook, ValueError(f"returned an intent of {intent.strategy!r}"))
                return None
        return intents

    def _fail(self, hook: str, exc: BaseException) -> None:
        error = StrategyError(self.name, hook, f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self.errors[hook] += 1
        self.last_error = error
        self._log(hook, error, exc)
        now = self._clock()
        self._failures.append(now)
        full = len(self._failures) == self._failures.maxlen
        if full and now - self._failures[0] <= self._window_s and not self.quarantined:
            self.quarantine(f"{len(self._failures)} failures within {self._window_s:g}s")

    def _log(self, hook: str, error: StrategyError, exc: BaseException) -> None:
        # The first few tracebacks per hook are worth reading; the hundredth is not.
        self._logged[hook] += 1
        if self._logged[hook] <= 3:
            logger.bind(strategy=self.name, hook=hook).opt(exception=exc).error(str(error))

    def quarantine(self, reason: str) -> None:
        """Stop sending this plugin events; the rest of the engine carries on."""
        self.quarantined = True
        self.quarantines += 1
        logger.bind(strategy=self.name).error(f"strategy {self.name!r} quarantined: {reason}")
        if self._on_quarantine is not None:
            self._on_quarantine(self)
        self.on_stop()

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def deliver_book(
    subscribers: Sequence[SafeStrategy],
    top: BookTicker,
    submit: Callable[[SafeStrategy, Intents, int], None],
) -> None:
    """Hand ``top`` to each subscriber's on_book, and its intents (with the time the top
    arrived) to ``submit``.

    This is ``SafeStrategy._call`` unrolled over the subscribers, because it runs for every top
    update: one Python call per update instead of two per subscriber.
    """
    tracker = subscribers[0]._tracker  # the engine gives every wrapper the same tracker
    for safe in subscribers:
        tracker.running = safe.name
        try:
            intents = safe._on_book(top)
        except Exception as exc:
            safe._fail("on_book", exc)
            continue
        if intents is not None:
            checked = safe._checked("on_book", intents)
            if checked:
                submit(safe, checked, top.local_ts_ns)
    tracker.running = None
