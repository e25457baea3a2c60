# One Azure region of a Hedgeform service: one Linux VM per replica (Spot or regular, as the
# reconciler decided) in its availability zone, a Standard Load Balancer whose backend pool
# holds exactly the ready replicas, a NAT gateway for outbound traffic, and a Key Vault (the
# secret container) whose values are written out of band, never through Terraform.

data "azurerm_client_config" "current" {}

locals {
  name        = "hf-${var.service}-${var.region}"
  create_rg   = var.resource_group_name == ""
  rg_name     = local.create_rg ? azurerm_resource_group.this[0].name : var.resource_group_name
  has_secrets = length(var.secret_env_names) > 0
  members     = toset(var.lb_members)
  # Zones are named <region>-<n> so zone names stay unique across regions; Azure wants <n>.
  zone_number = { for id, r in var.replicas : id => substr(r.zone, length(r.zone) - 1, 1) }
  # Key Vault secret names allow letters, digits and '-'.
  secret_names = { for name in var.secret_env_names : name => replace(name, "_", "-") }
  # 3-24 characters, globally unique: a short service prefix and a hash of service/region.
  vault_name = "hf${substr(replace(var.service, "-", ""), 0, 12)}${substr(sha1("${var.service}/${var.region}"), 0, 8)}"
  tags = merge(var.tags, {
    "hedgeform-service" = var.service
    "hedgeform-region"  = var.region
  })
}

resource "azurerm_resource_group" "this" {
  count = local.create_rg ? 1 : 0

  name     = local.name
  location = var.region
  tags     = local.tags
}

# ---------------------------------------------------------------- network

resource "azurerm_virtual_network" "this" {
  name                = local.name
  location            = var.region
  resource_group_name = local.rg_name
  address_space       = [var.address_space]
  tags                = local.tags
}

resource "azurerm_subnet" "replicas" {
  name                 = "replicas"
  resource_group_name  = local.rg_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.subnet_prefix]
  service_endpoints    = ["Microsoft.KeyVault"]
}

resource "azurerm_network_security_group" "replicas" {
  name                = "${local.name}-replicas"
  location            = var.region
  resource_group_name = local.rg_name
  tags                = local.tags

  # A Standard Load Balancer is pass-through: clients reach the replicas' port directly.
  security_rule {
    name                       = "clients-to-service"
    description                = "Clients through the load balancer to the service port"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = tostring(var.replica_port)
    source_address_prefixes    = var.allowed_cidrs
    destination_address_prefix = "VirtualNetwork"
  }

  security_rule {
    name                       = "lb-probe"
    description                = "Load balancer health probe to the service port"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = tostring(var.replica_port)
    source_address_prefix      = "AzureLoadBalancer"
    destination_address_prefix = "VirtualNetwork"
  }
}

resource "azurerm_subnet_network_security_group_association" "replicas" {
  subnet_id                 = azurerm_subnet.replicas.id
  network_security_group_id = azurerm_network_security_group.replicas.id
}

# Outbound (packages, model weights, Key Vault) for every replica, in the pool or not.
resource "azurerm_public_ip" "nat" {
  name                = "${local.name}-nat"
  location            = var.region
  resource_group_name = local.rg_name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway" "this" {
  name                = local.name
  location            = var.region
  resource_group_name = local.rg_name
  sku_name            = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "this" {
  nat_gateway_id       = azurerm_nat_gateway.this.id
  public_ip_address_id = azurerm_public_ip.nat.id
}

resource "azurerm_subnet_nat_gateway_association" "replicas" {
  subnet_id      = azurerm_subnet.replicas.id
  nat_gateway_id = azurerm_nat_gateway.this.id
}

# ---------------------------------------------------------------- identity and secrets

resource "azurerm_user_assigned_identity" "replica" {
  name                = "${local.name}-replica"
  location            = var.region
  resource_group_name = local.rg_name
  tags                = local.tags
}

# The vault is the secret container: Key Vault secrets cannot exist without a value, so the
# module creates none; the reconciler writes them (az keyvault secret set) from its own
# environment and the replicas read them at boot. No value is in tfvars, plan or state.
resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_110:Purge protection would reserve the vault name for 90 days after the reconciler destroys a region it leaves; soft delete (7 days) stays on.
  #checkov:skip=CKV_AZURE_42:Same as CKV_AZURE_110: recoverable through soft delete, without purge protection.
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs private DNS the reconciler cannot reach from outside the VNet.
  count = local.has_secrets ? 1 : 0

  name                       = local.vault_name
  location                   = var.region
  resource_group_name        = local.rg_name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  enable_rbac_authorization  = true
  soft_delete_retention_days = 7
  purge_protection_enabled   = false
  tags                       = local.tags

  network_acls {
    #checkov:skip=CKV_AZURE_109:Default Deny once vault_allowed_cidrs names where the reconciler runs; empty keeps Allow so a first apply works.
    default_action             = length(var.vault_allowed_cidrs) > 0 ? "Deny" : "Allow"
    bypass                     = "AzureServices"
    ip_rules                   = var.vault_allowed_cidrs
    virtual_network_subnet_ids = [azurerm_subnet.replicas.id]
  }
}

resource "azurerm_role_assignment" "replica_reads_secrets" {
  count = local.has_secrets ? 1 : 0

  scope                = azurerm_key_vault.this[0].id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.replica.principal_id
}

resource "azurerm_role_assignment" "caller_writes_secrets" {
  count = local.has_secrets && var.grant_vault_writer_to_caller ? 1 : 0

  scope                = azurerm_key_vault.this[0].id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

# ---------------------------------------------------------------- replicas

resource "azurerm_network_interface" "replica" {
  for_each = var.replicas

  name                = "hf-${var.service}-${each.key}"
  location            = var.region
  resource_group_name = local.rg_name
  tags                = local.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.replicas.id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_linux_virtual_machine" "replica" {
  for_each = var.replicas

  name                            = "hf-${var.service}-${each.key}"
  computer_name                   = "hf-${var.service}-${each.key}"
  location                        = var.region
  resource_group_name             = local.rg_name
  size                            = local.runs[each.key].vm_size
  zone                            = local.zone_number[each.key]
  network_interface_ids           = [azurerm_network_interface.replica[each.key].id]
  admin_username                  = "azureuser"
  disable_password_authentication = true
  allow_extension_operations      = false
  encryption_at_host_enabled      = var.encryption_at_host

  # Spot replicas are deleted on eviction (the reconciler replaces them) and pay at most the
  # on-demand price. Replica ids encode the market, so a market flip is always a new VM.
  priority        = each.value.market == "spot" ? "Spot" : "Regular"
  eviction_policy = each.value.market == "spot" ? "Delete" : null
  max_bid_price   = each.value.market == "spot" ? -1 : null

  admin_ssh_key {
    username   = "azureuser"
    public_key = var.admin_ssh_public_key
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.replica.id]
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
    disk_size_gb         = local.runs[each.key].disk_size_gb
  }

  # The image is a resource id (/subscriptions/...) or a marketplace URN publisher:offer:sku:version.
  source_image_id = substr(local.runs[each.key].image_id, 0, 1) == "/" ? local.runs[each.key].image_id : null

  dynamic "source_image_reference" {
    for_each = substr(local.runs[each.key].image_id, 0, 1) == "/" ? [] : [split(":", local.runs[each.key].image_id)]
    content {
      publisher = source_image_reference.value[0]
      offer     = source_image_reference.value[1]
      sku       = source_image_reference.value[2]
      version   = source_image_reference.value[3]
    }
  }

  boot_diagnostics {}

  custom_data = base64encode(templatefile("${path.module}/cloud-init.sh.tftpl", {
    service      = var.service
    region       = var.region
    replica_id   = each.key
    setup_b64    = base64encode(local.runs[each.key].setup_script)
    run_b64      = base64encode(local.runs[each.key].run_script)
    envs_b64     = { for k, v in local.runs[each.key].envs : k => base64encode(v) }
    secret_names = local.secret_names
    vault_uri    = local.has_secrets ? azurerm_key_vault.this[0].vault_uri : ""
    client_id    = azurerm_user_assigned_identity.replica.client_id
  }))

  tags = merge(local.tags, {
    "hedgeform-replica"     = each.key
    "hedgeform-zone"        = each.value.zone
    "hedgeform-market"      = each.value.market
    "hedgeform-version"     = each.value.version
    "hedgeform-accelerator" = local.runs[each.key].accelerator_count > 0 ? "${local.runs[each.key].accelerator_name}:${local.runs[each.key].accelerator_count}" : "none"
  }, { for id, gpu in local.gpu_type_tag : "hedgeform-gpu-type" => gpu if id == each.key })

  depends_on = [
    azurerm_role_assignment.replica_reads_secrets,
    azurerm_subnet_nat_gateway_association.replicas,
    azurerm_subnet_network_security_group_association.replicas,
  ]
}

# ---------------------------------------------------------------- load balancer

resource "azurerm_public_ip" "lb" {
  name                = "${local.name}-lb"
  location            = var.region
  resource_group_name = local.rg_name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_lb" "this" {
  name                = local.name
  location            = var.region
  resource_group_name = local.rg_name
  sku                 = "Standard"
  tags                = local.tags

  frontend_ip_configuration {
    name                 = "public"
    public_ip_address_id = azurerm_public_ip.lb.id
  }
}

resource "azurerm_lb_backend_address_pool" "ready" {
  name            = "ready-replicas"
  loadbalancer_id = azurerm_lb.this.id
}

resource "azurerm_lb_probe" "readiness" {
  name                = "readiness"
  loadbalancer_id     = azurerm_lb.this.id
  protocol            = "Http"
  port                = var.replica_port
  request_path        = var.readiness_path
  interval_in_seconds = var.health_check_interval_seconds
  number_of_probes    = var.health_check_unhealthy_threshold
}

resource "azurerm_lb_rule" "service" {
  name                           = "service"
  loadbalancer_id                = azurerm_lb.this.id
  protocol                       = "Tcp"
  frontend_port                  = var.frontend_port
  backend_port                   = var.replica_port
  frontend_ip_configuration_name = "public"
  backend_address_pool_ids       = [azurerm_lb_backend_address_pool.ready.id]
  probe_id                       = azurerm_lb_probe.readiness.id
  idle_timeout_in_minutes        = 30
  disable_outbound_snat          = true
}

# The backend pool holds exactly the replicas the reconciler found ready.
resource "azurerm_network_interface_backend_address_pool_association" "member" {
  for_each = local.members

  network_interface_id    = azurerm_network_interface.replica[each.key].id
  ip_configuration_name   = "primary"
  backend_address_pool_id = azurerm_lb_backend_address_pool.ready.id
}
