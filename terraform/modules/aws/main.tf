# One AWS region of a Hedgeform service: one EC2 instance per replica (spot or on-demand, as the
# reconciler decided), an Application Load Balancer whose target group holds exactly the ready
# replicas, EventBridge rules that deliver spot interruption warnings, rebalance
# recommendations and state changes to an SQS queue, and one empty Secrets Manager secret per
# secret environment variable (values are written out of band, never through Terraform).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "default" {
  count   = var.vpc_id == "" ? 1 : 0
  default = true
}

locals {
  name    = "hf-${var.service}"
  vpc_id  = var.vpc_id != "" ? var.vpc_id : data.aws_vpc.default[0].id
  tls     = var.certificate_arn != ""
  zones   = toset([for r in var.replicas : r.zone])
  members = toset(var.lb_members)
  tags = merge(var.tags, {
    "hedgeform:service" = var.service
    "hedgeform:region"  = var.region
  })
  # The spec's load_balancing_policy: least_load maps to least outstanding requests.
  lb_algorithm = var.load_balancing_policy == "round_robin" ? "round_robin" : "least_outstanding_requests"
  notice_rules = {
    interruption = "EC2 Spot Instance Interruption Warning"
    rebalance    = "EC2 Instance Rebalance Recommendation"
    state        = "EC2 Instance State-change Notification"
  }
}

# Default subnets, one per zone, when no subnet map is given.
data "aws_subnets" "default" {
  count = length(var.subnet_ids) == 0 ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [local.vpc_id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

data "aws_subnet" "zone" {
  for_each = length(var.subnet_ids) == 0 ? local.zones : toset([])

  vpc_id            = local.vpc_id
  availability_zone = each.key
  default_for_az    = true
}

locals {
  replica_subnets = length(var.subnet_ids) > 0 ? var.subnet_ids : { for z, s in data.aws_subnet.zone : z => s.id }
  lb_subnets      = length(var.subnet_ids) > 0 ? values(var.subnet_ids) : data.aws_subnets.default[0].ids
}

# ---------------------------------------------------------------- secrets (containers only)

resource "aws_kms_key" "secrets" {
  count = length(var.secret_env_names) > 0 ? 1 : 0

  description             = "Encrypts the secret environment variables of Hedgeform service ${var.service}."
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.tags
}

# No aws_secretsmanager_secret_version here on purpose: the value is put by the reconciler
# (PutSecretValue from its own environment), so it is never in tfvars, plan or state.
resource "aws_secretsmanager_secret" "env" {
  #checkov:skip=CKV2_AWS_57:The value is a third-party token (e.g. HF_TOKEN) the reconciler re-writes from its environment; AWS cannot rotate it.
  for_each = toset(var.secret_env_names)

  name                    = "hedgeform/${var.service}/${each.key}"
  description             = "Environment variable ${each.key} of Hedgeform service ${var.service}; value written out of band."
  kms_key_id              = aws_kms_key.secrets[0].arn
  recovery_window_in_days = 0
  tags                    = local.tags
}

# ---------------------------------------------------------------- replica identity

resource "aws_iam_role" "replica" {
  name_prefix = "${local.name}-replica-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "read_secrets" {
  count = length(var.secret_env_names) > 0 ? 1 : 0

  name = "read-service-secrets"
  role = aws_iam_role.replica.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [for s in aws_secretsmanager_secret.env : s.arn]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [aws_kms_key.secrets[0].arn]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "replica" {
  name_prefix = "${local.name}-replica-"
  role        = aws_iam_role.replica.name
  tags        = local.tags
}

# ---------------------------------------------------------------- network

resource "aws_security_group" "lb" {
  name_prefix = "${local.name}-lb-"
  description = "Hedgeform ${var.service}: clients to the load balancer"
  vpc_id      = local.vpc_id
  tags        = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "replica" {
  name_prefix = "${local.name}-replica-"
  description = "Hedgeform ${var.service}: load balancer to replicas; replicas to the internet"
  vpc_id      = local.vpc_id
  tags        = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb" {
  for_each = { for pair in setproduct(local.tls ? [80, 443] : [80], var.allowed_cidrs) : "${pair[0]}-${pair[1]}" => pair }

  security_group_id = aws_security_group.lb.id
  description       = "Clients to the listener on port ${each.value[0]}"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "lb_to_replicas" {
  security_group_id            = aws_security_group.lb.id
  description                  = "Load balancer to the replicas' service port"
  ip_protocol                  = "tcp"
  from_port                    = var.replica_port
  to_port                      = var.replica_port
  referenced_security_group_id = aws_security_group.replica.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "replica_from_lb" {
  security_group_id            = aws_security_group.replica.id
  description                  = "Load balancer (traffic and health checks) to the service port"
  ip_protocol                  = "tcp"
  from_port                    = var.replica_port
  to_port                      = var.replica_port
  referenced_security_group_id = aws_security_group.lb.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "replica_out" {
  security_group_id = aws_security_group.replica.id
  description       = "Replicas to the internet (packages, model weights, AWS APIs)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

# ---------------------------------------------------------------- replicas

resource "aws_instance" "replica" {
  #checkov:skip=CKV_AWS_88:Default VPC subnets have no NAT; a public IP is the only way out. Ingress is limited to the load balancer's security group (set associate_public_ip=false with NAT subnets).
  for_each = var.replicas

  ami                         = local.runs[each.key].image_id
  instance_type               = local.instance_type_of[each.key]
  subnet_id                   = local.replica_subnets[each.value.zone]
  availability_zone           = each.value.zone
  vpc_security_group_ids      = [aws_security_group.replica.id]
  iam_instance_profile        = aws_iam_instance_profile.replica.name
  associate_public_ip_address = var.associate_public_ip
  ebs_optimized               = true
  monitoring                  = true

  # A changed script replaces the replica instead of stopping it (one-time spot cannot stop).
  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/cloud-init.sh.tftpl", {
    service     = var.service
    region      = var.region
    replica_id  = each.key
    setup_b64   = base64encode(local.runs[each.key].setup_script)
    run_b64     = base64encode(local.runs[each.key].run_script)
    envs_b64    = { for k, v in local.runs[each.key].envs : k => base64encode(v) }
    secret_arns = { for k, s in aws_secretsmanager_secret.env : k => s.arn }
  })

  # Replica ids encode the market (`-spot-` / `-od-`), so a market flip is always a new
  # instance, never an in-place change of these options.
  dynamic "instance_market_options" {
    for_each = each.value.market == "spot" ? [each.key] : []
    content {
      market_type = "spot"
      spot_options {
        instance_interruption_behavior = "terminate"
        spot_instance_type             = "one-time"
      }
    }
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = local.runs[each.key].disk_size_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { "hedgeform:replica" = each.key })
  }

  tags = merge(local.tags, {
    Name                    = "${local.name}-${each.key}"
    "hedgeform:replica"     = each.key
    "hedgeform:zone"        = each.value.zone
    "hedgeform:market"      = each.value.market
    "hedgeform:version"     = each.value.version
    "hedgeform:accelerator" = local.accelerator_of[each.key]
  }, { for id, acc in var.replica_accelerators : "hedgeform:gpu-type" => acc if id == each.key })
}

# ---------------------------------------------------------------- load balancer

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket with a regional ELB policy; request counts come from CloudWatch AWS/ApplicationELB instead.
  #checkov:skip=CKV_AWS_150:The reconciler destroys stacks of regions it leaves; deletion protection would block that.
  #checkov:skip=CKV2_AWS_20:The HTTP listener redirects to HTTPS whenever certificate_arn is set; without one there is no HTTPS to redirect to.
  #checkov:skip=CKV2_AWS_28:WAF is a per-deployment choice (cost, rules); attach a web ACL to the output lb_arn.
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.lb.id]
  subnets                    = local.lb_subnets
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = false
  tags                       = local.tags
}

resource "aws_lb_target_group" "replicas" {
  #checkov:skip=CKV_AWS_378:TLS terminates at the load balancer; load balancer to replica traffic stays in the VPC.
  name_prefix                   = "hf-"
  port                          = var.replica_port
  protocol                      = "HTTP"
  target_type                   = "instance"
  vpc_id                        = local.vpc_id
  deregistration_delay          = 30
  load_balancing_algorithm_type = local.lb_algorithm

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.readiness_path
    matcher             = "200" # SkyServe: ready means HTTP 200 exactly
    interval            = var.health_check_interval_seconds
    timeout             = var.health_check_timeout_seconds
    healthy_threshold   = var.health_check_healthy_threshold
    unhealthy_threshold = var.health_check_unhealthy_threshold
  }

  tags = merge(local.tags, { Name = "${local.name}-replicas" })

  lifecycle {
    create_before_destroy = true
  }
}

# Several GPU types in one region (issue 15): one target group per type, same settings as
# `replicas`, so the listener can weigh the types by their serving capacity
# (`accelerator_weights`); `replicas` stays and holds the members of no type (e.g. replicas
# launched before the service mixed). Empty for a region of one type.
resource "aws_lb_target_group" "typed" {
  #checkov:skip=CKV_AWS_378:TLS terminates at the load balancer; load balancer to replica traffic stays in the VPC.
  for_each = var.accelerator_types

  name_prefix                   = "hf-"
  port                          = var.replica_port
  protocol                      = "HTTP"
  target_type                   = "instance"
  vpc_id                        = local.vpc_id
  deregistration_delay          = 30
  load_balancing_algorithm_type = local.lb_algorithm

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.readiness_path
    matcher             = "200" # SkyServe: ready means HTTP 200 exactly
    interval            = var.health_check_interval_seconds
    timeout             = var.health_check_timeout_seconds
    healthy_threshold   = var.health_check_healthy_threshold
    unhealthy_threshold = var.health_check_unhealthy_threshold
  }

  tags = merge(local.tags, { Name = "${local.name}-${lower(each.key)}", "hedgeform:gpu-type" = each.key })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  typed_lb = length(var.accelerator_types) > 0
  # Each member's target group: its own type's when it runs one, else the shared one.
  member_group = {
    for id in local.members : id => contains(keys(local.typed), id) ? aws_lb_target_group.typed[var.replica_accelerators[id]].arn : aws_lb_target_group.replicas.arn
  }
  # The listener's weighted forward when several types run: one entry per type, and the
  # shared group for members of no type (weight `untyped_weight`).
  forward_groups = merge(
    { for acc, tg in aws_lb_target_group.typed : acc => { arn = tg.arn, weight = lookup(var.accelerator_weights, acc, 0) } },
    { "_untyped" = { arn = aws_lb_target_group.replicas.arn, weight = var.untyped_weight } },
  )
}

# The target groups hold exactly the replicas the reconciler registers, each in its type's.
resource "aws_lb_target_group_attachment" "member" {
  for_each = local.members

  target_group_arn = local.member_group[each.key]
  target_id        = aws_instance.replica[each.key].id
  port             = var.replica_port
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP only when no certificate_arn is given; with one, this listener redirects to the HTTPS listener.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.tls ? "redirect" : "forward"
    target_group_arn = local.tls || local.typed_lb ? null : aws_lb_target_group.replicas.arn

    dynamic "forward" {
      for_each = !local.tls && local.typed_lb ? [1] : []
      content {
        dynamic "target_group" {
          for_each = local.forward_groups
          content {
            arn    = target_group.value.arn
            weight = target_group.value.weight
          }
        }
      }
    }

    dynamic "redirect" {
      for_each = local.tls ? [443] : []
      content {
        port        = tostring(redirect.value)
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  count = local.tls ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = local.typed_lb ? null : aws_lb_target_group.replicas.arn

    dynamic "forward" {
      for_each = local.typed_lb ? [1] : []
      content {
        dynamic "target_group" {
          for_each = local.forward_groups
          content {
            arn    = target_group.value.arn
            weight = target_group.value.weight
          }
        }
      }
    }
  }

  tags = local.tags
}

# ---------------------------------------------------------------- notices

resource "aws_sqs_queue" "notices" {
  name                      = "hedgeform-${var.service}-notices"
  message_retention_seconds = 3600
  receive_wait_time_seconds = 20
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

# Region-wide rules: the reconciler keeps the notices for its own instance ids, so the rules
# never change when replicas do.
resource "aws_cloudwatch_event_rule" "notice" {
  for_each = local.notice_rules

  name        = "${local.name}-${each.key}"
  description = "${each.value} events for Hedgeform service ${var.service}"
  event_pattern = jsonencode({
    source        = ["aws.ec2"]
    "detail-type" = [each.value]
  })
  tags = local.tags
}

resource "aws_cloudwatch_event_target" "notice" {
  for_each = local.notice_rules

  rule      = aws_cloudwatch_event_rule.notice[each.key].name
  target_id = "hedgeform-notices"
  arn       = aws_sqs_queue.notices.arn
}

resource "aws_sqs_queue_policy" "notices" {
  queue_url = aws_sqs_queue.notices.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "EventBridgeSendsNotices"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.notices.arn
      Condition = {
        ArnEquals = { "aws:SourceArn" = [for r in aws_cloudwatch_event_rule.notice : r.arn] }
      }
    }]
  })
}
