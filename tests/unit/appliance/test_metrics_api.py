"""Metrics routes: the Prometheus target list, and the rate-limit bucket metrics reads spend."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.audit.log import AuditQuery
from appliance.auth.access import METRICS_BURST
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.cluster.service import NodeMember
from appliance.metrics.controller import TargetGroup, target_groups
from appliance.settings import AuthSettings
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE, FakeHost, another_browser


def _member(name: str, state: str, api: str = "") -> NodeMember:
    return NodeMember(
        name=name,
        state=state,
        incarnation=1,
        gossip_address="",
        api_address=api,
        version="1",
        last_change=0.0,
    )


def test_target_groups_list_live_members_with_an_api_address_by_name() -> None:
    members = [
        _member("n2", "suspect", "10.0.0.2:8443"),
        _member("n1", "alive", "10.0.0.1:8443"),
        _member("n3", "dead", "10.0.0.3:8443"),
        _member("n4", "left", "10.0.0.4:8443"),
        _member("n5", "alive"),  # announced no API address: nothing to scrape
    ]
    assert target_groups(members) == [
        TargetGroup(targets=["10.0.0.1:8443"], labels={"node": "n1"}),
        TargetGroup(targets=["10.0.0.2:8443"], labels={"node": "n2"}),
    ]


def test_targets_route_answers_http_sd_shape_and_needs_metrics_read(
    client: TestClient[Any], appliance: Appliance
) -> None:
    response = client.get("/api/v1/metrics/targets")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    for group in body:
        assert set(group) == {"targets", "labels"}
        assert set(group["labels"]) == {"node"}
    _, developer = appliance.accounts.create_token(owner="admin", name="dev", role=Role.DEVELOPER, expires_at=None)
    with another_browser(client) as anonymous:
        assert anonymous.get("/api/v1/metrics/targets").status_code == 401
        denied = anonymous.get("/api/v1/metrics/targets", headers={"Authorization": f"Bearer {developer}"})
        assert denied.status_code == 403


def test_metrics_reads_spend_their_own_bucket_not_the_users(node: OpenedNode, clock: FakeClock) -> None:
    limited = create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=10, rate_burst=10), clock=clock, monotonic=clock
    )
    _, admin = limited.accounts.create_token(owner="admin", name="ui", role=None, expires_at=None)
    _, scraper = limited.accounts.create_token(owner="admin", name="prometheus", role=Role.VIEWER, expires_at=None)
    with TestClient(limited.asgi, base_url=BASE) as client:
        ui = {"Authorization": f"Bearer {admin}"}
        scrape = {"Authorization": f"Bearer {scraper}"}
        # The user's own requests use up their bucket ...
        assert [client.get("/api/v1/node", headers=ui).status_code for _ in range(11)] == [200] * 10 + [429]
        # ... and scraping, by the same user, still works: it has a bucket of its own.
        assert client.get("/metrics", headers=scrape).status_code == 200
        assert client.get("/api/v1/metrics/targets", headers=scrape).status_code == 200
        assert client.get("/metrics", headers=ui).status_code == 200  # by route, not by token
        # Scrapes did not spend the user's bucket: after it refills, the user has all of it.
        clock.advance(1.0)
        burst = int(METRICS_BURST)  # refilled: a second at METRICS_RATE covers the 3 used above
        assert [client.get("/metrics", headers=scrape).status_code for _ in range(burst)] == [200] * burst
        assert [client.get("/api/v1/node", headers=ui).status_code for _ in range(11)] == [200] * 10 + [429]
        # The metrics bucket is bounded too: past its burst, a scrape is refused and audited.
        refused = client.get("/metrics", headers=scrape)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
    # Once a minute per user and bucket: the refused scrape is audited despite the user's own refusal.
    entries = limited.audit.query(AuditQuery(action="auth.rate_limited"), 10)
    assert [(e.user, e.target) for e in entries] == [("admin", "/api/v1/node"), ("admin", "/metrics")]
