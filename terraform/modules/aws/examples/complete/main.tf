# A region stack as Hedgeform renders it: one spot and one on-demand L4 replica in us-east-1,
# the spot one in the target group. Needs AWS credentials; after apply, write the secret:
#   aws secretsmanager put-secret-value --secret-id hedgeform/example/HF_TOKEN \
#     --secret-string "$HF_TOKEN"

provider "aws" {
  region = "us-east-1"
}

module "region" {
  source = "../../"

  service       = "example"
  region        = "us-east-1"
  instance_type = "g6.xlarge"
  # Pin an AMI of the region, e.g. from the public SSM parameter
  # /aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id
  image_id          = "ami-0123456789abcdef0"
  accelerator_name  = "L4"
  accelerator_count = 1
  disk_size_gb      = 256
  replica_port      = 8081
  readiness_path    = "/health"
  setup_script      = "pip install vllm"
  run_script        = "vllm serve $MODEL_NAME --host 0.0.0.0 --port 8081"
  envs              = { MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct" }
  secret_env_names  = ["HF_TOKEN"]

  replicas = {
    "us-east-1a-spot-0" = { zone = "us-east-1a", market = "spot", version = "1" }
    "us-east-1b-od-1"   = { zone = "us-east-1b", market = "on_demand", version = "1" }
  }
  lb_members = ["us-east-1a-spot-0"]

  tags = { team = "ml-serving" }
}

output "endpoint" {
  value = "http://${module.region.lb_dns_name}"
}

output "notices_queue_url" {
  value = module.region.notices_queue_url
}
