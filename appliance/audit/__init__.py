"""The audit trail: every change and auth event, in a hash-chained append-only log."""
