# What each replica runs: the entry of its own version in `versions`, so a rollout launches new
# replicas beside the old ones and never changes an old one in place (policy/rollout.py).

locals {
  # What each replica runs: its version's, else (a version this render does not list) the
  # top-level values, which are the current version's.
  current = {
    vm_size           = var.vm_size
    accelerator_name  = var.accelerator_name
    accelerator_count = var.accelerator_count
    image_id          = var.image_id
    disk_size_gb      = var.disk_size_gb
    setup_script      = var.setup_script
    run_script        = var.run_script
    envs              = var.envs
  }
  runs = { for id, r in var.replicas : id => contains(keys(var.versions), r.version) ? var.versions[r.version] : local.current }
}
