output "replica_ids" {
  description = "Ids of the replicas this stack manages."
  value       = sort(keys(null_resource.replica))
}

output "endpoint" {
  description = "The service endpoint through HAProxy (front stack only), else null."
  value       = var.load_balancer == null ? null : "${local.tls ? "https" : "http"}://127.0.0.1:${var.load_balancer.port}"
}

output "lb_members" {
  description = "Replica ids in the load balancer's backend (front stack only)."
  value       = var.load_balancer == null ? [] : sort(var.load_balancer.members)
}
