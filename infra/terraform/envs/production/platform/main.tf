locals {
  repo      = abspath("${path.root}/../../../../..")
  nomad_dir = "${local.repo}/infra/nomad"
  env       = "production"

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

  # What runtime/ops/deploy.py fills in outside the local environment: repository files only.
  generated_vars = provider::terraform::encode_tfvars({
    prometheus_config           = file("${local.repo}/monitoring/prometheus/prometheus.yml")
    prometheus_rules            = { for f in fileset("${local.repo}/monitoring/prometheus/rules", "*.yml") : f => file("${local.repo}/monitoring/prometheus/rules/${f}") }
    alertmanager_config         = file("${local.repo}/monitoring/alertmanager/alertmanager.yml")
    grafana_datasources         = file("${local.repo}/monitoring/grafana/provisioning/datasources/arbfleet.yml")
    grafana_dashboard_providers = file("${local.repo}/monitoring/grafana/provisioning/dashboards/arbfleet.yml")
    grafana_dashboards          = { for f in fileset("${local.repo}/monitoring/grafana/dashboards", "*.json") : f => file("${local.repo}/monitoring/grafana/dashboards/${f}") }
  })
}

module "platform" {
  source = "../../../modules/platform"

  secrets_dir = "${local.repo}/secrets"
  jwt = {
    jwks_url    = "${var.nomad_addr}/.well-known/jwks.json"
    jwks_ca_pem = file(var.ca_file)
  }
  deployments = var.deployments
  database = {
    connection_url = var.database_connection_url
  }
  database_password = var.database_password

  jobs           = merge(local.platform_jobs, local.engine_jobs)
  generated_vars = local.generated_vars
}
