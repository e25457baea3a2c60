# A region stack with two replicas and the front stack with the load balancer, as Hedgeform
# renders them. Run from a checkout after `make setup`:
#   terraform init && terraform apply -var hedgeform_bin=$PWD/../../../../../.venv/bin/hedgeform

variable "hedgeform_bin" {
  description = "Absolute path of the hedgeform executable."
  type        = string
}

module "region" {
  source        = "../../"
  service       = "example"
  stack         = "local-1"
  hedgeform_bin = var.hedgeform_bin
  sandbox_dir   = abspath("${path.root}/.sandbox")
  replicas = {
    "local-1a-spot-0" = { zone = "local-1a", market = "spot", version = "1", model_name = "example-model", cold_start_seconds = 2 }
    "local-1b-od-1"   = { zone = "local-1b", market = "on_demand", version = "1", model_name = "example-model", cold_start_seconds = 2 }
  }
}

module "front" {
  source        = "../../"
  service       = "example"
  stack         = "front"
  hedgeform_bin = var.hedgeform_bin
  sandbox_dir   = abspath("${path.root}/.sandbox")
  load_balancer = {
    port    = 18081
    members = []
    epoch   = "0"
  }
}

output "endpoint" {
  value = module.front.endpoint
}
