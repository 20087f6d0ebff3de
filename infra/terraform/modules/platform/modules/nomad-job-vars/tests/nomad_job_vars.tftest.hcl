# The real job specs and vars files of infra/nomad/: what nomad_job would submit.
run "engine_production" {
  command = apply

  variables {
    jobspec = file("../../../../../nomad/engine.nomad.hcl")
    var_files = [
      file("../../../../../nomad/vars/production/engine.hcl"),
      file("../../../../../nomad/vars/production/engine/cross-exchange-btc.hcl"),
    ]
    generated_vars = "prometheus_config = \"not an engine variable\"\nvenv = \"/opt/venv\"\n"
  }

  assert {
    condition     = output.vars.datacenters == "[\"fsn1\", \"sin\"]" && output.vars.venues == "[\"binance\", \"upbit\"]"
    error_message = "lists must reach Nomad as HCL expressions"
  }
  assert {
    condition     = output.vars.deployment == "btc" && output.vars.cpu == "2000"
    error_message = "strings and numbers must reach Nomad as they are"
  }
  assert {
    condition     = strcontains(output.vars.engine_config, "[[strategies]]\nplugin = \"cross_exchange\"")
    error_message = "the heredoc engine config must arrive intact"
  }
  assert {
    condition     = !contains(keys(output.vars), "prometheus_config") && output.vars.venv == "/opt/venv"
    error_message = "generated values go only to variables the job declares"
  }
}

run "vars_file_wins_over_generated" {
  command = apply

  variables {
    jobspec        = "variable \"image\" {\n  type = string\n}\n"
    var_files      = ["image = \"from-file\"\n"]
    generated_vars = "image = \"generated\"\n"
  }

  assert {
    condition     = output.vars == { image = "from-file" }
    error_message = "a vars file must win over a generated value"
  }
}
