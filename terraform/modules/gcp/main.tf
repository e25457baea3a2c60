# One GCP region of a Hedgeform service: one Compute Engine instance per replica (Spot or
# standard, as the reconciler decided), per-zone unmanaged instance groups holding exactly the
# ready replicas behind a global external Application Load Balancer, and one Secret Manager
# secret (no version) per secret environment variable; values are added out of band.

locals {
  name    = "hf-${var.service}-${var.region}"
  zones   = toset([for r in var.replicas : r.zone])
  members = toset(var.lb_members)
  tls     = length(var.ssl_certificates) > 0
  tag     = "hf-${var.service}"
  labels = merge(var.labels, {
    hedgeform-service = var.service
    hedgeform-region  = var.region
  })
  # Health checks and Google Front Ends reach replicas from these ranges only.
  google_lb_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
  secret_ids       = { for name in var.secret_env_names : name => "hf-${var.service}-${var.region}-${name}" }
}

# ---------------------------------------------------------------- secrets (containers only)

# No google_secret_manager_secret_version here on purpose: the reconciler adds the value from
# its own environment, so it is never in tfvars, plan or state.
resource "google_secret_manager_secret" "env" {
  for_each = local.secret_ids

  project   = var.project
  secret_id = each.value
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_service_account" "replica" {
  project      = var.project
  account_id   = "hf-${substr(sha1("${var.service}/${var.region}"), 0, 12)}"
  display_name = "Hedgeform ${var.service} replicas in ${var.region}"
}

resource "google_secret_manager_secret_iam_member" "replica_reads" {
  for_each = google_secret_manager_secret.env

  project   = var.project
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.replica.email}"
}

# ---------------------------------------------------------------- network

resource "google_compute_firewall" "lb_to_replicas" {
  project       = var.project
  name          = "${local.name}-lb"
  network       = var.network
  description   = "Google load balancer and health checks to Hedgeform ${var.service} replicas"
  direction     = "INGRESS"
  source_ranges = local.google_lb_ranges
  target_tags   = [local.tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.replica_port)]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

# ---------------------------------------------------------------- replicas

resource "google_compute_instance" "replica" {
  #checkov:skip=CKV_GCP_40:The default network has no Cloud NAT; an ephemeral external IP is the only way out. Ingress is limited to Google's load balancer ranges (set external_ip=false with Cloud NAT).
  for_each = var.replicas

  project      = var.project
  name         = "hf-${var.service}-${each.key}"
  zone         = each.value.zone
  machine_type = local.runs[each.key].machine_type
  tags         = [local.tag]
  labels = merge(local.labels, {
    hedgeform-replica = each.key
    hedgeform-market  = each.value.market
    hedgeform-version = each.value.version
  }, { for id, label in local.gpu_type_label : "hedgeform-gpu-type" => label if id == each.key })

  boot_disk {
    auto_delete       = true
    kms_key_self_link = var.disk_cmek_self_link == "" ? null : var.disk_cmek_self_link
    initialize_params {
      image = local.runs[each.key].image_id
      size  = local.runs[each.key].disk_size_gb
      type  = "pd-balanced"
    }
  }

  network_interface {
    network    = var.network
    subnetwork = var.subnetwork == "" ? null : var.subnetwork

    dynamic "access_config" {
      for_each = var.external_ip ? [each.key] : []
      content {
        network_tier = "PREMIUM"
      }
    }
  }

  dynamic "guest_accelerator" {
    for_each = local.runs[each.key].guest_accelerator_type != "" && local.runs[each.key].accelerator_count > 0 ? [local.runs[each.key]] : []
    content {
      type  = guest_accelerator.value.guest_accelerator_type
      count = guest_accelerator.value.accelerator_count
    }
  }

  # Spot replicas are deleted on preemption (the reconciler replaces them); GPUs cannot live
  # migrate, so every replica terminates on host maintenance. Replica ids encode the market,
  # so a market flip is always a new instance.
  scheduling {
    provisioning_model          = each.value.market == "spot" ? "SPOT" : "STANDARD"
    preemptible                 = each.value.market == "spot"
    automatic_restart           = each.value.market != "spot"
    on_host_maintenance         = "TERMINATE"
    instance_termination_action = each.value.market == "spot" ? "DELETE" : null
  }

  shielded_instance_config {
    enable_secure_boot          = var.secure_boot
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  service_account {
    email  = google_service_account.replica.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
    serial-port-enable     = "false"
    install-nvidia-driver  = "True"
    startup-script = templatefile("${path.module}/startup.sh.tftpl", {
      service    = var.service
      project    = var.project
      region     = var.region
      replica_id = each.key
      setup_b64  = base64encode(local.runs[each.key].setup_script)
      run_b64    = base64encode(local.runs[each.key].run_script)
      envs_b64   = { for k, v in local.runs[each.key].envs : k => base64encode(v) }
      secret_ids = { for k, s in google_secret_manager_secret.env : k => s.secret_id }
    })
  }

  depends_on = [google_secret_manager_secret_iam_member.replica_reads]
}

# ---------------------------------------------------------------- load balancer

# One unmanaged group per zone holding exactly the ready replicas of that zone.
resource "google_compute_instance_group" "zone" {
  for_each = local.zones

  project   = var.project
  name      = "hf-${var.service}-${each.key}"
  zone      = each.key
  network   = var.network
  instances = [for id in sort(tolist(local.members)) : google_compute_instance.replica[id].self_link if var.replicas[id].zone == each.key]

  named_port {
    name = "http"
    port = var.replica_port
  }
}

resource "google_compute_health_check" "readiness" {
  project             = var.project
  name                = "${local.name}-ready"
  check_interval_sec  = var.health_check_interval_seconds
  timeout_sec         = var.health_check_timeout_seconds
  healthy_threshold   = var.health_check_healthy_threshold
  unhealthy_threshold = var.health_check_unhealthy_threshold

  http_health_check {
    port         = var.replica_port
    request_path = var.readiness_path
  }

  log_config {
    enable = false
  }
}

resource "google_compute_backend_service" "replicas" {
  project                         = var.project
  name                            = local.name
  protocol                        = "HTTP"
  port_name                       = "http"
  load_balancing_scheme           = "EXTERNAL_MANAGED"
  locality_lb_policy              = var.load_balancing_policy == "round_robin" ? "ROUND_ROBIN" : "LEAST_REQUEST"
  timeout_sec                     = var.request_timeout_seconds
  connection_draining_timeout_sec = 30
  health_checks                   = [google_compute_health_check.readiness.id]

  dynamic "backend" {
    for_each = google_compute_instance_group.zone
    content {
      group           = backend.value.self_link
      balancing_mode  = "UTILIZATION"
      max_utilization = 0.8
      capacity_scaler = 1.0
    }
  }

  log_config {
    enable      = true
    sample_rate = 0.1
  }
}

resource "google_compute_url_map" "this" {
  project         = var.project
  name            = local.name
  default_service = google_compute_backend_service.replicas.id
}

resource "google_compute_global_address" "this" {
  project = var.project
  name    = local.name
}

resource "google_compute_target_http_proxy" "this" {
  project = var.project
  name    = "${local.name}-http"
  url_map = google_compute_url_map.this.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project
  name                  = "${local.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.this.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.this.id
  labels                = local.labels
}

resource "google_compute_target_https_proxy" "this" {
  count = local.tls ? 1 : 0

  project          = var.project
  name             = "${local.name}-https"
  url_map          = google_compute_url_map.this.id
  ssl_certificates = var.ssl_certificates
}

resource "google_compute_global_forwarding_rule" "https" {
  count = local.tls ? 1 : 0

  project               = var.project
  name                  = "${local.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.this.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.this[0].id
  labels                = local.labels
}
