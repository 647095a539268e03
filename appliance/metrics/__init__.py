"""Prometheus metrics: the HTTP instrumentation and the `/metrics` endpoint."""
