"""`POST /api/v1/pxe/enrol` and `.../enrol/poll`: where a PXE-booted machine enrols, over TLS.

Public (the machine has no account; its credential is the single-use one from its boot
script) and served on the node's HTTPS API only, never on the plain-HTTP boot listener: the
machine reaches it with TLS pinned to the cluster CA, so the poll secret and the join token
it finally gets never cross the network in clear. Both routes are rate limited per source
address before the body is read. What happens is `pxe.enrol_service`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, post

from appliance.api.openapi import problems, reads_body
from appliance.api.problems import ApiError
from appliance.auth.permissions import PUBLIC
from appliance.auth.throttle import RateLimiter, retry_after_header
from pxe.dnsmasq import normalize_mac
from pxe.enrol_service import EnrolAnswer, EnrolmentService, EnrolRequest, PollAnswer, PollRequest
from pxe.enrolment import EnrolmentError

ENROL_RATE, ENROL_BURST = 1 / 10, 10.0  # a machine enrols once per boot
POLL_RATE, POLL_BURST = 1.0, 10.0  # a waiting machine polls every few seconds
MAX_BODY = 4096
_T = TypeVar("_T")


def enrol_routes(
    service: EnrolmentService,
    *,
    enabled: Callable[[], bool],
    limiter: RateLimiter | None = None,
    poller: RateLimiter | None = None,
) -> Router:
    """The machine-facing enrolment routes; `enabled()` says whether this node serves PXE."""
    limiter = limiter or RateLimiter(ENROL_RATE, ENROL_BURST)
    poller = poller or RateLimiter(POLL_RATE, POLL_BURST)

    def source(request: Request[Any, Any, Any], bucket: RateLimiter) -> str:
        client = request.client.host if request.client else ""
        wait = bucket.take(client)
        if wait > 0:
            raise ApiError(429, "too many enrolment requests from this address", headers=retry_after_header(wait))
        if not enabled():
            raise ApiError(404, "PXE is not enabled on this node")
        return client

    @post(
        "/enrol",
        opt=PUBLIC | problems(400, 403, 404, 409, 410, 413, 422, 429) | reads_body(EnrolRequest),
        summary="A PXE-booted machine presents its single-use enrolment credential",
        request_max_body_size=MAX_BODY,
        status_code=200,
    )
    async def enrol(request: Request[Any, Any, Any]) -> Response[EnrolAnswer]:
        client = source(request, limiter)
        body = _decode(await request.body(), EnrolRequest)
        body = msgspec.structs.replace(body, mac=_mac(body.mac))
        try:
            answer = service.enrol(body, client)
        except EnrolmentError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        return Response(answer, headers={"cache-control": "no-store"})

    @post(
        "/enrol/poll",
        opt=PUBLIC | problems(400, 403, 404, 409, 410, 413, 422, 429) | reads_body(PollRequest),
        summary="A waiting machine asks whether it was approved (its join token, once, if so)",
        request_max_body_size=MAX_BODY,
        status_code=200,
    )
    async def poll(request: Request[Any, Any, Any]) -> Response[PollAnswer]:
        client = source(request, poller)
        body = _decode(await request.body(), PollRequest)
        body = msgspec.structs.replace(body, mac=_mac(body.mac))
        try:
            answer = await service.poll(body, client)
        except EnrolmentError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        return Response(answer, headers={"cache-control": "no-store"})

    return Router("/api/v1/pxe", route_handlers=[enrol, poll], tags=["pxe"])


def _decode(body: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid request: {str(exc)[:200]}") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {str(exc)[:200]}") from exc


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
