# The local stack's dev agents (runtime/devstack/stack.py): plain HTTP on loopback.
provider "vault" {
  address = "http://127.0.0.1:${8200 + var.ports_offset}"
  # The stack keeps its root token in a file of mode 0600, never in an environment variable.
  token = trimspace(file("${var.stack_dir}/secrets/vault-root-token"))
}

provider "consul" {
  address = "127.0.0.1:${8500 + var.ports_offset}"
  scheme  = "http"
}

provider "nomad" {
  address = "http://127.0.0.1:${4646 + var.ports_offset}"
}
