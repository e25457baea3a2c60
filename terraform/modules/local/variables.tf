variable "service" {
  description = "Service name (services/<service>.yaml); labels every replica."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.service))
    error_message = "The service name must match ^[a-z0-9][a-z0-9-]{0,62}$."
  }
}

variable "stack" {
  description = "This stack's name: a sandbox region (e.g. local-1) or `front` for the load balancer."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.stack))
    error_message = "The stack name must match ^[a-z0-9][a-z0-9-]{0,62}$."
  }
}

variable "hedgeform_bin" {
  description = "Absolute path of the hedgeform executable the provisioners call."
  type        = string
}

variable "sandbox_dir" {
  description = "Absolute path of the sandbox cloud's state directory (replica records, market, HAProxy)."
  type        = string
}

variable "replicas" {
  description = "Replicas of this region, keyed by replica id: the zone and market (spot or on_demand) of each, the service version it runs, and that version's model name and cold start (seconds); the last three are used at launch only."
  type = map(object({
    zone               = string
    market             = string
    version            = string
    model_name         = string
    cold_start_seconds = number
  }))
  default = {}

  validation {
    condition = alltrue([
      for id, r in var.replicas :
      can(regex("^[a-z0-9][a-z0-9-]{0,62}$", id)) && can(regex("^[a-z0-9][a-z0-9-]{0,62}$", r.zone)) && contains(["spot", "on_demand"], r.market) && can(regex("^[1-9][0-9]{0,8}$", r.version))
    ])
    error_message = "Replica ids and zones must match ^[a-z0-9][a-z0-9-]{0,62}$, market must be spot or on_demand, and version a number from 1."
  }
}

variable "replica_accelerators" {
  description = "The GPU type of each replica that runs one of several types in its zone (a pool of its own, issue 15), keyed by replica id; a replica not listed carries no type. Kept in the replica's triggers, so a replica never changes type in place."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id, acc in var.replica_accelerators : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", id)) && can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc))])
    error_message = "Keys of replica_accelerators must be replica ids (^[a-z0-9][a-z0-9-]{0,62}$) and values GPU type names of letters, digits, '_', '.' and '-'."
  }
}

variable "replica_max_rps" {
  description = "Requests/s the simulated GPU of each listed replica serves, one after another (its type's throughput, issue 15; the load balancer weighs it by this), keyed by replica id; a replica not listed has no limit. Used at launch only."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for id, rps in var.replica_max_rps : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", id)) && rps >= 0 && rps <= 10000])
    error_message = "Keys of replica_max_rps must be replica ids and values requests/s from 0 to 10000."
  }
}

variable "latency_ms" {
  description = "Added latency of each completion request, in milliseconds."
  type        = number
  default     = 20
}

variable "load_balancer" {
  description = "The HAProxy load balancer, in the `front` stack only: its port, the replica ids in its backend (the target group: exactly the ready replicas), the epoch of the running HAProxy (a restart changes it, which re-adds the members), and its own health check of each server: GET `check_path` expecting 200 within `check_timeout_seconds` (the service's readiness probe), or a TCP connect when `check_path` is empty (a POST or header probe, which stays out of HAProxy's config)."
  type = object({
    port                  = number
    members               = list(string)
    epoch                 = string
    check_path            = string
    check_timeout_seconds = number
  })
  default = null

  validation {
    condition     = var.load_balancer == null ? true : alltrue([for m in var.load_balancer.members : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", m))])
    error_message = "Load balancer members must be replica ids matching ^[a-z0-9][a-z0-9-]{0,62}$."
  }

  validation {
    condition     = var.load_balancer == null ? true : can(regex("^(/[A-Za-z0-9._~/?=&%:@!()*+,;-]*)?$", var.load_balancer.check_path))
    error_message = "The health check path must be empty or start with / and hold only URL characters HAProxy's config takes unquoted."
  }

  validation {
    condition     = var.load_balancer == null ? true : var.load_balancer.check_timeout_seconds >= 1 && var.load_balancer.check_timeout_seconds <= 3600 && floor(var.load_balancer.check_timeout_seconds) == var.load_balancer.check_timeout_seconds
    error_message = "The health check timeout must be a whole number of seconds from 1 to 3600."
  }
}

variable "tls" {
  description = "HTTPS on the load balancer (front stack only; SkyServe's service.tls): absolute paths of the PEM certificate (chain) and private key files on this machine, and the certificate file's SHA-256, whose change swaps the pair into the running HAProxy. Paths and the public certificate's digest only: the key's content never enters Terraform (`hedgeform sandbox lb up` reads the files and writes HAProxy's own 0600 copy). null: plain HTTP."
  type = object({
    certfile    = string
    keyfile     = string
    cert_sha256 = string
  })
  default = null

  validation {
    condition     = var.tls == null ? true : can(regex("^/[^[:cntrl:]]*$", var.tls.certfile)) && can(regex("^/[^[:cntrl:]]*$", var.tls.keyfile)) && can(regex("^[0-9a-f]{64}$", var.tls.cert_sha256))
    error_message = "The TLS files must be absolute paths without control characters, and cert_sha256 a SHA-256 in hex."
  }
}
