"""The one applier of platform state: the secrets store's layout, Consul's ACLs, Nomad's
namespaces and jobs, from the fleet description (``arbfleet platform apply [--dry-run]``)."""
