"""Checkov policies for the Hetzner Cloud and Vault resources of infra/terraform.

Checkov ships no policy for the hcloud, nomad, consul or vault providers, so without these it
checks nothing here. Loaded with ``checkov --external-checks-dir infra/terraform/policies``
(tests/infra/test_terraform_security.py). Checkov passes attribute values wrapped in lists; a
value it could not resolve (a dynamic block over a local, say) stays an expression string, so
what only variables decide is enforced by the modules' variable validations instead.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

ANYWHERE = {"0.0.0.0/0", "::/0"}


def _values(conf: dict[str, Any], key: str) -> list[Any]:
    """Every scalar of an attribute, however deeply checkov nested it in lists."""

    def flat(value: Any) -> list[Any]:
        return [x for v in value for x in flat(v)] if isinstance(value, list) else [value]

    return flat(conf.get(key, []))


class _Check(BaseResourceCheck):
    def __init__(self, check_id: str, name: str, resource: str, category: CheckCategories):
        super().__init__(name, check_id, [category], [resource])


class FirewallNotOpenToTheInternet(_Check):
    def __init__(self) -> None:
        super().__init__(
            "CKV_ARBFLEET_1",
            "Hetzner firewall admits no inbound traffic from anywhere (0.0.0.0/0, ::/0)",
            "hcloud_firewall",
            CheckCategories.NETWORKING,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        for rule in conf.get("rule", []):
            if "in" in _values(rule, "direction") and ANYWHERE & set(_values(rule, "source_ips")):
                return CheckResult.FAILED
        return CheckResult.PASSED


class ServerBehindFirewall(_Check):
    def __init__(self) -> None:
        super().__init__(
            "CKV_ARBFLEET_2",
            "Hetzner server is attached to a firewall (else every listening port is public)",
            "hcloud_server",
            CheckCategories.NETWORKING,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.PASSED if _values(conf, "firewall_ids") else CheckResult.FAILED


class VolumeDeleteProtection(_Check):
    def __init__(self) -> None:
        super().__init__(
            "CKV_ARBFLEET_3",
            "Hetzner volume (database, backups) is protected from deletion",
            "hcloud_volume",
            CheckCategories.BACKUP_AND_RECOVERY,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        protected = _values(conf, "delete_protection") == [True]
        return CheckResult.PASSED if protected else CheckResult.FAILED


checks = [
    FirewallNotOpenToTheInternet(),
    ServerBehindFirewall(),
    VolumeDeleteProtection(),
]
