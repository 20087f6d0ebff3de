variable "jobspec" {
  description = "The Nomad job spec (HCL2): which variables it declares decides which generated values it gets."
  type        = string
}

variable "var_files" {
  description = "Contents of the job's vars files, in order (as `nomad job run -var-file`)."
  type        = list(string)
  default     = []
}

variable "generated_vars" {
  description = "tfvars-syntax content with values runtime/ops/deploy.py would fill in (file contents, local paths); only variables the job declares and its vars files leave unset are taken."
  type        = string
  default     = ""
}
