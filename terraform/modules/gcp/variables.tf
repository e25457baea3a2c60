variable "service" {
  description = "Service name (services/<service>.yaml); prefixes every resource name and label."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.service))
    error_message = "The service name must match ^[a-z][a-z0-9-]{0,22}[a-z0-9]$ (2-24 characters, so resource names stay within 63)."
  }
}

variable "project" {
  description = "GCP project id of this stack."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "The project must be a GCP project id."
  }
}

variable "region" {
  description = "GCP region of this stack, e.g. us-central1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "The region must look like us-central1."
  }
}

variable "replicas" {
  description = "Replicas of this region keyed by replica id: the zone, market (spot or on_demand) and service version of each (a key of `versions`, else the top-level machine type/image/scripts apply). The reconciler owns the count; no managed instance group or autoscaler may change it."
  type = map(object({
    zone    = string
    market  = string
    version = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for id, r in var.replicas :
      can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[a-z]+-[a-z]+[0-9]-[a-z]$", r.zone)) && contains(["spot", "on_demand"], r.market) && can(regex("^[1-9][0-9]{0,8}$", r.version))
    ])
    error_message = "Replica ids must match ^[a-z0-9][a-z0-9-]{0,34}$, zones must look like us-central1-a, market must be spot or on_demand and version a number from 1."
  }
}

variable "replica_accelerators" {
  description = "Several GPU types in this region (issue 15): the type of each replica that runs one, keyed by replica id; each is a key of `accelerator_types`. The replica is labelled hedgeform-gpu-type with the type lowercased, so type names are upper case, digits and '-' (as the catalog names them: L4, A100-80GB) and the label reads back unambiguously. A replica not listed runs its version's machine type."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id, acc in var.replica_accelerators : can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[A-Z0-9][A-Z0-9-]{0,62}$", acc))])
    error_message = "Keys of replica_accelerators must be replica ids (^[a-z0-9][a-z0-9-]{0,34}$) and values GPU type names of upper-case letters, digits and '-' (^[A-Z0-9][A-Z0-9-]{0,62}$), so that lowercased they are GCP label values."
  }
}

variable "accelerator_types" {
  description = "What each GPU type of `replica_accelerators` runs on: its machine type, the GPU type attached for N1 machine types (empty when built in: A2, A3, G2) and the accelerator name and count it carries. A typed replica takes these from its type and its image, disk and scripts from its version."
  type = map(object({
    machine_type           = string
    guest_accelerator_type = string
    accelerator_name       = string
    accelerator_count      = number
  }))
  default = {}

  validation {
    condition     = alltrue([for acc, t in var.accelerator_types : can(regex("^[A-Z0-9][A-Z0-9-]{0,62}$", acc)) && can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", t.machine_type)) && (t.guest_accelerator_type == "" || can(regex("^nvidia-[a-z0-9-]+$", t.guest_accelerator_type))) && t.accelerator_count >= 0 && floor(t.accelerator_count) == t.accelerator_count])
    error_message = "Keys of accelerator_types must be GPU type names as in replica_accelerators; machine types and guest accelerators as the top-level variables say, accelerator counts whole numbers."
  }
}

variable "lb_members" {
  description = "Replica ids registered in the load balancer's instance groups: exactly the ready replicas. Every id must be a key of `replicas`."
  type        = list(string)
  default     = []
}

variable "machine_type" {
  description = "Machine type of every replica, e.g. g2-standard-8 (one L4 built in) or n1-standard-8 (with guest_accelerator_type)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", var.machine_type))
    error_message = "The machine type must look like g2-standard-8."
  }
}

variable "accelerator_name" {
  description = "Accelerator each replica carries (e.g. L4), or empty for none; recorded in tags for observability."
  type        = string
  default     = ""
}

variable "accelerator_count" {
  description = "Number of accelerators per replica (0 for none); recorded in tags."
  type        = number
  default     = 0
}

variable "guest_accelerator_type" {
  description = "GPU type to attach (e.g. nvidia-tesla-t4) for N1 machine types; empty for machine types whose GPUs are built in (A2, A3, G2)."
  type        = string
  default     = ""

  validation {
    condition     = var.guest_accelerator_type == "" || can(regex("^nvidia-[a-z0-9-]+$", var.guest_accelerator_type))
    error_message = "The guest accelerator type must be empty or look like nvidia-tesla-t4."
  }
}

variable "image_id" {
  description = "Boot image of every replica: an image or image family path (e.g. projects/deeplearning-platform-release/global/images/family/common-cu123-debian-11-py310) with gcloud installed; NVIDIA drivers are installed at first boot on Deep Learning VM images."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9./_-]+$", var.image_id))
    error_message = "The image id must be an image name, self link or family path."
  }
}

variable "disk_size_gb" {
  description = "Size of each replica's pd-balanced boot disk, in GiB."
  type        = number
  default     = 256

  validation {
    condition     = var.disk_size_gb >= 8 && var.disk_size_gb <= 16384
    error_message = "The disk size must be between 8 and 16384 GiB."
  }
}

variable "replica_port" {
  description = "TCP port the service listens on in each replica (the spec's `ports`); the backend service's named port."
  type        = number

  validation {
    condition     = var.replica_port >= 1 && var.replica_port <= 65535 && floor(var.replica_port) == var.replica_port
    error_message = "The replica port must be an integer in 1..65535."
  }
}

variable "readiness_path" {
  description = "HTTP path of the readiness probe (the spec's readiness_probe.path); the load balancer's health check GETs it."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._~/?=&%-]*$", var.readiness_path))
    error_message = "The readiness path must start with / and contain only URL-safe characters."
  }
}

variable "health_check_timeout_seconds" {
  description = "Seconds the health check waits for the readiness path to answer (timeout_sec): the spec's readiness_probe.timeout_seconds. GCP requires it to be at most health_check_interval_seconds."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_timeout_seconds >= 1 && var.health_check_timeout_seconds <= 300 && floor(var.health_check_timeout_seconds) == var.health_check_timeout_seconds
    error_message = "The health check timeout must be a whole number of seconds in 1..300."
  }
}

variable "health_check_interval_seconds" {
  description = "Seconds between health checks of a replica (check_interval_sec): max(10, timeout + 1) from the spec (SkyServe probes every 10 s)."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval_seconds >= 1 && var.health_check_interval_seconds <= 300 && floor(var.health_check_interval_seconds) == var.health_check_interval_seconds
    error_message = "The health check interval must be a whole number of seconds in 1..300."
  }
}

variable "health_check_healthy_threshold" {
  description = "Consecutive HTTP 200 answers before a replica counts as healthy (healthy_threshold; 2 on every cloud)."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_healthy_threshold >= 1 && var.health_check_healthy_threshold <= 10 && floor(var.health_check_healthy_threshold) == var.health_check_healthy_threshold
    error_message = "The healthy threshold must be a whole number in 1..10."
  }
}

variable "health_check_unhealthy_threshold" {
  description = "Consecutive failed checks before a replica counts as unhealthy (unhealthy_threshold): the spec's readiness_probe.consecutive_failure_threshold_timeout divided by the interval, rounded, clamped to 2-10."
  type        = number
  default     = 3

  validation {
    condition     = var.health_check_unhealthy_threshold >= 1 && var.health_check_unhealthy_threshold <= 10 && floor(var.health_check_unhealthy_threshold) == var.health_check_unhealthy_threshold
    error_message = "The unhealthy threshold must be a whole number in 1..10."
  }
}

variable "versions" {
  description = "What the replicas of each service version run, by version: a replica launched for an earlier version keeps its machine type, GPUs, image, disk and startup script while a rollout replaces it (a new version gets new replica ids, never an in-place metadata or machine type change). Non-secret envs only, as `envs`."
  type = map(object({
    machine_type           = string
    guest_accelerator_type = string
    accelerator_name       = string
    accelerator_count      = number
    image_id               = string
    disk_size_gb           = number
    setup_script           = string
    run_script             = string
    envs                   = map(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for v, c in var.versions : can(regex("^[1-9][0-9]{0,8}$", v)) && can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", c.machine_type)) && (c.guest_accelerator_type == "" || can(regex("^nvidia-[a-z0-9-]+$", c.guest_accelerator_type))) && can(regex("^[a-z0-9./_-]+$", c.image_id)) && c.disk_size_gb >= 8 && c.disk_size_gb <= 16384])
    error_message = "Version keys must be numbers from 1; machine types, guest accelerators, images and disks as the top-level variables say."
  }
}

variable "setup_script" {
  description = "The service's `setup` commands, run once at first boot before `run`."
  type        = string
  default     = ""
}

variable "run_script" {
  description = "The service's `run` commands, kept running by systemd."
  type        = string
}

variable "envs" {
  description = "Non-secret environment variables of the replicas. Secret values never go here: see `secret_env_names`."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.envs) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name))])
    error_message = "Environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$."
  }
}

variable "secret_env_names" {
  description = "Names of environment variables whose values are secrets. The module creates one Secret Manager secret (no version) per name; the reconciler adds the value as a version out of band and replicas read it at boot, so no value is in tfvars or state."
  type        = list(string)

  validation {
    condition     = alltrue([for name in var.secret_env_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name))])
    error_message = "Secret environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$."
  }
}

variable "network" {
  description = "VPC network of the replicas (name or self link)."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "Subnetwork of the replicas in this region; empty means the network's auto-mode subnet."
  type        = string
  default     = ""
}

variable "external_ip" {
  description = "Give replicas an ephemeral external IP for outbound traffic (packages, model weights) when the network has no Cloud NAT. Inbound traffic is limited to Google's load balancer ranges either way."
  type        = bool
  default     = true
}

variable "disk_cmek_self_link" {
  description = "Cloud KMS key (CMEK) encrypting the boot disks; empty uses Google-managed encryption. The Compute Engine service agent needs encrypter/decrypter on it."
  type        = string
  default     = ""
}

variable "secure_boot" {
  description = "Enable Shielded VM secure boot; only with an image whose NVIDIA kernel modules are signed."
  type        = bool
  default     = false
}

variable "ssl_certificates" {
  description = "Self links of SSL certificates for an HTTPS forwarding rule on 443; empty serves plain HTTP on 80."
  type        = list(string)
  default     = []
}

variable "request_timeout_seconds" {
  description = "Backend service timeout: long enough for a streamed completion."
  type        = number
  default     = 300
}

variable "load_balancing_policy" {
  description = "The spec's service.load_balancing_policy: least_load (LEAST_REQUEST) or round_robin."
  type        = string
  default     = "least_load"

  validation {
    condition     = contains(["least_load", "round_robin"], var.load_balancing_policy)
    error_message = "The load balancing policy must be least_load or round_robin."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Label keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$."
  }
}
