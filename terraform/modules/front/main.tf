# One endpoint across regions and clouds: weighted Route 53 records for domain_name, one per
# region stack, each with a health check on the readiness path through that region's load
# balancer, so a region whose load balancer has no ready replica leaves the rotation.
# AWS load balancers get alias A records (no extra lookup, follows the ALB's IPs); GCP and
# Azure load balancers have static IPs and get plain A records. Every record is of type A, as
# Route 53 requires for one weighted name.

locals {
  alias_origins = { for k, o in var.origins : k => o if !can(regex("^[0-9.]+$", o.address)) }
  ip_origins    = { for k, o in var.origins : k => o if can(regex("^[0-9.]+$", o.address)) }
  alias_regions = toset([for o in local.alias_origins : o.region])
}

data "aws_lb_hosted_zone_id" "alb" {
  for_each = local.alias_regions

  region             = each.key
  load_balancer_type = "application"
}

resource "aws_route53_health_check" "origin" {
  for_each = var.origins

  type              = var.health_check_protocol
  fqdn              = contains(keys(local.alias_origins), each.key) ? each.value.address : null
  ip_address        = contains(keys(local.ip_origins), each.key) ? each.value.address : null
  port              = var.health_check_port
  resource_path     = var.health_check_path
  request_interval  = var.health_check_interval_seconds
  failure_threshold = 3

  tags = merge(var.tags, {
    Name                = "hf-${var.service}-${each.key}"
    "hedgeform:service" = var.service
    "hedgeform:origin"  = each.key
  })
}

resource "aws_route53_record" "alias" {
  #checkov:skip=CKV2_AWS_23:The load balancers live in the region stacks (separate states); the reconciler removes an origin here before destroying its region, and a health check guards each record.
  for_each = local.alias_origins

  zone_id         = var.zone_id
  name            = var.domain_name
  type            = "A"
  set_identifier  = each.key
  health_check_id = aws_route53_health_check.origin[each.key].id

  weighted_routing_policy {
    weight = each.value.weight
  }

  alias {
    name                   = each.value.address
    zone_id                = data.aws_lb_hosted_zone_id.alb[each.value.region].id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "ip" {
  #checkov:skip=CKV2_AWS_23:The load balancers live in the region stacks (separate states); the reconciler removes an origin here before destroying its region, and a health check guards each record.
  for_each = local.ip_origins

  zone_id         = var.zone_id
  name            = var.domain_name
  type            = "A"
  ttl             = var.ttl_seconds
  records         = [each.value.address]
  set_identifier  = each.key
  health_check_id = aws_route53_health_check.origin[each.key].id

  weighted_routing_policy {
    weight = each.value.weight
  }
}
