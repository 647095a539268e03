"""This node as an API resource: what it is, what it runs on, and its operator labels."""
