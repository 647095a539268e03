"""A child forked from the node must not stop it: asyncio's signal wake-up socket is shared
across fork, so a SIGTERM the child receives (pyroute2 ends its netns helper that way) would
reach the node's loop as if the node itself had been told to stop."""

from __future__ import annotations

import os
import signal
import socket

from appliance.server import _forget_signal_handlers


def test_a_forked_child_does_not_wake_the_parent_with_its_sigterm() -> None:
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    reader.settimeout(0.5)
    previous_fd = signal.set_wakeup_fd(writer.fileno())
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: None)  # the node's: SIGTERM is not fatal
    try:
        pid = os.fork()
        if pid == 0:  # the child: what register_at_fork runs, then the helper is ended
            try:
                _forget_signal_handlers()
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                os._exit(3)  # only reached if SIGTERM did not end it
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGTERM  # the child ended by default handling
        try:
            woken = reader.recv(16)
        except TimeoutError:
            woken = b""
        assert signal.SIGTERM.value not in woken  # nothing reached the parent's wake-up socket
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous_handler)
        reader.close()
        writer.close()
