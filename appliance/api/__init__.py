"""Cross-cutting pieces of the HTTP API: errors as problem+json, request checks."""
