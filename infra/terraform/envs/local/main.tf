locals {
  repo      = abspath("${path.root}/../../../..")
  nomad_dir = "${local.repo}/infra/nomad"
  env       = "local"

  platform_jobs = {
    for f in fileset(local.nomad_dir, "*.nomad.hcl") : trimsuffix(f, ".nomad.hcl") => {
      jobspec   = file("${local.nomad_dir}/${f}")
      var_files = [file("${local.nomad_dir}/vars/${local.env}/${trimsuffix(f, ".nomad.hcl")}.hcl")]
    } if f != "engine.nomad.hcl"
  }
  engine_jobs = {
    for f in fileset("${local.nomad_dir}/vars/${local.env}/engine", "*.hcl") : trimsuffix(f, ".hcl") => {
      jobspec = file("${local.nomad_dir}/engine.nomad.hcl")
      var_files = [
        file("${local.nomad_dir}/vars/${local.env}/engine.hcl"),
        file("${local.nomad_dir}/vars/${local.env}/engine/${f}"),
      ]
    }
  }
  all_jobs = merge(local.platform_jobs, local.engine_jobs)

  # What runtime/ops/deploy.py fills in for the local environment: repository files and this
  # machine's paths (each job takes only the ones it declares).
  generated_vars = provider::terraform::encode_tfvars({
    host_volume_path            = "${var.stack_dir}/volumes"
    toolchain_bin               = var.toolchain_bin
    venv                        = var.venv
    prometheus_config           = file("${local.repo}/monitoring/prometheus/prometheus.yml")
    prometheus_rules            = { for f in fileset("${local.repo}/monitoring/prometheus/rules", "*.yml") : f => file("${local.repo}/monitoring/prometheus/rules/${f}") }
    alertmanager_config         = file("${local.repo}/monitoring/alertmanager/alertmanager.yml")
    grafana_datasources         = file("${local.repo}/monitoring/grafana/provisioning/datasources/arbfleet.yml")
    grafana_dashboard_providers = file("${local.repo}/monitoring/grafana/provisioning/dashboards/arbfleet.yml")
    grafana_dashboards          = { for f in fileset("${local.repo}/monitoring/grafana/dashboards", "*.json") : f => file("${local.repo}/monitoring/grafana/dashboards/${f}") }
  })
}

module "platform" {
  source = "../../modules/platform"

  secrets_dir = "${local.repo}/secrets"
  jwt = {
    jwks_url = "http://127.0.0.1:${4646 + var.ports_offset}/.well-known/jwks.json"
  }
  # Dev agents: `secret/` is mounted already, Consul and Nomad run without ACLs, and the
  # database engine is configured by `arbfleet secrets apply --database-admin-dsn-file`.
  create_workload_secret_mount = false
  consul_acls                  = false
  nomad_acls                   = false

  jobs           = var.job_names == null ? local.all_jobs : { for name in var.job_names : name => local.all_jobs[name] }
  generated_vars = local.generated_vars
}
