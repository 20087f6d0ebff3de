variable "stack_dir" {
  description = "State directory of the local stack (`python -m runtime.devstack` prints it; default /tmp/arbfleet-stack-<uid>)."
  type        = string
}

variable "venv" {
  description = "Python environment with `arbfleet` installed, for raw_exec tasks."
  type        = string
}

variable "toolchain_bin" {
  description = "The toolchain's bin directory (upstream Prometheus for the prometheus job)."
  type        = string
}

variable "ports_offset" {
  description = "ARBFLEET_STACK_PORT_OFFSET of the stack (0 unless a second stack runs beside one)."
  type        = number
  default     = 0
}

variable "job_names" {
  description = "Nomad jobs to submit: platform job names (infra/nomad/<job>.nomad.hcl) and engine deployments (vars/local/engine/<job>.hcl). Null: all of them."
  type        = list(string)
  default     = null
}
