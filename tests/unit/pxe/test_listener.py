"""Where the boot-file listener binds and which URL machines are given: pure rules."""

from __future__ import annotations

import socket

import pytest

from appliance.settings import parse_host_port
from pxe.listen import ListenerError, check_can_bind
from pxe.listener import default_http_url, listen_address


def test_an_explicit_address_wins_over_the_interfaces() -> None:
    given = parse_host_port("127.0.0.1:9000", 8080)
    assert listen_address(given, "10.0.0.2") == given
    assert str(listen_address(None, "10.0.0.2")) == "10.0.0.2:8080"
    assert listen_address(None, None) is None


def test_the_url_is_the_listeners_address_or_the_interfaces_for_a_wildcard() -> None:
    assert default_http_url(parse_host_port("10.0.0.2:8080", 80), None) == "http://10.0.0.2:8080"
    assert default_http_url(parse_host_port("0.0.0.0:8081", 80), "10.0.0.2") == "http://10.0.0.2:8081"
    assert default_http_url(parse_host_port("0.0.0.0:8081", 80), None) is None


def test_a_busy_address_is_refused_before_granian_is_asked() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ListenerError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_can_bind(parse_host_port(f"127.0.0.1:{port}", 80))
