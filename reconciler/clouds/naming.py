"""Names the cloud modules give their resources, for the adapters that look them up.

Kept in one place, next to a test that reads the same patterns out of the modules' HCL, so a
renamed resource cannot silently blind the metrics or notice adapters.
"""

from __future__ import annotations


def aws_lb_name(service: str) -> str:
    """`aws_lb.this.name` in terraform/modules/aws (`hf-${var.service}`; ALB names <= 32)."""
    return f"hf-{service}"[:32]


def gcp_url_map_name(service: str, region: str) -> str:
    """`google_compute_url_map.this.name` in terraform/modules/gcp
    (`hf-${var.service}-${var.region}`)."""
    return f"hf-{service}-{region}"


def notices_queue_name(service: str) -> str:
    """`aws_sqs_queue.notices.name` in terraform/modules/aws."""
    return f"hedgeform-{service}-notices"
