"""The one description of the fleet (``fleet.toml``): environments, engine deployments, their
strategies, venues and exchange accounts. Everything else is derived from it at run time:

    the Nomad engine job of a deployment   <strategy>-<name> (underscores become dashes), run
                                           from engine.nomad.hcl with the deployment's variables
    its secrets-store policy and JWT role  arbfleet-deployment-<job>, arbfleet-<job>
    its Consul ACL policy and role         arbfleet-engine-<job>

``load`` validates the file with pydantic; a bad file is a ``FleetError`` naming the field
(``fleet.toml: deployment[1].mode: ...``). Paths in the file (the job specs, the monitoring
configs) are relative to the file itself, so the operator commands read what the description
names and nothing of the package's own location.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from runtime.core.errors import ConfigError

FLEET_ENV = "ARBFLEET_FLEET"
"""Where the description is when no ``--fleet`` is given (default: ``./fleet.toml``)."""

# The engine job spec's own rules (infra/nomad/engine.nomad.hcl), checked here so a bad fleet
# fails at load, naming the field, not at `nomad job run`.
Strategy = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,15}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,14}$")]
Text = Annotated[str, StringConstraints(min_length=1)]
Account = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^_]")]


class FleetError(ConfigError):
    """A fleet description that cannot be deployed; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SecretsStore(_Strict):
    """Where an environment's secrets store differs from the layout's defaults
    (runtime/platform/vault.py ``Layout``): another mount or role name, other TTLs."""

    kv_mount: Text | None = None
    max_versions: int | None = None
    cas_required: bool | None = None
    jwt_auth_mount: Text | None = None
    jwt_audience: Text | None = None
    rotation_job: Text | None = None
    db_mount: Text | None = None
    db_connection: Text | None = None
    db_role: Text | None = None
    db_default_ttl: Text | None = None
    db_max_ttl: Text | None = None
    prefix: Text | None = None
    """Of policy and role names (``arbfleet``): two environments can share one store."""


class Environment(_Strict):
    """Where a set of deployments runs, and what its platform has switched on."""

    secrets: SecretsStore = Field(default_factory=SecretsStore)
    consul_acls: bool = False
    """Consul has ACLs on: each deployment gets its own Consul policy and role."""
    namespaces: dict[Text, Text] = Field(default_factory=dict)
    """Nomad namespaces to create, name -> description."""


class Deployment(_Strict):
    """One engine deployment: a strategy trading some venues, in one environment."""

    env: Text
    strategy: Strategy
    name: Name
    mode: Literal["paper", "live"]
    venues: Annotated[list[Text], Field(min_length=1)]
    accounts: dict[str, Account] = Field(default_factory=dict)
    """venue -> exchange account; a live deployment needs one per venue."""
    exchange_datacenter: Text | None = None
    engine_config: Text
    """The engine's TOML config (strategies, venues, risk limits)."""

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if len(set(self.venues)) != len(self.venues):
            raise ValueError("venues: lists a venue twice")
        for venue in self.accounts:
            if venue not in self.venues:
                raise ValueError(f"accounts.{venue}: not one of the deployment's venues")
        if self.mode == "live" and not self.accounts:
            raise ValueError("accounts: a live deployment needs an account per venue")
        return self

    @property
    def job(self) -> str:
        """The Nomad job id, as engine.nomad.hcl names it."""
        return f"{self.strategy.replace('_', '-')}-{self.name}"

    def variables(self) -> dict[str, Any]:
        """The engine job's variables that say what this deployment trades."""
        values: dict[str, Any] = {
            "strategy": self.strategy,
            "deployment": self.name,
            "mode": self.mode,
            "venues": list(self.venues),
            "engine_config": self.engine_config,
        }
        if self.accounts:  # the job spec's default is none
            values["accounts"] = dict(self.accounts)
        if self.exchange_datacenter is not None:
            values["exchange_datacenter"] = self.exchange_datacenter
        return values


class Fleet(_Strict):
    """The whole description; ``source`` is the file it came from (paths are relative to it)."""

    nomad_dir: Text = "infra/nomad"
    """Job specs (``<job>.nomad.hcl``) and their vars per environment (``vars/<env>/``)."""
    monitoring_dir: Text = "monitoring"
    environments: dict[Text, Environment]
    deployment: list[Deployment] = Field(default_factory=list)
    source: Path = Field(default=Path("fleet.toml"), exclude=True)

    @model_validator(mode="after")
    def _known_and_unique(self) -> Fleet:
        seen: set[tuple[str, str]] = set()
        for i, d in enumerate(self.deployment):
            if d.env not in self.environments:
                known = ", ".join(sorted(self.environments))
                raise ValueError(f"deployment[{i}].env: {d.env!r} is not one of {known}")
            if (d.env, d.job) in seen:
                raise ValueError(f"deployment[{i}].name: job {d.job} twice in {d.env}")
            seen.add((d.env, d.job))
        return self

    @property
    def root(self) -> Path:
        return self.source.parent

    @property
    def nomad_path(self) -> Path:
        return self.root / self.nomad_dir

    @property
    def monitoring_path(self) -> Path:
        return self.root / self.monitoring_dir

    def deployments(self, env: str | None = None) -> list[Deployment]:
        """The deployments of ``env`` (every environment's with None)."""
        return [d for d in self.deployment if env is None or d.env == env]

    def deployment_of(self, env: str, job: str) -> Deployment | None:
        return next((d for d in self.deployments(env) if d.job == job), None)

    def accounts(self, env: str | None = None) -> dict[str, dict[str, str]]:
        """Deployment (job) -> {venue: account}: what the secrets-store layout grants."""
        return {d.job: dict(d.accounts) for d in self.deployments(env)}

    def environment(self, env: str) -> Environment:
        if env not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise FleetError(f"{self.source}: unknown environment {env!r}: one of {known}")
        return self.environments[env]


def _field(location: tuple[int | str, ...]) -> str:
    """``deployment[1].mode`` from pydantic's ``("deployment", 1, "mode")``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith(("function-after", "literal[", "constrained-str")):
            text += f".{part}" if text else part
    return text


def parse(text: str, source: Path | str = "fleet") -> Fleet:
    """The fleet ``text`` describes; FleetError naming the field if it cannot be deployed."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{source}: not TOML: {exc}") from None
    try:
        return Fleet.model_validate({**data, "source": Path(source)})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _field(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "missing"
        elif error["type"] == "string_pattern_mismatch":
            message = f"{error['input']!r} must match {error['ctx']['pattern']}"
        elif error["type"] == "value_error":  # ours: "<field>: <why>", relative to `where`
            field, _, message = message.partition(": ")
            where = f"{where}.{field}" if where else field
        raise FleetError(f"{source}: {where}: {message}") from None


def load(path: Path | None = None) -> Fleet:
    """The description at ``path``, else ``$ARBFLEET_FLEET``, else ``./fleet.toml``."""
    path = path or Path(os.environ.get(FLEET_ENV) or "fleet.toml")
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetError(
            f"no fleet description at {path} ({exc.strerror}): pass --fleet or set {FLEET_ENV}"
        ) from None
    return parse(text, path.resolve())


@functools.cache
def default() -> Fleet:
    """The description the commands use without ``--fleet`` (read once per process)."""
    return load()
