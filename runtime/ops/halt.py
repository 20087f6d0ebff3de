"""``arbfleet halt`` and ``arbfleet resume``: the cluster-wide kill switch in Consul KV."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from runtime.core.errors import ArbfleetError
from runtime.platform.consul import (
    DEFAULT_ADDRESS,
    ConsulApi,
    ConsulConfig,
    describe_kill_switch,
    now_iso,
)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--consul",
        default=os.environ.get("CONSUL_HTTP_ADDR", DEFAULT_ADDRESS),
        help="Consul address (default: $CONSUL_HTTP_ADDR, else the local agent)",
    )
    default_key = ConsulConfig.model_fields["kill_switch_key"].default  # the engines' own
    parser.add_argument("--key", default=default_key, help="the kill switch's KV key")


def add_halt(subparsers: Any) -> None:
    parser = subparsers.add_parser("halt", help="engage the cluster-wide kill switch (Consul KV)")
    parser.add_argument("--reason", required=True, help="why: shown in every engine's health")
    parser.add_argument("--who", default=f"{getpass.getuser()}@{socket.gethostname()}")
    _add_target(parser)
    parser.set_defaults(handler=_halt)


def add_resume(subparsers: Any) -> None:
    parser = subparsers.add_parser("resume", help="release the cluster-wide kill switch")
    _add_target(parser)
    parser.set_defaults(handler=_resume)


async def _with_api(address: str, action: Callable[[ConsulApi], Awaitable[None]]) -> None:
    token = os.environ.get("CONSUL_HTTP_TOKEN")  # the consul CLI's variable
    async with aiohttp.ClientSession() as http:
        try:
            await action(ConsulApi(address, http, token))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ArbfleetError(f"consul at {address} unreachable: {exc!r}") from exc


def _halt(args: argparse.Namespace) -> int:
    value = json.dumps({"reason": args.reason, "who": args.who, "when": now_iso()})

    async def put(api: ConsulApi) -> None:
        await api.put_kv(args.key, value)

    asyncio.run(_with_api(args.consul, put))
    print(f"kill switch engaged at {args.consul} {args.key}: {describe_kill_switch(value)}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    async def delete(api: ConsulApi) -> None:
        await api.delete_kv(args.key)

    asyncio.run(_with_api(args.consul, delete))
    print(f"kill switch released at {args.consul} {args.key}")
    return 0
