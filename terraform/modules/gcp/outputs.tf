output "replicas" {
  description = "Replica id -> instance name, instance id, private IP, zone and market."
  value = {
    for id, i in google_compute_instance.replica : id => {
      instance_name = i.name
      instance_id   = i.instance_id
      private_ip    = i.network_interface[0].network_ip
      zone          = i.zone
      market        = var.replicas[id].market
    }
  }
}

output "lb_members" {
  description = "Replica ids in the load balancer's instance groups."
  value       = sort(tolist(local.members))
}

output "lb_ip_address" {
  description = "Global IP address of the load balancer (an origin for the front stack)."
  value       = google_compute_global_address.this.address
}

output "lb_url" {
  description = "The load balancer's URL: https:// when ssl_certificates are set, else http://."
  value       = "${local.tls ? "https" : "http"}://${google_compute_global_address.this.address}"
}

output "backend_service" {
  description = "Name of the backend service; its request_count metric (loadbalancing.googleapis.com/https/request_count) is the load signal."
  value       = google_compute_backend_service.replicas.name
}

output "instance_groups" {
  description = "Zone -> self link of the unmanaged instance group holding that zone's ready replicas."
  value       = { for z, g in google_compute_instance_group.zone : z => g.self_link }
}

output "secret_ids" {
  description = "Environment variable name -> Secret Manager secret id (no version); the reconciler adds each value as a version."
  value       = { for name, s in google_secret_manager_secret.env : name => s.secret_id }
}

output "service_account_email" {
  description = "Service account the replicas run as (reads the secrets)."
  value       = google_service_account.replica.email
}
