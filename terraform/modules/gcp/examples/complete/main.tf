# A region stack as Hedgeform renders it: one Spot and one standard L4 replica in us-central1,
# the Spot one behind the load balancer. Needs GCP credentials; after apply, add the secret:
#   printf %s "$HF_TOKEN" | gcloud secrets versions add hf-example-us-central1-HF_TOKEN \
#     --project my-project --data-file=-

provider "google" {
  project = "my-project"
  region  = "us-central1"
}

module "region" {
  source = "../../"

  service           = "example"
  project           = "my-project"
  region            = "us-central1"
  machine_type      = "g2-standard-8"
  accelerator_name  = "L4"
  accelerator_count = 1
  image_id          = "projects/deeplearning-platform-release/global/images/family/common-cu123-debian-11-py310"
  disk_size_gb      = 256
  replica_port      = 8081
  readiness_path    = "/health"
  setup_script      = "pip install vllm"
  run_script        = "vllm serve $MODEL_NAME --host 0.0.0.0 --port 8081"
  envs              = { MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct" }
  secret_env_names  = ["HF_TOKEN"]

  replicas = {
    "us-central1-a-spot-0" = { zone = "us-central1-a", market = "spot", version = "1" }
    "us-central1-b-od-1"   = { zone = "us-central1-b", market = "on_demand", version = "1" }
  }
  lb_members = ["us-central1-a-spot-0"]

  labels = { team = "ml-serving" }
}

output "endpoint" {
  value = "http://${module.region.lb_ip_address}"
}
