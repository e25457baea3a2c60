output "replicas" {
  description = "Replica id -> VM id, VM name, private IP, zone and market."
  value = {
    for id, vm in azurerm_linux_virtual_machine.replica : id => {
      vm_id      = vm.id
      vm_name    = vm.name
      private_ip = azurerm_network_interface.replica[id].private_ip_address
      zone       = var.replicas[id].zone
      market     = var.replicas[id].market
    }
  }
}

output "lb_members" {
  description = "Replica ids in the load balancer's backend pool."
  value       = sort(keys(azurerm_network_interface_backend_address_pool_association.member))
}

output "lb_ip_address" {
  description = "Public IP address of the Standard Load Balancer (an origin for the front stack)."
  value       = azurerm_public_ip.lb.ip_address
}

output "lb_url" {
  description = "The load balancer's URL (plain HTTP on the Standard Load Balancer's public IP and frontend_port)."
  value       = "http://${azurerm_public_ip.lb.ip_address}${var.frontend_port == 80 ? "" : ":${var.frontend_port}"}"
}

output "backend_pool_id" {
  description = "Id of the backend pool holding the ready replicas."
  value       = azurerm_lb_backend_address_pool.ready.id
}

output "resource_group_name" {
  description = "Resource group of this stack (the activity log there records Spot evictions)."
  value       = local.rg_name
}

output "key_vault_uri" {
  description = "URI of the Key Vault holding the secret environment variables; null without secrets."
  value       = local.has_secrets ? azurerm_key_vault.this[0].vault_uri : null
}

output "secret_names" {
  description = "Environment variable name -> Key Vault secret name the reconciler must write (az keyvault secret set)."
  value       = local.secret_names
}

output "replica_identity_client_id" {
  description = "Client id of the replicas' user-assigned managed identity (reads the secrets)."
  value       = azurerm_user_assigned_identity.replica.client_id
}
