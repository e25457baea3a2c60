"""Placeholder; replaced by the policy core."""
