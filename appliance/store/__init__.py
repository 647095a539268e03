"""The node's SQLite database: connection settings and versioned schema migrations."""
