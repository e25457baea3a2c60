# A region stack as Hedgeform renders it: one Spot and one regular T4 replica in eastus, the
# Spot one in the backend pool. Needs Azure credentials; after apply, write the secret:
#   printf %s "$HF_TOKEN" | az keyvault secret set --vault-name <from key_vault_uri> \
#     --name HF-TOKEN --file /dev/stdin

provider "azurerm" {
  features {}
}

module "region" {
  source = "../../"

  service              = "example"
  region               = "eastus"
  vm_size              = "Standard_NC4as_T4_v3"
  accelerator_name     = "T4"
  accelerator_count    = 1
  image_id             = "microsoft-dsvm:ubuntu-hpc:2204:latest"
  admin_ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample hedgeform"
  disk_size_gb         = 256
  replica_port         = 8081
  readiness_path       = "/health"
  setup_script         = "pip install vllm"
  run_script           = "vllm serve $MODEL_NAME --host 0.0.0.0 --port 8081"
  envs                 = { MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct" }
  secret_env_names     = ["HF_TOKEN"]

  replicas = {
    "eastus-1-spot-0" = { zone = "eastus-1", market = "spot", version = "1" }
    "eastus-2-od-1"   = { zone = "eastus-2", market = "on_demand", version = "1" }
  }
  lb_members = ["eastus-1-spot-0"]

  tags = { team = "ml-serving" }
}

output "endpoint" {
  value = "http://${module.region.lb_ip_address}"
}
