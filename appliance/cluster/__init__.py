"""Cluster-wide machinery: clocks, membership and replicated state."""
