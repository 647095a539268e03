"""Cluster CA and node identity: keys, certificates and their files in the data dir."""
