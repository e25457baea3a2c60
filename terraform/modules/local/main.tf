# The local sandbox cloud: replicas are real local processes in named zones, the load balancer
# is a real HAProxy. Values reach the provisioners through `environment` and are expanded inside
# double quotes by the shell, so no input can inject a command.

locals {
  common_env = {
    HEDGEFORM_BIN = var.hedgeform_bin
    SANDBOX_DIR   = var.sandbox_dir
  }
  # HTTPS on the load balancer (service.tls): the files' paths only; `lb up` reads them.
  tls = var.load_balancer != null && var.tls != null
  lb_env = var.load_balancer == null ? {} : {
    LB_PORT       = tostring(var.load_balancer.port)
    CHECK_PATH    = var.load_balancer.check_path
    CHECK_TIMEOUT = tostring(var.load_balancer.check_timeout_seconds)
    TLS_CERTFILE  = local.tls ? try(var.tls.certfile, "") : ""
    TLS_KEYFILE   = local.tls ? try(var.tls.keyfile, "") : ""
    TLS_SHA256    = local.tls ? try(var.tls.cert_sha256, "") : ""
  }
  lb_args = "--port \"$LB_PORT\" --check-path \"$CHECK_PATH\" --check-timeout \"$CHECK_TIMEOUT\" --tls-certfile \"$TLS_CERTFILE\" --tls-keyfile \"$TLS_KEYFILE\" --tls-cert-sha256 \"$TLS_SHA256\""
}

resource "null_resource" "replica" {
  for_each = var.replicas

  # Every attribute the destroy provisioner needs must live in triggers (it can only read self).
  # A replica's version, model and cold start stay out of them: they are fixed at its launch
  # (a new version gets new replica ids), so changing them here never replaces a replica.
  # A replica of one of several GPU types carries its type (issue 15); one without a type has
  # exactly the triggers it had before, so upgrading replaces nothing.
  triggers = merge({
    service       = var.service
    replica_id    = each.key
    zone          = each.value.zone
    market        = each.value.market
    hedgeform_bin = var.hedgeform_bin
    sandbox_dir   = var.sandbox_dir
  }, { for id, acc in var.replica_accelerators : "accelerator" => acc if id == each.key })

  provisioner "local-exec" {
    command = "\"$HEDGEFORM_BIN\" sandbox replica launch --state-dir \"$SANDBOX_DIR\" --id \"$REPLICA_ID\" --zone \"$ZONE\" --market \"$MARKET\" --cold-start \"$COLD_START\" --latency-ms \"$LATENCY_MS\" --model \"$MODEL_NAME\" --version \"$VERSION\" --max-rps \"$MAX_RPS\""
    environment = merge(local.common_env, {
      REPLICA_ID = each.key
      ZONE       = each.value.zone
      MARKET     = each.value.market
      COLD_START = tostring(each.value.cold_start_seconds)
      LATENCY_MS = tostring(var.latency_ms)
      MODEL_NAME = each.value.model_name
      VERSION    = each.value.version
      MAX_RPS    = tostring(lookup(var.replica_max_rps, each.key, 0))
    })
  }

  provisioner "local-exec" {
    when    = destroy
    command = "\"$HEDGEFORM_BIN\" sandbox replica stop --state-dir \"$SANDBOX_DIR\" --id \"$REPLICA_ID\""
    environment = {
      HEDGEFORM_BIN = self.triggers.hedgeform_bin
      SANDBOX_DIR   = self.triggers.sandbox_dir
      REPLICA_ID    = self.triggers.replica_id
    }
  }
}

# HAProxy itself: replaced only when its port, check, directory, or whether it serves HTTPS
# changes. A load balancer without TLS has exactly the triggers it had before TLS existed.
resource "null_resource" "load_balancer" {
  count = var.load_balancer == null ? 0 : 1

  triggers = merge({
    port          = tostring(var.load_balancer.port)
    check_path    = var.load_balancer.check_path
    check_timeout = tostring(var.load_balancer.check_timeout_seconds)
    hedgeform_bin = var.hedgeform_bin
    sandbox_dir   = var.sandbox_dir
  }, local.tls ? { tls = "https" } : {})

  provisioner "local-exec" {
    command     = "\"$HEDGEFORM_BIN\" sandbox lb up --state-dir \"$SANDBOX_DIR\" ${local.lb_args}"
    environment = merge(local.common_env, local.lb_env)
  }

  provisioner "local-exec" {
    when    = destroy
    command = "\"$HEDGEFORM_BIN\" sandbox lb down --state-dir \"$SANDBOX_DIR\""
    environment = {
      HEDGEFORM_BIN = self.triggers.hedgeform_bin
      SANDBOX_DIR   = self.triggers.sandbox_dir
    }
  }
}

# The endpoint's certificate and key (service.tls): a renewed pair (another certificate
# digest) or other files are swapped into the running HAProxy over its admin socket, with no
# restart. Only the paths and the certificate's SHA-256 are here: never the key's content.
resource "null_resource" "tls_certificate" {
  count = local.tls ? 1 : 0

  triggers = {
    certfile    = var.tls.certfile
    keyfile     = var.tls.keyfile
    cert_sha256 = var.tls.cert_sha256
    lb          = null_resource.load_balancer[0].id
  }

  provisioner "local-exec" {
    command     = "\"$HEDGEFORM_BIN\" sandbox lb up --state-dir \"$SANDBOX_DIR\" ${local.lb_args}"
    environment = merge(local.common_env, local.lb_env)
  }
}

# The target group: set through HAProxy's runtime API, so a change never restarts HAProxy.
resource "null_resource" "target_group" {
  count = var.load_balancer == null ? 0 : 1

  triggers = {
    members = join(",", sort(var.load_balancer.members))
    epoch   = var.load_balancer.epoch
    lb      = null_resource.load_balancer[0].id
  }

  # MEMBERS is expanded unquoted on purpose, to split into one argument per id: the ids are
  # validated ([a-z0-9-] only), so word splitting cannot produce anything else.
  # The port, check and TLS files come along so that a HAProxy killed together with its
  # record (lb.json) is started again here, as the load_balancer resource would.
  provisioner "local-exec" {
    command = "\"$HEDGEFORM_BIN\" sandbox lb set-members --state-dir \"$SANDBOX_DIR\" ${local.lb_args} $MEMBERS"
    environment = merge(local.common_env, local.lb_env, {
      MEMBERS = join(" ", sort(var.load_balancer.members))
    })
  }
}
