module arbfleet.local/toolchain/consul

go 1.24

require github.com/hashicorp/consul v1.21.0
exclude github.com/hashicorp/go-msgpack v1.1.5
exclude github.com/hashicorp/go-msgpack v1.1.6
