module arbfleet.local/toolchain/consul

go 1.24

require github.com/hashicorp/consul v1.14.11
replace launchpad.net/gocheck => github.com/go-check/check v0.0.0-20140225173054-eb6ee6f84d0a
