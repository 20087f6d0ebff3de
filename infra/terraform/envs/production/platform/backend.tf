# Local state until a shared backend is set up (see ../cluster/backend.tf for why production
# state must move to an encrypted, locked store, and how: `terraform init -migrate-state`).
terraform {
  backend "local" {
    path = "terraform.tfstate"
  }

  # backend "s3" {
  #   bucket                      = "arbfleet-terraform-state"
  #   key                         = "production/platform.tfstate"
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
