"""The local sandbox cloud: replicas are local processes in named zones, the load balancer is a
real HAProxy, and each zone's spot capacity replays a real trace.

Terraform's `null_resource` provisioners drive it through `hedgeform sandbox ...` (see `cli.py`).
"""
