"""Terraform behind one small adapter.

- `binaries`: the project-local pinned Terraform and null provider mirror, `resolve_tools`,
  `terraform_env`.
- `errors`: typed failures (`TerraformError` and its subclasses).
- `runner`: the `TerraformRunner` interface and its CLI implementation.
- `fake`: `FakeTerraformRunner`, an in-memory runner for tests.

Nothing is imported here so that `python -m reconciler.terraform.binaries install` runs
without loading (or warning about) the rest.
"""
