# Production: every engine deployment runs the engine image under docker.
datacenters  = ["fsn1", "sin"]
driver       = "docker"
image        = "ghcr.io/arbfleet/arbfleet:0.1.0"
kill_timeout = "20s"

cpu        = 2000
memory     = 256
memory_max = 384
