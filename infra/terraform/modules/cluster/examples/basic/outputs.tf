output "nodes" {
  description = "Nodes of the example cluster."
  value       = module.cluster.nodes
}
