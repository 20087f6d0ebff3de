"""The local stack is the real thing: Nomad schedules, Consul checks, OpenBao serves secrets to
Nomad tasks (each job only its own), and Terraform applies offline against Nomad."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import nomad
import pytest

from tests.stack_plugin import Consul, Terraform, vault_stanza, wait_for

pytestmark = pytest.mark.stack

WEB_JOB = """
job "{name}" {{
  datacenters = ["*"]
  type        = "service"
  group "web" {{
    network {{
      port "http" {{}}
    }}
    service {{
      name     = "{name}"
      port     = "http"
      provider = "consul"
      check {{
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }}
    }}
    task "server" {{
      driver = "raw_exec"
      config {{
        command = "{python}"
        args    = ["-m", "http.server", "${{NOMAD_PORT_http}}", "--bind", "127.0.0.1"]
      }}
      resources {{
        memory = 64
      }}
    }}
  }}
}}
"""

SECRET_JOB = """
job "{name}" {{
  datacenters = ["*"]
  type        = "service"
  group "reader" {{
    task "reader" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["3600"]
      }}
      vault {{
        {vault}
      }}
      template {{
        data        = <<-EOT
        {{{{ with secret "secret/data/default/{name}/config" }}}}{{{{ .Data.data.greeting }}}}{{{{ end }}}}
        EOT
        destination = "local/greeting.txt"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }}
      resources {{
        memory = 32
      }}
    }}
  }}
}}
"""


def secret_job(name: str) -> str:
    """SECRET_JOB with the task's token obtained the local Nomad's way."""
    return SECRET_JOB.format(name=name, vault=vault_stanza(name))


def _register(nomad_api: nomad.Nomad, hcl: str) -> str:
    job = nomad_api.jobs.parse(hcl)
    nomad_api.jobs.register_job({"Job": job})
    return str(job["ID"])


def _running_alloc(nomad_api: nomad.Nomad, job_id: str) -> dict[str, object] | None:
    allocs = nomad_api.job.get_allocations(job_id)
    return next((a for a in allocs if a["ClientStatus"] == "running"), None)


@pytest.fixture
def job_name(nomad_api: nomad.Nomad) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:8]}"
    yield name
    nomad_api.job.deregister_job(name, purge=True)


def test_nomad_runs_raw_exec_job_and_consul_sees_it_healthy(
    nomad_api: nomad.Nomad, consul: Consul, job_name: str
) -> None:
    _register(nomad_api, WEB_JOB.format(name=job_name, python=sys.executable))

    wait_for(lambda: _running_alloc(nomad_api, job_name), what=f"{job_name} running")
    checks = wait_for(
        lambda: [c for c in consul.get(f"health/checks/{job_name}") if c["Status"] == "passing"],
        what=f"a passing Consul check for {job_name}",
    )
    assert checks[0]["ServiceName"] == job_name


def test_vault_kv_v2_write_then_read(vault: hvac.Client) -> None:
    path = f"it/{uuid.uuid4().hex[:8]}"
    vault.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "canary-1"})
    vault.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "canary-2"})

    latest = vault.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    first = vault.secrets.kv.v2.read_secret_version(
        path=path, version=1, raise_on_deleted_version=True
    )
    assert latest["data"]["data"] == {"api_key": "canary-2"}
    assert latest["data"]["metadata"]["version"] == 2
    assert first["data"]["data"] == {"api_key": "canary-1"}


def test_nomad_task_reads_its_own_secret_from_the_secrets_store(
    nomad_api: nomad.Nomad, vault: hvac.Client, job_name: str
) -> None:
    greeting = f"canary-{uuid.uuid4().hex}"
    vault.secrets.kv.v2.create_or_update_secret(
        path=f"default/{job_name}/config", secret={"greeting": greeting}
    )

    _register(nomad_api, secret_job(job_name))

    alloc = wait_for(lambda: _running_alloc(nomad_api, job_name), what=f"{job_name} running")
    rendered = nomad_api.client.cat.read_file(alloc["ID"], path="reader/local/greeting.txt")
    assert rendered.strip() == greeting


def test_nomad_task_is_denied_another_jobs_secret(
    nomad_api: nomad.Nomad, vault: hvac.Client, job_name: str
) -> None:
    other = f"default/someone-else-{job_name}/config"
    vault.secrets.kv.v2.create_or_update_secret(path=other, secret={"greeting": "not yours"})
    _register(nomad_api, secret_job(job_name).replace(f"default/{job_name}/config", other))

    def template_events() -> list[str]:
        return [
            event["DisplayMessage"]
            for alloc in nomad_api.job.get_allocations(job_name)
            for state in (alloc.get("TaskStates") or {}).values()
            for event in state.get("Events") or []
            if event["Type"] == "Template"
        ]

    # The secret exists (written above), so "Missing" means Vault refused the job's token:
    # consul-template reports a 403 on a read as a missing dependency and keeps the task waiting.
    events = wait_for(template_events, what="the template to be refused by Vault")
    assert events == [f"Missing: vault.read(secret/data/{other})"]
    assert _running_alloc(nomad_api, job_name) is None


TERRAFORM_CONFIGS = Path(__file__).parent / "terraform"


def test_terraform_init_takes_pinned_providers_from_the_offline_mirror(
    terraform: Terraform, tmp_path: Path
) -> None:
    workdir = tmp_path / "mirror"
    shutil.copytree(TERRAFORM_CONFIGS / "mirror", workdir)

    init = terraform(workdir, "init", "-input=false", "-no-color")
    terraform(workdir, "validate", "-no-color")

    assert "Installing hetznercloud/hcloud v1.57.0" in init.stdout
    # The hostname a bare source means to the CLI that ran (OpenTofu's registry to tofu,
    # Terraform's to terraform), as the CLI itself laid the provider out under .terraform/.
    hosts = [p.name for p in (workdir / ".terraform" / "providers").iterdir()]
    assert len(hosts) == 1, hosts
    lock = (workdir / ".terraform.lock.hcl").read_text()
    assert f'provider "{hosts[0]}/hetznercloud/hcloud"' in lock
    assert 'version     = "1.57.0"' in lock


def test_terraform_applies_against_nomad_then_replans_clean_then_destroys(
    terraform: Terraform, nomad_api: nomad.Nomad, tmp_path: Path
) -> None:
    workdir = tmp_path / "nomad_namespace"
    shutil.copytree(TERRAFORM_CONFIGS / "nomad_namespace", workdir)
    namespace = f"tf-{uuid.uuid4().hex[:8]}"
    var = f"-var=namespace={namespace}"

    def namespaces() -> list[str]:
        return [ns["Name"] for ns in nomad_api.namespaces.get_namespaces()]

    terraform(workdir, "init", "-input=false", "-no-color")
    terraform(workdir, "apply", "-auto-approve", "-input=false", "-no-color", var)
    assert namespace in namespaces()

    replan = terraform(
        workdir, "plan", "-detailed-exitcode", "-input=false", "-no-color", var, check=False
    )
    assert replan.returncode == 0, f"second plan is not a no-op:\n{replan.stdout}"

    terraform(workdir, "destroy", "-auto-approve", "-input=false", "-no-color", var)
    assert namespace not in namespaces()
