"""The node's typed event bus and the cluster-wide `GET /api/v1/events` WebSocket built on it."""
