"""``arbfleet secrets apply | rotate | status``: the Vault layout and exchange key rotation.

Vault is ``$VAULT_ADDR`` (default the local stack's) with the token in ``$VAULT_TOKEN`` or the
file ``$ARBFLEET_VAULT_TOKEN_FILE`` (the local stack's root token file, or a Nomad task's
``secrets/vault_token``). Engines to confirm with are Consul's ``arbfleet-engine`` instances at
``$CONSUL_HTTP_ADDR``, or the health URLs given with ``--engine``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from runtime.core.errors import ConfigError, developer_tooling

if TYPE_CHECKING:
    from runtime.devstack.stack import Endpoints
    from runtime.ops.rotation import Rotation, VenueKeyManager
    from runtime.platform.vault import ExchangeKeys, VaultSession

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
OPERATOR_ACTION_EXIT = 3


def add_secrets(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("secrets", help="Vault layout and exchange key rotation")
    commands = parser.add_subparsers(dest="secrets_command", required=True)
    apply = commands.add_parser(
        "apply", help="the secrets-store layout of an environment of the fleet description"
    )
    apply.add_argument("--env", default="local", help="default: local")
    apply.add_argument(
        "--fleet",
        type=Path,
        help="the fleet description (default: $ARBFLEET_FLEET or ./fleet.toml)",
    )
    apply.add_argument(
        "--database-admin-dsn-file", type=Path,
        help="also configure the database secrets engine with this admin DSN",
    )  # fmt: skip
    apply.set_defaults(handler=_apply)
    rotate = commands.add_parser("rotate", help="rotate an account's key (dual-key overlap)")
    _account_arguments(rotate)
    rotate.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="HEALTH_URL",
        help="an engine's /health URL (repeat); default: Consul's engines",
    )
    rotate.add_argument("--confirm-timeout", type=float, default=60.0, metavar="SECONDS")
    rotate.add_argument(
        "--new-key-file",
        type=Path,
        help="venue without a key API: JSON {api_key, api_secret} made by hand",
    )
    rotate.add_argument(
        "--old-key-revoked",
        action="store_true",
        help="the operator revoked the old key by hand: finish the rotation",
    )
    rotate.set_defaults(handler=_rotate)
    status = commands.add_parser("status", help="an account's key versions and rotation state")
    _account_arguments(status)
    status.set_defaults(handler=_status)


def _account_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("venue")
    parser.add_argument("account")
    parser.add_argument("--mount", help="KV mount (default: the layout's, exchanges)")


def _session() -> VaultSession:
    from runtime.platform.vault import VaultSession

    address = os.environ.get("VAULT_ADDR") or _local_stack().vault
    token = os.environ.get("VAULT_TOKEN")
    if token:
        return VaultSession(address, token=token)
    token_file = Path(
        os.environ.get("ARBFLEET_VAULT_TOKEN_FILE") or _local_stack().vault_token_file
    )
    if not token_file.is_file():
        raise ConfigError("no Vault token: set VAULT_TOKEN or ARBFLEET_VAULT_TOKEN_FILE")
    return VaultSession(address, token_file=token_file)


def _local_stack() -> Endpoints:
    """The local stack's Vault, where the environment names none: a checkout's developer tooling
    (the engine image's tasks, such as key rotation, get VAULT_ADDR and VAULT_TOKEN from Nomad)."""
    with developer_tooling():
        from runtime.devstack.stack import endpoints
    return endpoints()


def _exchange_keys(args: argparse.Namespace) -> ExchangeKeys:
    from runtime.platform.vault import ExchangeKeys, Layout

    return ExchangeKeys(_session(), args.mount or Layout.load().kv_mount)


def _apply(args: argparse.Namespace) -> int:
    from runtime.ops import fleet
    from runtime.ops.platform.cli import apply_layout, layout_for

    layout = layout_for(fleet.load(args.fleet), args.env)
    session = _session()
    session.call("apply layout", lambda client: apply_layout(client, layout))
    if args.database_admin_dsn_file is not None:
        from runtime.platform.dbcreds import apply_database, bootstrap_roles

        dsn = args.database_admin_dsn_file.read_text().strip()
        password = asyncio.run(bootstrap_roles(dsn))
        session.call("apply database", lambda client: apply_database(client, layout, dsn, password))
    print(f"applied: mount {layout.kv_mount}/, {len(layout.deployments)} deployment policies")
    return 0


def _venue_keys(args: argparse.Namespace, kv: ExchangeKeys) -> VenueKeyManager:
    """The key file an operator made by hand, else the venue's API from its KV entry."""
    from runtime.core.venue import Credentials
    from runtime.ops.rotation import KeyManagementApi, OperatorKeys
    from runtime.platform.vault import MANAGEMENT_ENTRY

    if args.new_key_file is not None:
        document = json.loads(args.new_key_file.read_text())
        return OperatorKeys(Credentials(document["api_key"], document["api_secret"]))
    path = f"{args.venue}/{MANAGEMENT_ENTRY}"
    entry = kv.session.call(
        f"key API of {args.venue} ({kv.mount}/{path})",
        lambda c: c.secrets.kv.v2.read_secret_version(path, mount_point=kv.mount),
    )["data"]["data"]
    return KeyManagementApi(entry["api_url"], entry["token"])


def rotation_for(args: argparse.Namespace) -> Rotation:
    from runtime.ops.rotation import ConsulEngines, Rotation, RotationSettings, StaticEngines

    kv = _exchange_keys(args)
    consul = os.environ.get("CONSUL_HTTP_ADDR", "http://127.0.0.1:8500")
    engines = StaticEngines(tuple(args.engine)) if args.engine else ConsulEngines(consul)
    settings = RotationSettings(confirm_timeout_s=args.confirm_timeout)
    return Rotation(kv, _venue_keys(args, kv), engines, args.venue, args.account, settings)


def _rotate(args: argparse.Namespace) -> int:
    from runtime.core.logging import configure

    configure("INFO")
    rotation = rotation_for(args)
    if args.old_key_revoked:
        asyncio.run(rotation.operator_revoked())
        print(f"{args.venue}/{args.account}: rotation complete")
        return 0
    report = asyncio.run(rotation.rotate())
    if report.operator_action:
        print(f"{args.venue}/{args.account}: ACTION REQUIRED: {report.operator_action}")
        return OPERATOR_ACTION_EXIT
    how = "resumed and finished" if report.resumed else "rotated"
    print(
        f"{args.venue}/{args.account}: {how}: version {report.old_version} -> "
        f"{report.new_version}, old key revoked"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    kv = _exchange_keys(args)
    metadata = kv.metadata(args.venue, args.account)
    print(json.dumps({
        "current_version": metadata.current_version,
        "live_versions": list(metadata.live_versions),
        "custom_metadata": dict(metadata.custom),
    }, indent=2))  # fmt: skip
    return 0
