output "replicas" {
  description = "Replica id -> instance id, private IP, availability zone, market and spot request id (\"\" for on-demand)."
  value = {
    for id, i in aws_instance.replica : id => {
      instance_id              = i.id
      private_ip               = i.private_ip
      zone                     = i.availability_zone
      market                   = var.replicas[id].market
      spot_instance_request_id = i.spot_instance_request_id == null ? "" : i.spot_instance_request_id
    }
  }
}

output "lb_members" {
  description = "Replica ids registered in the target group."
  value       = sort(keys(aws_lb_target_group_attachment.member))
}

output "lb_dns_name" {
  description = "DNS name of the Application Load Balancer (an origin for the front stack)."
  value       = aws_lb.this.dns_name
}

output "lb_url" {
  description = "The load balancer's URL: https:// when certificate_arn is set (port 80 redirects to it), else http://."
  value       = "${local.tls ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "lb_zone_id" {
  description = "Route 53 hosted zone id of the load balancer, for alias records."
  value       = aws_lb.this.zone_id
}

output "lb_arn" {
  description = "ARN of the load balancer (e.g. to attach a WAF web ACL)."
  value       = aws_lb.this.arn
}

output "lb_arn_suffix" {
  description = "The LoadBalancer dimension of the AWS/ApplicationELB CloudWatch metrics (RequestCount)."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn" {
  description = "ARN of the target group holding the ready replicas (with several GPU types: those of no type)."
  value       = aws_lb_target_group.replicas.arn
}

output "target_group_arns" {
  description = "Several GPU types in this region: GPU type -> ARN of the target group holding its ready replicas; empty for a region of one type."
  value       = { for acc, tg in aws_lb_target_group.typed : acc => tg.arn }
}

output "notices_queue_url" {
  description = "URL of the SQS queue receiving spot interruption warnings, rebalance recommendations and state changes."
  value       = aws_sqs_queue.notices.id
}

output "secret_arns" {
  description = "Environment variable name -> ARN of its (empty) Secrets Manager secret; the reconciler writes each value with PutSecretValue."
  value       = { for name, s in aws_secretsmanager_secret.env : name => s.arn }
}
