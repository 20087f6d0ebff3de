"""The ``arbfleet`` command: each subcommand is registered by one small ``add_*`` function."""

from __future__ import annotations

import argparse
import time

from runtime.devstack.cli import add_dev, add_toolchain
from runtime.errors import ArbfleetError


def add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="the engine on embedded defaults (paper mode)")
    parser.add_argument("--duration", type=float, default=None, help="seconds; default: Ctrl-C")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    # Placeholder until the runtime issue lands: proves the entry point and exits cleanly.
    print("arbfleet demo: engine not built yet (runtime issue); nothing to trade")
    if args.duration:
        time.sleep(min(args.duration, 1.0))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arbfleet", description=__doc__)
    subparsers = parser.add_subparsers(required=True)
    for add in (add_demo, add_toolchain, add_dev):
        add(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ArbfleetError as exc:
        parser.exit(2, f"arbfleet: {exc}\n")
