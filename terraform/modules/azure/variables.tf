variable "service" {
  description = "Service name (services/<service>.yaml); prefixes every resource name and tag."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.service))
    error_message = "The service name must match ^[a-z][a-z0-9-]{0,22}[a-z0-9]$ (2-24 characters)."
  }
}

variable "region" {
  description = "Azure region (location) of this stack, e.g. eastus."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]+$", var.region))
    error_message = "The region must be an Azure location name such as eastus."
  }
}

variable "replicas" {
  description = "Replicas of this region keyed by replica id: the zone (<region>-<1|2|3>, e.g. eastus-1), market (spot or on_demand) and service version of each (a key of `versions`, else the top-level VM size/image/scripts apply). The reconciler owns the count; no scale set or autoscaler may change it."
  type = map(object({
    zone    = string
    market  = string
    version = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for id, r in var.replicas :
      can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[a-z][a-z0-9]+-[1-3]$", r.zone)) && contains(["spot", "on_demand"], r.market) && can(regex("^[1-9][0-9]{0,8}$", r.version))
    ])
    error_message = "Replica ids must match ^[a-z0-9][a-z0-9-]{0,34}$, zones must look like eastus-1, market must be spot or on_demand and version a number from 1."
  }
}

variable "replica_accelerators" {
  description = "Several GPU types in this region (issue 15): the type of each replica that runs one, keyed by replica id; each is a key of `accelerator_types`. The VM is tagged hedgeform-gpu-type with it, which the reconciler reads back. A replica not listed runs its version's VM size."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id, acc in var.replica_accelerators : can(regex("^[a-z0-9][a-z0-9-]{0,34}$", id)) && can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc))])
    error_message = "Keys of replica_accelerators must be replica ids (^[a-z0-9][a-z0-9-]{0,34}$) and values GPU type names of letters, digits, '_', '.' and '-'."
  }
}

variable "accelerator_types" {
  description = "What each GPU type of `replica_accelerators` runs on: its VM size and the accelerator name and count it carries (tags). A typed replica takes these from its type and its image, disk and scripts from its version."
  type = map(object({
    vm_size           = string
    accelerator_name  = string
    accelerator_count = number
  }))
  default = {}

  validation {
    condition     = alltrue([for acc, t in var.accelerator_types : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", acc)) && can(regex("^Standard_[A-Za-z0-9_]+$", t.vm_size)) && t.accelerator_count >= 0 && floor(t.accelerator_count) == t.accelerator_count])
    error_message = "Keys of accelerator_types must be GPU type names as in replica_accelerators; VM sizes must look like Standard_NC4as_T4_v3 and accelerator counts be whole numbers."
  }
}

variable "lb_members" {
  description = "Replica ids registered in the load balancer's backend pool: exactly the ready replicas. Every id must be a key of `replicas`."
  type        = list(string)
  default     = []
}

variable "vm_size" {
  description = "VM size of every replica, e.g. Standard_NC4as_T4_v3 (one T4)."
  type        = string

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.vm_size))
    error_message = "The VM size must look like Standard_NC4as_T4_v3."
  }
}

variable "accelerator_name" {
  description = "Accelerator the VM size carries (e.g. L4), or empty for none; recorded in tags for observability."
  type        = string
  default     = ""
}

variable "accelerator_count" {
  description = "Number of accelerators per replica (0 for none); recorded in tags."
  type        = number
  default     = 0
}

variable "image_id" {
  description = "Image of every replica: a marketplace URN publisher:offer:sku:version (e.g. microsoft-dsvm:ubuntu-hpc:2204:latest, with NVIDIA drivers) or an image resource id (/subscriptions/...)."
  type        = string

  validation {
    condition     = can(regex("^(/subscriptions/[^ ]+|[^: ]+:[^: ]+:[^: ]+:[^: ]+)$", var.image_id))
    error_message = "The image id must be a URN publisher:offer:sku:version or an image resource id."
  }
}

variable "disk_size_gb" {
  description = "Size of each replica's Premium SSD OS disk, in GiB."
  type        = number
  default     = 256

  validation {
    condition     = var.disk_size_gb >= 8 && var.disk_size_gb <= 16384
    error_message = "The disk size must be between 8 and 16384 GiB."
  }
}

variable "replica_port" {
  description = "TCP port the service listens on in each replica (the spec's `ports`); the load balancing rule forwards to it."
  type        = number

  validation {
    condition     = var.replica_port >= 1 && var.replica_port <= 65535 && floor(var.replica_port) == var.replica_port
    error_message = "The replica port must be an integer in 1..65535."
  }
}

variable "readiness_path" {
  description = "HTTP path of the readiness probe (the spec's readiness_probe.path); the load balancer's HTTP probe GETs it."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._~/?=&%-]*$", var.readiness_path))
    error_message = "The readiness path must start with / and contain only URL-safe characters."
  }
}

variable "health_check_interval_seconds" {
  description = "Seconds between probes of a replica (interval_in_seconds): max(10, timeout + 1) from the spec (SkyServe probes every 10 s). The Azure probe has no timeout setting of its own. Azure accepts 5 or more."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_interval_seconds >= 5 && floor(var.health_check_interval_seconds) == var.health_check_interval_seconds
    error_message = "The health probe interval must be a whole number of seconds, at least 5."
  }
}

variable "health_check_unhealthy_threshold" {
  description = "Failed probes before a replica leaves rotation (number_of_probes): the spec's readiness_probe.consecutive_failure_threshold_timeout divided by the interval, rounded, clamped to 2-10."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_unhealthy_threshold >= 1 && var.health_check_unhealthy_threshold <= 100 && floor(var.health_check_unhealthy_threshold) == var.health_check_unhealthy_threshold
    error_message = "The number of probes must be a whole number in 1..100."
  }
}

variable "versions" {
  description = "What the replicas of each service version run, by version: a replica launched for an earlier version keeps its VM size, image, disk and cloud-init while a rollout replaces it (a new version gets new replica ids, never an in-place change). Non-secret envs only, as `envs`."
  type = map(object({
    vm_size           = string
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
    condition     = alltrue([for v, c in var.versions : can(regex("^[1-9][0-9]{0,8}$", v)) && can(regex("^Standard_[A-Za-z0-9_]+$", c.vm_size)) && can(regex("^(/subscriptions/[^ ]+|[^: ]+:[^: ]+:[^: ]+:[^: ]+)$", c.image_id)) && c.disk_size_gb >= 8 && c.disk_size_gb <= 16384])
    error_message = "Version keys must be numbers from 1; VM sizes, images and disks as the top-level variables say."
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
  description = "Names of environment variables whose values are secrets. The module creates a Key Vault (the container) that the replicas' identity may read; the reconciler writes each value as secret NAME with '_' replaced by '-', out of band, and replicas read it at boot, so no value is in tfvars or state."
  type        = list(string)

  validation {
    condition = alltrue([for name in var.secret_env_names : can(regex("^[A-Za-z][A-Za-z0-9_]*$", name))]) && length(distinct([
      for name in var.secret_env_names : lower(replace(name, "_", "-"))
    ])) == length(var.secret_env_names)
    error_message = "Secret names must match ^[A-Za-z][A-Za-z0-9_]*$ and stay distinct once lowercased with '_' as '-' (Key Vault names)."
  }
}

variable "admin_ssh_public_key" {
  description = "OpenSSH public key of the VMs' admin user (azureuser); password login is disabled. A public key is not a secret."
  type        = string

  validation {
    condition     = can(regex("^(ssh-(rsa|ed25519)|ecdsa-sha2-nistp(256|384|521)) ", var.admin_ssh_public_key))
    error_message = "The admin SSH public key must be an OpenSSH public key line."
  }
}

variable "resource_group_name" {
  description = "Existing resource group for this stack; empty creates hf-<service>-<region>."
  type        = string
  default     = ""
}

variable "address_space" {
  description = "Address space of the stack's virtual network."
  type        = string
  default     = "10.42.0.0/16"
}

variable "subnet_prefix" {
  description = "Address prefix of the replicas' subnet (inside address_space)."
  type        = string
  default     = "10.42.1.0/24"
}

variable "allowed_cidrs" {
  description = "Client CIDR blocks allowed through the layer-4 load balancer to the replicas' port."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "frontend_port" {
  description = "Port of the load balancer's public frontend."
  type        = number
  default     = 80
}

variable "vault_allowed_cidrs" {
  description = "Public CIDRs allowed to reach the Key Vault (where the reconciler writes secrets from); empty leaves the vault's network open (access still needs Entra ID RBAC)."
  type        = list(string)
  default     = []
}

variable "grant_vault_writer_to_caller" {
  description = "Grant the identity running Terraform (the reconciler) Key Vault Secrets Officer so it can write the secret values."
  type        = bool
  default     = true
}

variable "encryption_at_host" {
  description = "Encrypt temp disks and caches at the host; needs the EncryptionAtHost feature registered on the subscription."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
