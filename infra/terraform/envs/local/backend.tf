# The local stack belongs to one developer and is rebuilt at will: local state, next to this
# file, is all it needs (ignored by git). Production shows the remote-state setup.
terraform {
  backend "local" {
    path = "terraform.tfstate"
  }
}
