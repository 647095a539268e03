"""PXE enrolment: the credential format, the rules, and the service over an in-memory table."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from appliance.bootparams import BootParamsError, parse_cmdline
from pxe.credential import EnrolCredential, decode, encode
from pxe.enrol_service import (
    EnrolmentService,
    EnrolRequest,
    IssuedToken,
    PollAnswer,
    PollRequest,
    TokenUnavailable,
)
from pxe.enrolment import (
    CREDENTIAL_TTL,
    PENDING_TTL,
    ApprovalPolicy,
    EnrolmentError,
    EnrolmentRecord,
    EnrolmentStore,
    auto_approves,
    check_credential,
    check_poll,
    default_name,
    secret_hash,
)
from pxe.script import MachineParams, cmdline

MAC = "52:54:00:aa:bb:01"
OTHER = "52:54:00:aa:bb:02"
FP = "ab" * 32


def test_a_credential_round_trips_as_one_plain_kernel_argument() -> None:
    credential = EnrolCredential("id1", "s3cret", MAC, FP, ["10.0.0.1:8443"])
    text = encode(credential)
    assert text.startswith("dve_")
    assert decode(text) == credential
    args = cmdline("http://10.0.0.1:8080/pxe", MachineParams(enrol=text, mac=MAC))
    assert f"debvisor.enrol={text}" in args
    assert parse_cmdline(" ".join(args)).enrol == text  # the booted appliance accepts it


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dvj_abc", "should start with dve_"),
        ("dve_!!!", "damaged"),
        (encode(EnrolCredential("i", "s", MAC, "short", ["a:1"])), "damaged"),
        (encode(EnrolCredential("i", "s", MAC, FP, [])), "damaged"),
    ],
)
def test_a_bad_credential_says_why(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        decode(text)


def test_bootparams_take_enrol_but_not_with_join() -> None:
    with pytest.raises(BootParamsError, match="not both"):
        parse_cmdline("debvisor.enrol=dve_abcdefghijklmnopq debvisor.join=dvj_x")
    with pytest.raises(BootParamsError, match="enrolment credential"):
        parse_cmdline("debvisor.enrol=dvj_abcdefghijklmnopq")


def _offered(**changes: Any) -> EnrolmentRecord:
    record = EnrolmentRecord(mac=MAC, offer_id="o1", offer_hash=secret_hash("s"), offer_expires_at=100.0)
    return msgspec.structs.replace(record, **changes)


def test_check_credential_refuses_wrong_secret_other_mac_expired_refused_and_waiting() -> None:
    assert check_credential(_offered(), secret="s", mac=MAC, now=50.0).mac == MAC
    cases: list[tuple[EnrolmentRecord | None, str, float, int, str]] = [
        (None, MAC, 50.0, 403, "already used"),
        (_offered(), OTHER, 50.0, 403, "another machine"),
        (_offered(), MAC, 100.0, 403, "expired"),
        (_offered(state="refused"), MAC, 50.0, 403, "refused"),
        (_offered(state="pending", requested_at=40.0), MAC, 50.0, 409, "already enrolled"),
    ]
    for record, mac, now, status, fragment in cases:
        with pytest.raises(EnrolmentError, match=fragment) as caught:
            check_credential(record, secret="s", mac=mac, now=now)
        assert caught.value.status == status
    with pytest.raises(EnrolmentError, match="already used"):
        check_credential(_offered(), secret="wrong", mac=MAC, now=50.0)
    # A pending enrolment nobody approved in time may start over.
    stale = _offered(state="pending", requested_at=0.0, offer_expires_at=PENDING_TTL + 100)
    assert check_credential(stale, secret="s", mac=MAC, now=PENDING_TTL + 1) == stale


def test_check_poll_needs_the_secret_and_ends_on_refusal_expiry_or_hand_over() -> None:
    pending = EnrolmentRecord(mac=MAC, state="pending", poll_hash=secret_hash("p"), requested_at=0.0)
    assert check_poll(pending, secret="p", now=1.0) == pending
    for record, now, status in [
        (pending, 1.0, 403),  # wrong secret below
        (msgspec.structs.replace(pending, state="refused"), 1.0, 403),
        (pending, PENDING_TTL + 1, 410),
        (msgspec.structs.replace(pending, state="issued"), 1.0, 409),
    ]:
        secret = "x" if record is pending and now == 1.0 else "p"
        with pytest.raises(EnrolmentError) as caught:
            check_poll(record, secret=secret, now=now)
        assert caught.value.status == status


def test_the_policy_approves_listed_macs_serials_or_everyone() -> None:
    assert not auto_approves(ApprovalPolicy(), MAC, "S1")
    assert auto_approves(ApprovalPolicy(macs=frozenset({MAC})), MAC, None)
    assert auto_approves(ApprovalPolicy(serials=frozenset({"S1"})), OTHER, "S1")
    assert not auto_approves(ApprovalPolicy(serials=frozenset({""})), OTHER, "")
    assert auto_approves(ApprovalPolicy(everyone=True), OTHER, None)
    assert default_name(MAC) == "pxe-525400aabb01"


class Harness:
    def __init__(self, policy: ApprovalPolicy | None = None, name: str | None = None) -> None:
        self.now = 1000.0
        self.audited: list[dict[str, str]] = []
        self.tokens: list[str] = []
        self.policy = policy or ApprovalPolicy()
        self.unavailable: str | None = None  # set: no certificate authority makes tokens
        self.service = EnrolmentService(
            EnrolmentStore.in_memory(),
            ca_fingerprint=FP,
            servers=lambda: ["10.0.0.1:8443"],
            issue_token=self._issue,
            policy=lambda: self.policy,
            name_for=lambda _mac: name,
            audit=lambda **entry: self.audited.append(entry),
            clock=lambda: self.now,
        )

    async def _issue(self, mac: str, approver: str) -> IssuedToken:
        if self.unavailable is not None:
            raise TokenUnavailable(self.unavailable)
        self.tokens.append(f"{mac} approved by {approver}")
        return IssuedToken(token=f"dvj_token{len(self.tokens)}", id=f"t{len(self.tokens)}", expires_at=self.now + 900)

    def poll(self, request: PollRequest) -> PollAnswer:
        return asyncio.run(self.service.poll(request, "ip"))

    def enrol(self, mac: str = MAC, serial: str | None = None) -> tuple[str, str]:
        credential = decode(self.service.offer(mac))
        answer = self.service.enrol(
            EnrolRequest(id=credential.id, secret=credential.secret, mac=mac, serial=serial), "ip"
        )
        return answer.state, answer.poll_secret


def test_a_machine_waits_pending_until_approved_then_gets_one_token_on_one_poll() -> None:
    h = Harness()
    credential = decode(h.service.offer(MAC))
    assert (credential.mac, credential.ca_fingerprint, credential.servers) == (MAC, FP, ["10.0.0.1:8443"])
    state, poll_secret = h.enrol()
    assert state == "pending"
    poll = PollRequest(mac=MAC, poll_secret=poll_secret)
    assert h.poll(poll).join_token is None
    assert h.tokens == []  # nothing issued before approval
    view = h.service.approve(MAC, "alice", "rack1-n4")
    assert (view.state, view.name, view.decided_by) == ("approved", "rack1-n4", "alice")
    answer = h.poll(poll)
    assert (answer.state, answer.name, answer.join_token) == ("approved", "rack1-n4", "dvj_token1")
    shown = h.service.view(MAC)
    assert shown is not None
    assert (shown.state, shown.token_id, shown.token_expires_at) == ("issued", "t1", 1900.0)
    with pytest.raises(EnrolmentError, match="handed over already"):
        h.poll(poll)
    with pytest.raises(EnrolmentError, match="wrong poll secret"):
        h.poll(PollRequest(mac=MAC, poll_secret="guess"))
    assert h.tokens == ["52:54:00:aa:bb:01 approved by alice"]
    assert all("dvj_" not in str(entry) and poll_secret not in str(entry) for entry in h.audited)


def test_a_credential_is_single_use_bound_to_its_mac_and_short_lived() -> None:
    h = Harness()
    credential = decode(h.service.offer(MAC))
    stolen = EnrolRequest(id=credential.id, secret=credential.secret, mac=OTHER)
    with pytest.raises(EnrolmentError, match="another machine"):
        h.service.enrol(stolen, "ip")
    with pytest.raises(EnrolmentError, match="already used"):  # consumed by that first attempt
        h.service.enrol(msgspec.structs.replace(stolen, mac=MAC), "ip")
    late = decode(h.service.offer(MAC))
    h.now += CREDENTIAL_TTL + 1
    with pytest.raises(EnrolmentError, match="expired"):
        h.service.enrol(EnrolRequest(id=late.id, secret=late.secret, mac=MAC), "ip")
    assert [(e["action"], e["outcome"]) for e in h.audited] == [("pxe.enrol", "denied")] * 3


def test_a_waiting_machine_cannot_be_taken_over_by_a_second_enrolment() -> None:
    h = Harness()
    h.enrol()
    with pytest.raises(EnrolmentError, match="already enrolled") as caught:
        h.enrol()
    assert caught.value.status == 409


def test_the_allow_list_approves_at_enrolment_and_refusal_is_final() -> None:
    h = Harness(ApprovalPolicy(serials=frozenset({"SN-7"})), name="rack2-n1")
    state, secret = h.enrol(serial="SN-7")
    assert state == "approved"
    answer = h.poll(PollRequest(mac=MAC, poll_secret=secret))
    assert (answer.name, answer.join_token) == ("rack2-n1", "dvj_token1")
    state, secret = h.enrol(OTHER, serial="SN-8")
    assert state == "pending"
    assert h.service.refuse(OTHER, "bob").state == "refused"
    with pytest.raises(EnrolmentError, match="refused"):
        h.poll(PollRequest(mac=OTHER, poll_secret=secret))
    with pytest.raises(EnrolmentError, match="not waiting"):
        h.service.approve(OTHER, "bob")
    with pytest.raises(EnrolmentError, match="refused"):
        h.enrol(OTHER)
    assert h.service.forget(OTHER)
    assert h.enrol(OTHER)[0] == "pending"  # forgotten: it may start over


def test_a_machine_nobody_approves_in_time_expires() -> None:
    h = Harness()
    _, secret = h.enrol()
    h.now += PENDING_TTL + 1
    view = h.service.view(MAC)
    assert view is not None
    assert view.state == "expired"
    with pytest.raises(EnrolmentError, match="in time"):
        h.poll(PollRequest(mac=MAC, poll_secret=secret))
    with pytest.raises(EnrolmentError, match="expired"):
        h.service.approve(MAC, "alice")


def test_the_table_keeps_the_most_recent_rows() -> None:
    store = EnrolmentStore.in_memory(limit=2)
    for i, mac in enumerate((MAC, OTHER, "52:54:00:aa:bb:03")):
        store.put(EnrolmentRecord(mac=mac, updated_at=float(i)))
    assert store.get(MAC) is None
    assert store.get(OTHER) is not None


def test_an_approved_machine_waits_while_no_authority_makes_its_token() -> None:
    h = Harness()
    _, secret = h.enrol()
    h.service.approve(MAC, "alice", "rack1-n5")
    h.unavailable = "waiting for a certificate authority: none is alive (authorities: n1)"
    poll = PollRequest(mac=MAC, poll_secret=secret)
    for _ in range(3):  # the machine keeps polling; nothing fails
        answer = h.poll(poll)
        assert (answer.state, answer.join_token, answer.waiting) == ("approved", None, h.unavailable)
    shown = h.service.view(MAC)
    assert shown is not None
    assert (shown.state, shown.waiting) == ("approved", h.unavailable)  # the operator sees why
    stalled = [e for e in h.audited if e["action"] == "pxe.enrol.token"]
    assert [(e["outcome"], e["detail"]) for e in stalled] == [("failed", h.unavailable)]  # once, not per poll

    h.unavailable = None  # an authority is back
    answer = h.poll(poll)
    assert (answer.name, answer.join_token, answer.waiting) == ("rack1-n5", "dvj_token1", None)
    shown = h.service.view(MAC)
    assert shown is not None
    assert (shown.state, shown.waiting) == ("issued", None)


def test_a_machine_refused_while_its_token_was_made_does_not_get_it() -> None:
    h = Harness()
    _, secret = h.enrol()
    h.service.approve(MAC, "alice")
    original = h._issue

    async def slow_issue(mac: str, approver: str) -> IssuedToken:
        h.service.refuse(MAC, "bob")  # decided while the authority was asked
        return await original(mac, approver)

    h.service._issue_token = slow_issue
    with pytest.raises(EnrolmentError, match="changed while its join token was made"):
        h.poll(PollRequest(mac=MAC, poll_secret=secret))
    view = h.service.view(MAC)
    assert view is not None
    assert (view.state, view.token_id) == ("refused", None)


def test_a_second_poll_while_the_token_is_made_gets_no_second_token() -> None:
    h = Harness()
    _, secret = h.enrol()
    h.service.approve(MAC, "alice")
    poll = PollRequest(mac=MAC, poll_secret=secret)
    original = h._issue
    answers: list[PollAnswer] = []

    async def slow_issue(mac: str, approver: str) -> IssuedToken:
        answers.append(await h.service.poll(poll, "ip"))  # the machine retried meanwhile
        return await original(mac, approver)

    h.service._issue_token = slow_issue
    first = h.poll(poll)
    assert first.join_token == "dvj_token1"
    assert [(a.join_token, a.waiting) for a in answers] == [(None, "a join token is being made")]
    assert h.tokens == ["52:54:00:aa:bb:01 approved by alice"]
