"""Hedgeform: serve AI models on spot and on-demand GPUs with the SpotHedge policy."""

__version__ = "0.1.0"
