"""Resource history: each node's CPU, memory, network and disk I/O over the last hour, day and week."""
