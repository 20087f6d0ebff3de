module arbfleet.local/toolchain/terraform-provider-hcloud

go 1.24.0

require github.com/hetznercloud/terraform-provider-hcloud v1.57.0
