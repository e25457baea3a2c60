variable "service" {
  description = "Service name (services/<service>.yaml); named in health check tags."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.service))
    error_message = "The service name must match ^[a-z0-9][a-z0-9-]{0,62}$."
  }
}

variable "domain_name" {
  description = "Fully qualified name of the service endpoint, e.g. llama.example.com, inside the hosted zone."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}\\.?$", var.domain_name))
    error_message = "The domain name must be a lowercase fully qualified DNS name."
  }
}

variable "zone_id" {
  description = "Route 53 hosted zone id holding domain_name."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{1,31}$", var.zone_id))
    error_message = "The zone id must be a Route 53 hosted zone id (Z...)."
  }
}

variable "origins" {
  description = "Region stacks serving the endpoint, keyed by stack name (e.g. aws-us-east-1): cloud (aws, gcp or azure), region, address (the AWS ALB DNS name, or the IPv4 address of a GCP/Azure load balancer) and weight (0-255; 0 takes the origin out unless all are 0)."
  type = map(object({
    cloud   = string
    region  = string
    address = string
    weight  = number
  }))

  validation {
    condition = alltrue([
      for k, o in var.origins :
      can(regex("^[a-z0-9][a-z0-9-]{0,62}$", k)) &&
      contains(["aws", "gcp", "azure"], o.cloud) &&
      o.weight >= 0 && o.weight <= 255 && floor(o.weight) == o.weight &&
      (can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", o.address)) || (o.cloud == "aws" && can(regex("^[a-z0-9.-]+\\.elb\\.amazonaws\\.com$", o.address))))
    ])
    error_message = "Origin keys must match ^[a-z0-9][a-z0-9-]{0,62}$, cloud must be aws, gcp or azure, weight an integer 0..255, and address an IPv4 address or (aws) an ALB DNS name."
  }
}

variable "health_check_path" {
  description = "HTTP path Route 53 health checkers GET on every origin (the readiness path through the region's load balancer)."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._~/?=&%-]*$", var.health_check_path))
    error_message = "The health check path must start with / and contain only URL-safe characters."
  }
}

variable "health_check_protocol" {
  description = "HTTP or HTTPS: how health checkers reach the origins."
  type        = string
  default     = "HTTP"

  validation {
    condition     = contains(["HTTP", "HTTPS"], var.health_check_protocol)
    error_message = "The health check protocol must be HTTP or HTTPS."
  }
}

variable "health_check_port" {
  description = "Port of the origins' load balancer frontends."
  type        = number
  default     = 80
}

variable "health_check_interval_seconds" {
  description = "Seconds between health checks from each checker: 10 (fast, costs more) or 30."
  type        = number
  default     = 10

  validation {
    condition     = contains([10, 30], var.health_check_interval_seconds)
    error_message = "The health check interval must be 10 or 30."
  }
}

variable "ttl_seconds" {
  description = "TTL of the IP (non-alias) records: bounds how long clients keep an origin that failed."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to the health checks."
  type        = map(string)
  default     = {}
}
