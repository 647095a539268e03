"""Liveness and readiness: is the process up, and is each subsystem able to serve."""
