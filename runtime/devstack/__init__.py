"""Developer tooling: the pinned HashiCorp toolchain and the local Nomad/Consul/Vault stack."""
