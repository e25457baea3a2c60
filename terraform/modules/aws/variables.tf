variable "service" {
  description = "Service name (services/<service>.yaml); prefixes every resource name and tag."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.service))
    error_message = "The service name must match ^[a-z][a-z0-9-]{0,22}[a-z0-9]$ (2-24 characters: ALB and target group names are at most 32)."
  }
}

variable "region" {
  description = "AWS region of this stack, e.g. us-east-1; the provider must be configured for the same region."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "The region must look like us-east-1."
  }
}

variable "replicas" {
  description = "Replicas of this region keyed by replica id: the availability zone, market (spot or on_demand) and service version of each (a key of `versions`, else the top-level instance_type/image/scripts apply). The reconciler owns the count; no autoscaler may change it."
  type = map(object({
    zone    = string
    market  = string
    version = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for id, r in var.replicas :
      can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$", r.zone)) && contains(["spot", "on_demand"], r.market) && can(regex("^[1-9][0-9]{0,8}$", r.version))
    ])
    error_message = "Replica ids must match ^[a-z0-9][a-z0-9-]{0,34}$, zones must look like us-east-1a, market must be spot or on_demand and version a number from 1."
  }
}

variable "replica_accelerators" {
  description = "Several GPU types in this region (issue 15): the type of each replica that runs one, keyed by replica id; each is a key of `accelerator_types`. A replica not listed runs its version's instance type."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id, acc in var.replica_accelerators : can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc))])
    error_message = "Keys of replica_accelerators must be replica ids (^[a-z0-9][a-z0-9-]{0,34}$) and values GPU type names of letters, digits, '_', '.' and '-'."
  }
}

variable "accelerator_types" {
  description = "What each GPU type of `replica_accelerators` runs on: its EC2 instance type and the accelerator name and count it carries (tags)."
  type = map(object({
    instance_type     = string
    accelerator_name  = string
    accelerator_count = number
  }))
  default = {}

  validation {
    condition     = length(var.accelerator_types) <= 4 && alltrue([for acc in keys(var.accelerator_types) : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc))])
    error_message = "At most 4 GPU types per region (an ALB forward action takes 5 target groups: one per type and the shared one), named with letters, digits, '_', '.' and '-'."
  }
}

variable "accelerator_weights" {
  description = "Several GPU types in this region: the listener's weight of each type's target group (0-999, the ALB's range), in proportion to the type's serving capacity (the reconciler: its ready replicas times one replica's requests/s); a type not listed weighs 0. Unused when `accelerator_types` is empty."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for acc, w in var.accelerator_weights : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc)) && w >= 0 && w <= 999 && floor(w) == w])
    error_message = "Keys of accelerator_weights must be GPU type names and weights whole numbers from 0 to 999."
  }
}

variable "untyped_weight" {
  description = "Several GPU types in this region: the listener's weight (0-999) of the shared target group, which holds the registered replicas of no type (e.g. launched before the service mixed). Unused when `accelerator_types` is empty."
  type        = number
  default     = 0

  validation {
    condition     = var.untyped_weight >= 0 && var.untyped_weight <= 999 && floor(var.untyped_weight) == var.untyped_weight
    error_message = "The untyped_weight must be a whole number from 0 to 999."
  }
}

variable "lb_members" {
  description = "Replica ids registered in the target group: exactly the ready replicas. Every id must be a key of `replicas`."
  type        = list(string)
  default     = []
}

variable "instance_type" {
  description = "EC2 instance type of every replica, e.g. g6.xlarge (one L4)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance type must look like g6.xlarge."
  }
}

variable "accelerator_name" {
  description = "Accelerator the instance type carries (e.g. L4), or empty for none; recorded in tags for observability."
  type        = string
  default     = ""
}

variable "accelerator_count" {
  description = "Number of accelerators per replica (0 for none); recorded in tags."
  type        = number
  default     = 0
}

variable "image_id" {
  description = "AMI id of every replica (a GPU image with NVIDIA drivers and the AWS CLI, e.g. the Deep Learning Base OSS Nvidia Driver AMI). Pinned by the reconciler so a new AMI release never replaces running replicas by surprise."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.image_id))
    error_message = "The image id must be an AMI id (ami-...)."
  }
}

variable "disk_size_gb" {
  description = "Size of each replica's encrypted gp3 root volume, in GiB."
  type        = number
  default     = 256

  validation {
    condition     = var.disk_size_gb >= 8 && var.disk_size_gb <= 16384
    error_message = "The disk size must be between 8 and 16384 GiB."
  }
}

variable "replica_port" {
  description = "TCP port the service listens on in each replica (the spec's `ports`); the target group forwards to it."
  type        = number

  validation {
    condition     = var.replica_port >= 1 && var.replica_port <= 65535 && floor(var.replica_port) == var.replica_port
    error_message = "The replica port must be an integer in 1..65535."
  }
}

variable "readiness_path" {
  description = "HTTP path of the readiness probe (the spec's readiness_probe.path); the target group health check GETs it."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._~/?=&%-]*$", var.readiness_path))
    error_message = "The readiness path must start with / and contain only URL-safe characters."
  }
}

variable "health_check_timeout_seconds" {
  description = "Seconds the target group health check waits for the readiness path to answer: the spec's readiness_probe.timeout_seconds. AWS accepts 2-120 and requires it to be shorter than health_check_interval_seconds."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_timeout_seconds >= 2 && var.health_check_timeout_seconds <= 120 && floor(var.health_check_timeout_seconds) == var.health_check_timeout_seconds
    error_message = "The health check timeout must be a whole number of seconds in 2..120."
  }
}

variable "health_check_interval_seconds" {
  description = "Seconds between health checks of a replica: max(10, timeout + 1) from the spec (SkyServe probes every 10 s; AWS requires the interval to exceed the timeout). AWS accepts 5-300."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval_seconds >= 5 && var.health_check_interval_seconds <= 300 && floor(var.health_check_interval_seconds) == var.health_check_interval_seconds
    error_message = "The health check interval must be a whole number of seconds in 5..300."
  }
}

variable "health_check_healthy_threshold" {
  description = "Consecutive HTTP 200 answers before a replica counts as healthy (2, the AWS minimum: SkyServe counts the first 200). AWS accepts 2-10."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_healthy_threshold >= 2 && var.health_check_healthy_threshold <= 10 && floor(var.health_check_healthy_threshold) == var.health_check_healthy_threshold
    error_message = "The healthy threshold must be a whole number in 2..10."
  }
}

variable "health_check_unhealthy_threshold" {
  description = "Consecutive failed checks before a replica counts as unhealthy: the spec's readiness_probe.consecutive_failure_threshold_timeout divided by the interval, rounded, clamped to 2-10 (the AWS range)."
  type        = number
  default     = 3

  validation {
    condition     = var.health_check_unhealthy_threshold >= 2 && var.health_check_unhealthy_threshold <= 10 && floor(var.health_check_unhealthy_threshold) == var.health_check_unhealthy_threshold
    error_message = "The unhealthy threshold must be a whole number in 2..10."
  }
}

variable "versions" {
  description = "What the replicas of each service version run, by version: a replica launched for an earlier version keeps its instance type, image, disk and scripts while a rollout replaces it (a new version gets new replica ids, never an in-place change). Non-secret envs only, as `envs`."
  type = map(object({
    instance_type     = string
    accelerator_name  = string
    accelerator_count = number
    image_id          = string
    disk_size_gb      = number
    setup_script      = string
    run_script        = string
    envs              = map(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for v, c in var.versions : can(regex("^[1-9][0-9]{0,8}$", v)) && can(regex("^ami-[0-9a-f]{8,17}$", c.image_id)) && c.disk_size_gb >= 8 && c.disk_size_gb <= 16384])
    error_message = "Version keys must be numbers from 1, images AMI ids, disks 8-16384 GB."
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
  description = "Names of environment variables whose values are secrets. The module creates one empty Secrets Manager secret per name; the reconciler writes the value out of band and replicas read it at boot, so no value is in tfvars or state."
  type        = list(string)

  validation {
    condition     = alltrue([for name in var.secret_env_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name))])
    error_message = "Secret environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$."
  }
}

variable "vpc_id" {
  description = "VPC of the replicas and the load balancer; empty means the region's default VPC."
  type        = string
  default     = ""
}

variable "subnet_ids" {
  description = "Subnet per availability zone (zone -> subnet id) for replicas and the load balancer; empty means the default subnet of each zone of the VPC."
  type        = map(string)
  default     = {}
}

variable "associate_public_ip" {
  description = "Give replicas a public IP for outbound traffic (package and model downloads) when the subnets have no NAT gateway. Inbound traffic is limited to the load balancer either way."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "CIDR blocks allowed to reach the load balancer's listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on 443 (port 80 then redirects to it); empty serves plain HTTP on 80 only."
  type        = string
  default     = ""
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout: long enough for a streamed completion."
  type        = number
  default     = 300
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "load_balancing_policy" {
  description = "The spec's service.load_balancing_policy: least_load (least outstanding requests) or round_robin."
  type        = string
  default     = "least_load"

  validation {
    condition     = contains(["least_load", "round_robin"], var.load_balancing_policy)
    error_message = "The load balancing policy must be least_load or round_robin."
  }
}
