"""Names terraform/modules/gcp gives its resources, for the adapters that look them up.

A test reads the same pattern out of the module's HCL (tests/clouds/test_modules_static.py),
so a renamed resource cannot silently blind the metrics adapter.
"""

from __future__ import annotations


def gcp_url_map_name(service: str, region: str) -> str:
    """`google_compute_url_map.this.name` in terraform/modules/gcp
    (`hf-${var.service}-${var.region}`)."""
    return f"hf-{service}-{region}"
