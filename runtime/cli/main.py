"""The ``arbfleet`` command: each subcommand is registered by one small ``add_*`` function.

A registrar adds its parser and sets ``handler`` with ``set_defaults``; a new subcommand is a new
function and one entry in ``REGISTRARS``, so commands added by different people do not collide.
The engine's commands import the engine inside their handlers, so ``arbfleet toolchain`` and
``arbfleet dev`` start without loading it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from runtime import __version__
from runtime.core.errors import ArbfleetError, ConfigError, NoDevToolingError, developer_tooling
from runtime.core.logging import configure
from runtime.engine.plugins import PluginInfo, config_errors, discover
from runtime.ops.db import add_db
from runtime.ops.deploy import add_deploy, add_status
from runtime.ops.halt import add_halt, add_resume
from runtime.ops.node_keys import add_cluster
from runtime.ops.platform.cli import add_platform
from runtime.ops.secrets import add_secrets

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the engine with a config file")
    parser.add_argument("--config", type=Path, help="TOML config (defaults apply without one)")
    parser.add_argument("--log-level", help="override the config's log level")
    parser.add_argument(
        "--replay",
        type=Path,
        help="play a file instead of websockets (.gz ok): lines recorded with --record, or raw "
        "venue frames with --replay-venue",
    )
    parser.add_argument(
        "--replay-venue",
        help="the --replay file holds raw frames of this venue, one a line as the venue sent them",
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="replay pace: 1 = as recorded (default: as fast as possible; paper fills "
        "use wall-clock latency, so they are faithful only near 1)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from runtime.config import load_config
    from runtime.node import Node, serve

    _check_replay_args(args)
    config = load_config(args.config)
    configure(args.log_level or config.log_level)
    node = Node(config)
    engine = node.engine
    if args.replay_venue is not None and args.replay_venue not in engine.parsers:
        raise ConfigError(
            f"--replay-venue: no strategy listens to {args.replay_venue!r} "
            f"(venues in use: {', '.join(sorted(engine.parsers))})"
        )
    asyncio.run(serve(node, args.replay, args.speed, args.replay_venue))
    if args.replay is not None:
        from runtime.engine.report import render
        from runtime.venues.replay import usable_formats

        summary = engine.summary()
        print(render(summary, engine))
        if summary.frames_used == 0:  # the wrong format, or a file of garbage: say so
            raise ConfigError(usable_formats(args.replay, args.replay_venue))
    return 0


def _check_replay_args(args: argparse.Namespace) -> None:
    if args.replay is not None and not args.replay.is_file():
        raise ConfigError(f"--replay: no such file {args.replay}")
    if args.replay_venue is not None and args.replay is None:
        raise ConfigError("--replay-venue says what a --replay file holds: give --replay too")
    if args.replay_venue is not None and args.speed is not None:
        raise ConfigError("--speed: raw frames carry no times to pace them by")


def add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="simulator + engine + the shipped strategies, paper trading, in-process"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--log-level", default="WARNING", help="logs go to stderr (default WARNING)"
    )
    parser.add_argument("--record", type=Path, help="also write every frame to this replay file")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    with developer_tooling():
        from runtime.devstack.demo import run_demo

    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be positive")
    configure(args.log_level, stream=sys.stderr)
    asyncio.run(run_demo(args.duration, record=args.record))
    return 0


def add_simulator(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "simulator", help="the exchange simulator (Binance and Upbit) until interrupted"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=18900, help="default 18900: where the local engines trade"
    )
    parser.set_defaults(handler=_simulator)


def _simulator(args: argparse.Namespace) -> int:
    with developer_tooling():
        from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig

    async def serve() -> None:
        simulator = ExchangeSimulator(SimulatorConfig(host=args.host, port=args.port))
        await simulator.start()
        print(f"exchange simulator on {args.host}:{simulator.port}; Ctrl-C stops it", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def add_strategies(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("strategies", help="installed strategy plugins")
    commands = parser.add_subparsers(dest="strategies_command", required=True)
    listing = commands.add_parser("list", help="name, version and config schema of each plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_strategies_list)
    check = commands.add_parser("check", help="validate a strategy config file")
    check.add_argument("name", help="plugin name, as in 'arbfleet strategies list'")
    check.add_argument("--config", type=Path, required=True, help="TOML file")
    check.set_defaults(handler=_strategies_check)


def _strategies_list(args: argparse.Namespace) -> int:
    registry = discover()
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": {
                        name: {
                            "version": info.version,
                            "source": info.source,
                            "config_schema": info.config_schema(),
                        }
                        for name, info in sorted(registry.plugins.items())
                    },
                    "failures": [vars(failure) for failure in registry.failures],
                },
                indent=2,
            )
        )
        return 0
    for name, info in sorted(registry.plugins.items()):
        print(f"{name} {info.version}  ({info.source})")
        for line in _schema_lines(info):
            print(f"    {line}")
    for failure in registry.failures:
        print(f"{failure.name}: NOT LOADED ({failure.source}): {failure.reason}")
    return 0 if not registry.failures else 1


def _schema_lines(info: PluginInfo) -> list[str]:
    schema = info.config_schema()
    lines = []
    for field_name, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or " | ".join(
            str(s.get("type", "?")) for s in spec.get("anyOf", [])
        )
        default = json.dumps(spec["default"]) if "default" in spec else "required"
        bounds = "".join(
            f" {symbol}{spec[key]}"
            for key, symbol in (
                ("exclusiveMinimum", ">"),
                ("minimum", ">="),
                ("exclusiveMaximum", "<"),
                ("maximum", "<="),
            )
            if key in spec
        )
        lines.append(f"{field_name:<20} {kind:<16} default {default}{bounds}")
    return lines


def _strategies_check(args: argparse.Namespace) -> int:
    info = discover().get(args.name)
    try:
        document = tomllib.loads(args.config.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {args.config}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{args.config} is not valid TOML: {exc}") from exc
    problems = []
    for where, table in _config_tables(document, args.name):
        problems += [
            f"{where}{line}" for line in config_errors(info.strategy_class.config_class, table)
        ]
    if problems:
        print(f"{args.config}: {len(problems)} problem(s) with {args.name} config:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"{args.config}: {args.name} config is valid")
    return 0


def _config_tables(document: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """The strategy config tables in a file: an engine config's entries, or the file itself."""
    if "strategies" not in document:
        return [("", document)]
    entries = [
        (f"strategies.{index}.config.", entry.get("config", {}))
        for index, entry in enumerate(document["strategies"])
        if isinstance(entry, dict) and entry.get("plugin") == name
    ]
    if not entries:
        raise ConfigError(f"no [[strategies]] entry with plugin = {name!r}")
    return entries


def add_developer_tooling(subparsers: Subparsers) -> None:
    """``arbfleet toolchain`` and ``arbfleet dev``, from runtime/devstack: in a checkout only. An
    install without it (the wheel, the engine image) keeps the names and says why they fail."""
    try:
        with developer_tooling():
            from runtime.devstack.cli import add_dev, add_toolchain
    except NoDevToolingError as exc:
        missing = exc
        for name in ("toolchain", "dev"):
            parser = subparsers.add_parser(name, help="developer tooling: not in this install")
            parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            parser.set_defaults(handler=lambda _args: _raise(missing))
        return
    add_toolchain(subparsers)
    add_dev(subparsers)


def _raise(error: Exception) -> int:
    raise error


REGISTRARS: tuple[Callable[[Subparsers], None], ...] = (
    add_run,
    add_demo,
    add_simulator,
    add_strategies,
    add_developer_tooling,
    add_cluster,
    add_db,
    add_secrets,
    add_platform,
    add_deploy,
    add_status,
    add_halt,
    add_resume,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arbfleet", description="Run a fleet of crypto-arbitrage strategies."
    )
    parser.add_argument("--version", action="version", version=f"arbfleet {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ArbfleetError as exc:
        parser.exit(2, f"arbfleet: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
