# What each replica runs: the entry of its own version in `versions`, so a rollout launches new
# replicas beside the old ones and never changes an old one in place (policy/rollout.py).

locals {
  # What each replica runs: its version's, else (a version this render does not list) the
  # top-level values, which are the current version's.
  current = {
    machine_type           = var.machine_type
    guest_accelerator_type = var.guest_accelerator_type
    accelerator_name       = var.accelerator_name
    accelerator_count      = var.accelerator_count
    image_id               = var.image_id
    disk_size_gb           = var.disk_size_gb
    setup_script           = var.setup_script
    run_script             = var.run_script
    envs                   = var.envs
  }
  by_version = { for id, r in var.replicas : id => contains(keys(var.versions), r.version) ? var.versions[r.version] : local.current }

  # Several GPU types in one region (issue 15): a replica of `replica_accelerators` runs its
  # type's machine type and attached GPU (and carries its accelerator name and count) with
  # its version's image, disk and scripts; any other replica runs its version's entry.
  typed = { for id, acc in var.replica_accelerators : id => var.accelerator_types[acc] if contains(keys(var.replicas), id) }
  runs  = { for id, v in local.by_version : id => contains(keys(local.typed), id) ? merge(v, local.typed[id]) : v }

  # The hedgeform-gpu-type label of each typed replica: its type lowercased, as GCP label
  # values must be; type names are upper case (variables.tf), so the reconciler reads the type
  # back by upper-casing the label (reconciler/clouds/gcp/state.py).
  gpu_type_label = { for id, acc in var.replica_accelerators : id => lower(acc) if contains(keys(var.replicas), id) }
}
