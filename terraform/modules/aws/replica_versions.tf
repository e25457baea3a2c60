# What each replica runs: the entry of its own version in `versions`, so a rollout launches new
# replicas beside the old ones and never changes an old one in place (policy/rollout.py).

locals {
  # What each replica runs: its version's, else (a version this render does not list) the
  # top-level values, which are the current version's.
  current = {
    instance_type     = var.instance_type
    accelerator_name  = var.accelerator_name
    accelerator_count = var.accelerator_count
    image_id          = var.image_id
    disk_size_gb      = var.disk_size_gb
    setup_script      = var.setup_script
    run_script        = var.run_script
    envs              = var.envs
  }
  runs = { for id, r in var.replicas : id => contains(keys(var.versions), r.version) ? var.versions[r.version] : local.current }

  # Several GPU types in one region (issue 15): a replica of `replica_accelerators` runs its
  # type's instance, whatever its version's; the others run their version's.
  typed = { for id, acc in var.replica_accelerators : id => var.accelerator_types[acc] if contains(keys(var.replicas), id) }
  instance_type_of = {
    for id, r in var.replicas : id => contains(keys(local.typed), id) ? local.typed[id].instance_type : local.runs[id].instance_type
  }
  accelerator_of = {
    for id, r in var.replicas : id => contains(keys(local.typed), id) ? "${local.typed[id].accelerator_name}:${local.typed[id].accelerator_count}" : (local.runs[id].accelerator_count > 0 ? "${local.runs[id].accelerator_name}:${local.runs[id].accelerator_count}" : "none")
  }
}
