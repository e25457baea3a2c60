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
  by_version = { for id, r in var.replicas : id => contains(keys(var.versions), r.version) ? var.versions[r.version] : local.current }

  # Several GPU types in one region (issue 15): a replica of `replica_accelerators` runs its
  # type's VM size (and carries its accelerator name and count) with its version's image,
  # disk and scripts; any other replica runs its version's entry.
  typed = { for id, acc in var.replica_accelerators : id => var.accelerator_types[acc] if contains(keys(var.replicas), id) }
  runs  = { for id, v in local.by_version : id => contains(keys(local.typed), id) ? merge(v, local.typed[id]) : v }

  # The hedgeform-gpu-type tag of each typed replica: its type, which the reconciler reads back
  # (reconciler/clouds/azure/state.py).
  gpu_type_tag = { for id, acc in var.replica_accelerators : id => acc if contains(keys(var.replicas), id) }
}
