"""Logs and metrics: request ids, redaction, the JSON log format, the request
middleware that ties them together, and the /metrics scrape. The metric
objects themselves are in app/metrics.py (services call it)."""
