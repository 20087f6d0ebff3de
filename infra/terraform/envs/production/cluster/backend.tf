# Local state until a shared backend is set up. Production state holds no private key or gossip
# key (they are pushed after boot), but the Hetzner token's reach and the cluster's layout: it
# must still live in an encrypted, access-controlled, locked store.
# To move it: comment the local block out and the s3 block in, then run
# `terraform init -migrate-state`. Example: Hetzner Object Storage (S3-compatible), with
# Terraform's own S3 lock file (1.10+), no DynamoDB needed.
terraform {
  backend "local" {
    path = "terraform.tfstate"
  }

  # backend "s3" {
  #   bucket                      = "arbfleet-terraform-state"
  #   key                         = "production/cluster.tfstate"
  #   region                      = "fsn1"
  #   endpoints                   = { s3 = "https://fsn1.your-objectstorage.com" }
  #   use_lockfile                = true
  #   encrypt                     = true
  #   skip_credentials_validation = true
  #   skip_region_validation      = true
  #   skip_requesting_account_id  = true
  #   skip_s3_checksum            = true
  #   use_path_style              = true
  # }
}
