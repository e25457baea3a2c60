"""Replay spot-availability traces through the policy code to measure cost and availability."""
