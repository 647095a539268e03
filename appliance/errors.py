"""Errors that end a command with a one-line reason instead of a traceback.

`StartupError` is raised for anything an operator must fix before the node can start (a foreign
or corrupt data directory, a database from a newer version, a bad flag); the CLI prints its
message on one line and exits non-zero. Nothing that raises it has written to the data dir.
"""


class StartupError(Exception):
    """The node cannot start; the message says why and what to do, in one line."""
