variable "nomad_jwks_url" {
  description = "Nomad's JWKS endpoint, e.g. https://10.42.1.10:4646/.well-known/jwks.json."
  type        = string
}
