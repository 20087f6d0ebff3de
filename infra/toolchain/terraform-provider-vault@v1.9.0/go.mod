module arbfleet.local/toolchain/terraform-provider-vault

go 1.24

require github.com/terraform-providers/terraform-provider-vault v1.9.0
