output "fqdn" {
  description = "The service endpoint's DNS name."
  value       = var.domain_name
}

output "health_check_ids" {
  description = "Origin key -> Route 53 health check id (its HealthCheckStatus metric shows which regions serve)."
  value       = { for k, h in aws_route53_health_check.origin : k => h.id }
}

output "origins" {
  description = "Origin key -> record kind (alias or ip) and weight, as applied."
  value = merge(
    { for k, o in local.alias_origins : k => { kind = "alias", weight = o.weight } },
    { for k, o in local.ip_origins : k => { kind = "ip", weight = o.weight } },
  )
}
