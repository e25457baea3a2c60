# The front stack as Hedgeform renders it: one name across an AWS and a GCP region stack.
# Needs AWS credentials for Route 53 and an existing hosted zone.

provider "aws" {
  region = "us-east-1"
}

module "front" {
  source = "../../"

  service     = "example"
  domain_name = "llama.example.com"
  zone_id     = "Z0123456789ABCDEFGHIJ"

  origins = {
    "aws-us-east-1" = {
      cloud   = "aws"
      region  = "us-east-1"
      address = "hf-example-1234567890.us-east-1.elb.amazonaws.com"
      weight  = 100
    }
    "gcp-us-central1" = {
      cloud   = "gcp"
      region  = "us-central1"
      address = "203.0.113.10"
      weight  = 100
    }
  }

  health_check_path = "/health"
}

output "endpoint" {
  value = "http://${module.front.fqdn}"
}
