"""Names terraform/modules/aws gives its resources, for the adapters that look them up.

A test reads the same patterns out of the module's HCL (tests/clouds/test_modules_static.py),
so a renamed resource cannot silently blind the metrics or notice adapters.
"""

from __future__ import annotations


def aws_lb_name(service: str) -> str:
    """`aws_lb.this.name` in terraform/modules/aws (`hf-${var.service}`; ALB names <= 32)."""
    return f"hf-{service}"[:32]


def notices_queue_name(service: str) -> str:
    """`aws_sqs_queue.notices.name` in terraform/modules/aws."""
    return f"hedgeform-{service}-notices"
