"""The SWIM/Lifeguard core, one transition at a time, with no sockets and no clock."""

from __future__ import annotations

import dataclasses
import math
import random

import msgspec
import pytest

from appliance.cluster.messages import (
    Ack,
    Alive,
    Dead,
    Frame,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    PushPullSummary,
    Revoke,
    Status,
    Suspect,
    decode_frame,
    encode_frame,
)
from appliance.cluster.swim import (
    JOIN_RELAY_FANOUT,
    JOIN_RELAY_GAP,
    URGENT_GOSSIP_GAP,
    EventKind,
    GossipTuning,
    Outgoing,
    Swim,
)

CFG = GossipTuning()


def node(
    name: str = "a", members: tuple[str, ...] = ("b", "c", "d", "e"), incarnation: int = 0, config: GossipTuning = CFG
) -> Swim:
    swim = Swim(name, f"{name}:7946", config=config, rng=random.Random(7), now=0.0, incarnation=incarnation)
    for other in members:
        swim.receive(0.0, other, Frame(other, [Alive(other, 0, f"{other}:7946")]))
    swim.take_outbox()
    swim.take_events()
    return swim


def sent(swim: Swim) -> list[tuple[str | None, type, object]]:
    return [(out.name, type(m), m) for out in swim.take_outbox() for m in out.frame.messages]


def kinds(out: list[tuple[str | None, type, object]], kind: type) -> list[tuple[str | None, object]]:
    return [(to, m) for to, t, m in out if t is kind]


def run_probe_until_sent(swim: Swim, since: float = 0.0) -> tuple[str, int]:
    """Tick from `since` until the node pings someone; return (target, seq)."""
    t = since
    for _ in range(600):
        t += 0.01
        swim.tick(t)
        pings = kinds(sent(swim), Ping)
        if pings:
            to, ping = pings[0]
            assert isinstance(ping, Ping)
            return str(to), ping.seq
    raise AssertionError("no probe sent")


def start_round_answered(swim: Swim, t: float) -> None:
    """Tick into the probe round at `t` and answer its pings at once, so a test's own
    exchanges are the only ones running."""
    swim.tick(t)
    for to, ping in kinds(sent(swim), Ping):
        assert isinstance(ping, Ping)
        swim.receive(t, str(to), Frame(str(to), [Ack(ping.seq)]))
    swim.tick(t)
    sent(swim)


def test_frames_round_trip_and_reject_garbage() -> None:
    frame = Frame("a", [Ping(1, "b"), Suspect("c", 2, "a"), PushPull([MemberState("a", "x", 1, Status.ALIVE)])], "x")
    assert decode_frame(encode_frame(frame)) == frame
    with pytest.raises(msgspec.DecodeError):
        decode_frame(b"\x93garbage")
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_frame(msgspec.msgpack.encode(["a", [["nonsense", 1]]]))


def test_acked_probe_raises_no_suspicion() -> None:
    swim = node()
    target, seq = run_probe_until_sent(swim)
    swim.receive(swim._probes[target].started + 0.01, target, Frame(target, [Ack(seq)]))
    swim.tick(10.0)
    assert all(m.status == Status.ALIVE for m in swim.members.values())
    assert swim.awareness == 0


def test_missed_ack_leads_to_indirect_probes_then_suspicion() -> None:
    swim = node()
    target, seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    swim.tick(probe.indirect_at)
    reqs = kinds(sent(swim), PingReq)
    assert len(reqs) == CFG.indirect_checks
    assert all(isinstance(m, PingReq) and m.target == target and m.seq == seq for _, m in reqs)
    assert target not in {to for to, _ in reqs}
    swim.tick(probe.ends_at)
    assert swim.members[target].status == Status.SUSPECT
    out = sent(swim)
    # the suspect itself is told at once, so it can refute
    assert any(to == target and isinstance(m, Suspect) for to, _, m in out)
    events = swim.take_events()
    assert [e.kind for e in events] == [EventKind.SUSPECT]
    assert swim.awareness == 1  # no nacks came back either: maybe our own network


def test_indirect_ack_clears_the_probe_and_nacks_spare_awareness() -> None:
    swim = node()
    target, seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    swim.tick(probe.indirect_at)
    helpers = [to for to, _ in kinds(sent(swim), PingReq)]
    swim.receive(probe.indirect_at + 0.01, str(helpers[0]), Frame(str(helpers[0]), [Ack(seq)]))
    swim.tick(probe.ends_at)
    assert swim.members[target].status == Status.ALIVE

    swim2 = node()
    target2, seq2 = run_probe_until_sent(swim2)
    probe2 = swim2._probes[target2]
    swim2.tick(probe2.indirect_at)
    for to, _ in kinds(sent(swim2), PingReq):
        swim2.receive(probe2.indirect_at + 0.05, str(to), Frame(str(to), [Nack(seq2)]))
    swim2.tick(probe2.ends_at)
    assert swim2.members[target2].status == Status.SUSPECT
    assert swim2.awareness == 0  # the helpers answered: the target is the problem, not us


def test_relay_forwards_ack_or_answers_nack() -> None:
    relay = node("b", ("a", "c"))
    relay.receive(1.0, "a", Frame("a", [PingReq(42, "c", "c:7946")]))
    pings = kinds(sent(relay), Ping)
    assert [(to, m.target) for to, m in pings] == [("c", "c")]  # type: ignore[attr-defined]
    local_seq = pings[0][1].seq  # type: ignore[attr-defined]
    relay.receive(1.05, "c", Frame("c", [Ack(local_seq)]))
    assert kinds(sent(relay), Ack) == [("a", Ack(42))]

    relay.receive(2.0, "a", Frame("a", [PingReq(43, "c", "c:7946")]))
    sent(relay)
    relay.tick(2.0 + CFG.probe_timeout)
    assert kinds(sent(relay), Nack) == [("a", Nack(43))]


def test_ping_for_another_name_is_not_answered() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Ping(5, "someone-else")]))
    assert kinds(sent(swim), Ack) == []
    swim.receive(1.0, "b", Frame("b", [Ping(6, "a")]))
    assert kinds(sent(swim), Ack) == [("b", Ack(6))]


def test_a_ping_from_a_member_not_known_yet_is_answered_where_it_came_from() -> None:
    swim = node()
    swim.receive(1.0, "z", Frame("z", [Ping(7, "a")]))  # z learnt of us from a seed before we of it
    acks = [o for o in swim.take_outbox() if any(isinstance(m, Ack) for m in o.frame.messages)]
    assert [(o.name, o.addr, o.frame.messages) for o in acks] == [("z", "", [Ack(7)])]


def test_frame_whose_sender_differs_from_the_peer_is_ignored() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("c", [Dead("d", 5, "c")]))
    assert swim.members["d"].status == Status.ALIVE


def test_suspicion_timeout_shrinks_with_confirmations() -> None:
    swim = node(members=tuple("bcdefghijk"))
    n = swim.live_count()
    low = max(CFG.suspicion_floor, CFG.suspicion_mult * max(1.0, math.log10(n)) * CFG.probe_interval)
    high = low * CFG.suspicion_max_mult
    swim.receive(1.0, "b", Frame("b", [Suspect("k", 0, "b")]))
    suspicion = swim._suspicions["k"]
    assert swim._suspicion_timeout("k", suspicion) == pytest.approx(high)
    swim.receive(1.1, "c", Frame("c", [Suspect("k", 0, "c")]))
    one = swim._suspicion_timeout("k", suspicion)
    assert low < one < high
    swim.receive(1.1, "d", Frame("d", [Suspect("k", 0, "d")]))
    assert swim._suspicion_timeout("k", suspicion) == pytest.approx(low)
    swim.receive(1.1, "d", Frame("d", [Suspect("k", 0, "d")]))  # same confirmer twice counts once
    assert len(suspicion.confirmers) == 2
    swim.tick(1.0 + low - 0.001)
    assert swim.members["k"].status == Status.SUSPECT
    swim.tick(1.0 + low)
    assert swim.members["k"].status == Status.DEAD


def test_confirmations_are_rebroadcast_separately() -> None:
    swim = node(members=tuple("bcdefg"))
    swim.receive(1.0, "b", Frame("b", [Suspect("g", 0, "b")]))
    swim.receive(1.0, "c", Frame("c", [Suspect("g", 0, "c")]))
    accusers = {b.message.accuser for b in swim._broadcasts.values() if isinstance(b.message, Suspect)}
    assert accusers == {"b", "c"}


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    swim = node(incarnation=3)
    swim.receive(1.0, "b", Frame("b", [Suspect("a", 3, "b")]))
    assert swim.incarnation == 4
    out = sent(swim)
    assert any(isinstance(m, Alive) and m.node == "a" and m.incarnation == 4 for _, _, m in out)
    assert [e.kind for e in swim.take_events()] == [EventKind.REFUTED]
    assert swim.awareness == 1


def test_stale_suspicion_is_answered_directly() -> None:
    swim = node(incarnation=5)
    swim.receive(1.0, "b", Frame("b", [Suspect("a", 2, "c")]))
    assert swim.incarnation == 5
    alive_to = {to for to, m in kinds(sent(swim), Alive) if isinstance(m, Alive) and m.incarnation == 5}
    assert alive_to == {"b", "c"}


def test_a_member_that_gossips_a_refuted_accusation_is_handed_the_refutation() -> None:
    swim = node()
    swim.receive(1.0, "c", Frame("c", [Alive("c", 2, "c:7946")]))  # c refuted an accusation
    quiet = settle(swim, 1.0)  # until that news is no longer piggybacked
    swim.receive(quiet, "b", Frame("b", [Suspect("c", 1, "d"), Dead("c", 0, "e")]))  # b has not heard
    assert about_c(sent(swim)) == [("b", Alive("c", 2, "c:7946"))] * 2
    assert swim.members["c"].status == Status.ALIVE
    # Suspicions we hold ourselves, and news from the member itself, are not answered this way.
    swim.receive(quiet + 0.1, "b", Frame("b", [Suspect("c", 2, "b")]))
    quiet = settle(swim, quiet + 0.1)
    swim.receive(quiet, "d", Frame("d", [Suspect("c", 1, "d")]))
    swim.receive(quiet, "c", Frame("c", [Dead("c", 1, "c")]))
    assert about_c(sent(swim)) == []


def settle(swim: Swim, since: float) -> float:
    """Tick until no frame mentions c any more (its broadcasts ran out); the time then."""
    t = since
    for _ in range(1000):
        t += 0.05
        swim.tick(t)
        if not about_c(sent(swim)) and not swim.pending_broadcasts():
            return t
    raise AssertionError("c is still being gossiped")


def about_c(out: list[tuple[str | None, type, object]]) -> list[tuple[str | None, object]]:
    """Direct answers about c: Alive messages alone in their frame (piggybacked gossip aside)."""
    return [(to, m) for to, m in kinds(out, Alive) if isinstance(m, Alive) and m.node == "c"]


def test_being_declared_dead_is_refuted_but_leaving_is_not() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Dead("a", 0, "b")]))
    assert swim.incarnation == 1
    swim.leave(2.0)
    assert swim.members["a"].status == Status.LEFT
    before = swim.incarnation
    swim.receive(3.0, "b", Frame("b", [Dead("a", before, "b")]))
    assert swim.incarnation == before


def test_alive_with_higher_incarnation_clears_suspicion_lower_is_ignored() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Suspect("c", 0, "b")]))
    swim.receive(1.1, "d", Frame("d", [Alive("c", 0, "c:7946")]))
    assert swim.members["c"].status == Status.SUSPECT
    swim.receive(1.2, "c", Frame("c", [Alive("c", 1, "c:7946")]))
    assert swim.members["c"].status == Status.ALIVE
    assert "c" not in swim._suspicions
    assert EventKind.ALIVE in [e.kind for e in swim.take_events()]


def test_graceful_leave_is_seen_as_left() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Dead("b", 1, "b")]))
    assert swim.members["b"].status == Status.LEFT
    assert [e.kind for e in swim.take_events()] == [EventKind.LEFT]


def test_connection_loss_suspects_but_never_kills_alone() -> None:
    swim = node()
    swim.connection_lost(1.0, "b")
    assert swim.members["b"].status == Status.SUSPECT
    swim.tick(1.0 + 0.01)
    assert swim.members["b"].status == Status.SUSPECT
    swim.receive(1.2, "b", Frame("b", [Alive("b", 1, "b:7946")]))
    assert swim.members["b"].status == Status.ALIVE


def test_push_pull_turns_remote_deaths_into_suspicions_and_answers() -> None:
    swim = node()
    states = [
        MemberState("b", "b:7946", 0, Status.ALIVE),
        MemberState("c", "c:7946", 0, Status.DEAD),
        MemberState("d", "d:7946", 0, Status.LEFT),
        MemberState("z", "z:7946", 4, Status.ALIVE),
    ]
    swim.receive(1.0, "b", Frame("b", [PushPull(states)]))
    assert swim.members["c"].status == Status.SUSPECT
    assert swim.members["d"].status == Status.LEFT
    assert swim.members["z"].incarnation == 4
    replies = kinds(sent(swim), PushPull)
    assert len(replies) == 1
    assert replies[0][0] == "b"
    assert replies[0][1].reply is True  # type: ignore[attr-defined]


def test_restarted_node_rejoins_after_being_declared_dead() -> None:
    swim = node()
    swim.receive(1.0, "c", Frame("c", [Dead("b", 0, "c")]))
    assert swim.members["b"].status == Status.DEAD
    swim.receive(5.0, "b", Frame("b", [Alive("b", 1, "b:7946")]))
    assert swim.members["b"].status == Status.ALIVE
    assert [e.kind for e in swim.take_events()] == [EventKind.DEAD, EventKind.JOINED]


def test_broadcasts_stop_after_the_retransmit_limit() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Alive("new", 0, "new:7946")]))
    limit = swim._retransmit_limit()
    sends = 0
    t = 1.0
    for _ in range(200):
        t += CFG.gossip_interval
        swim.tick(t)
        sends += sum(1 for to, _, m in sent(swim) if isinstance(m, Alive) and m.node == "new")
    assert sends == limit


def test_revocation_spreads_and_kills() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Revoke("ab" * 32, "c")]))
    assert swim.revoked == {"ab" * 32: "c"}
    assert [e.kind for e in swim.take_events()] == [EventKind.REVOKED]
    swim.revoke(2.0, "cd" * 32, "d")
    assert swim.members["d"].status == Status.DEAD


def test_join_retries_until_a_seed_answers() -> None:
    swim = Swim("x", "x:1", config=CFG, rng=random.Random(1), now=0.0)
    swim.join(0.0, ["seed:1"])
    first = swim.take_outbox()
    assert [o.addr for o in first] == ["seed:1"]
    assert not swim.joined
    swim.tick(1.0)
    assert [o.addr for o in swim.take_outbox() if isinstance(o, Outgoing)] == ["seed:1"]
    assert (swim.join_attempts, swim.join_sent_at) == (2, 1.0)  # the service logs these once joined
    swim.receive(1.1, "seed", Frame("seed", [PushPull([MemberState("seed", "seed:1", 0, Status.ALIVE)], reply=True)]))
    assert swim.joined
    assert "seed" in swim.members
    swim.tick(5.0)
    assert not [o for o in swim.take_outbox() if o.addr == "seed:1" and o.name is None]


def test_unknown_sender_gets_a_full_state_exchange() -> None:
    swim = node()
    swim.receive(1.0, "stranger", Frame("stranger", [Ping(1, "a")], "stranger:7946"))
    out = swim.take_outbox()
    assert any(o.addr == "stranger:7946" and isinstance(o.frame.messages[0], PushPull) for o in out)


def test_refused_reconnect_shortens_the_suspicion_but_refutation_still_wins() -> None:
    swim = node()
    swim.connection_lost(1.0, "b")
    swim.connection_refused(1.01, "b")
    swim.tick(1.01 + CFG.refused_timeout - 0.001)
    assert swim.members["b"].status == Status.SUSPECT
    swim.tick(1.01 + CFG.refused_timeout)
    assert swim.members["b"].status == Status.DEAD

    other = node()
    other.connection_lost(1.0, "c")
    other.connection_refused(1.01, "c")
    other.receive(1.1, "c", Frame("c", [Alive("c", 1, "c:7946")]))  # it restarted and refuted
    other.tick(2.0)
    assert other.members["c"].status == Status.ALIVE


def test_own_failed_probe_of_a_suspect_confirms_it() -> None:
    swim = node(members=tuple("bcdefg"), config=dataclasses.replace(CFG, suspicion_checkers=0))
    swim.receive(0.5, "c", Frame("c", [Suspect("b", 0, "c")]))
    since = 0.0
    for _ in range(20):
        target, _seq = run_probe_until_sent(swim, since)
        probe = swim._probes[target]
        if target == "b":
            swim.tick(probe.indirect_at)
            swim.tick(probe.ends_at)
            break
        swim.receive(probe.started + 0.01, target, Frame(target, [Ack(probe.seq)]))
        swim.tick(probe.ends_at)
        since = probe.ends_at
    assert swim.name in swim._suspicions["b"].confirmers


def test_a_suspect_whose_frames_keep_arriving_is_not_declared_dead() -> None:
    swim = node()
    swim.receive(1.0, "c", Frame("c", [Suspect("b", 0, "c")]))
    suspicion = swim._suspicions["b"]
    first_deadline = swim.next_deadline()
    # b's refutation is stuck, but b itself still talks to us (say, an ack for someone else).
    swim.receive(1.5, "b", Frame("b", [Ack(999)]))
    sent(swim)
    deadline = swim._suspicion_deadline("b", suspicion)
    swim.tick(deadline)
    assert swim.members["b"].status == Status.SUSPECT
    reminders = kinds(sent(swim), Suspect)
    assert ("b", Suspect("b", 0, "c")) in reminders  # reminded at once, so it can refute
    assert swim._suspicion_deadline("b", suspicion) > max(deadline, first_deadline)
    # Silence after the restart: the next expiry is a death.
    swim.tick(swim._suspicion_deadline("b", suspicion))
    assert swim.members["b"].status == Status.DEAD


def test_frames_from_a_suspect_do_not_delay_a_refused_reconnect() -> None:
    swim = node()
    swim.connection_lost(1.0, "b")
    swim.receive(1.05, "b", Frame("b", [Ack(999)]))  # sent just before it died
    swim.connection_refused(1.1, "b")
    swim.tick(1.1 + CFG.refused_timeout)
    assert swim.members["b"].status == Status.DEAD


def test_a_seed_tells_every_member_about_a_joiner_at_once() -> None:
    seed = node()
    joiner_state = MemberState("j", "j:7946", 0, Status.ALIVE)
    seed.receive(1.0, "j", Frame("j", [PushPull([joiner_state], join=True)], addr="j:7946"))
    out = sent(seed)
    told = {to for to, alive in kinds(out, Alive) if isinstance(alive, Alive) and alive.node == "j"}
    assert told - {"j"} == {"b", "c", "d", "e"}  # (j may hear its own news piggybacked)
    assert [to for to, _ in kinds(out, PushPull)] == ["j"]  # and the joiner gets the full state back


def test_joins_right_behind_a_relayed_one_are_relayed_together() -> None:
    seed = node()

    def join(t: float, name: str) -> None:
        state = MemberState(name, f"{name}:7946", 0, Status.ALIVE)
        seed.receive(t, name, Frame(name, [PushPull([state], join=True)], addr=f"{name}:7946"))

    def relays(out: list[Outgoing]) -> dict[str, set[str]]:
        """Who was told of which joiner, outside the join answers (which carry the full state)."""
        told: dict[str, set[str]] = {}
        for o in out:
            if any(isinstance(m, PushPull) for m in o.frame.messages):
                continue
            for alive in o.frame.messages:
                if isinstance(alive, Alive) and alive.node in ("j", "k", "l") and o.name != alive.node:
                    told.setdefault(alive.node, set()).add(str(o.name))
        return told

    join(1.0, "j")
    assert relays(seed.take_outbox()) == {"j": {"b", "c", "d", "e"}}  # the first goes out at once
    join(1.01, "k")
    join(1.02, "l")
    out = seed.take_outbox()
    assert sorted(str(o.name) for o in out if any(isinstance(m, PushPull) for m in o.frame.messages)) == ["k", "l"]
    assert relays(out) == {}  # but told to the others together, one gap after the first relay
    assert seed._join_relay_at == pytest.approx(1.0 + JOIN_RELAY_GAP)
    seed.tick(1.0 + JOIN_RELAY_GAP)
    out = seed.take_outbox()
    members = {"b", "c", "d", "e", "j"}
    assert relays(out) == {"k": members | {"l"}, "l": members | {"k"}}
    both = {str(o.name) for o in out if {"k", "l"} <= {m.node for m in o.frame.messages if isinstance(m, Alive)}}
    assert both == members  # one frame per member carries both joins


def test_join_news_that_reached_every_member_is_not_gossiped_on() -> None:
    seed = node()
    state = MemberState("j", "j:7946", 0, Status.ALIVE)
    seed.receive(1.0, "j", Frame("j", [PushPull([state], join=True)], addr="j:7946"))
    relayed = [m for to, m in kinds(sent(seed), Alive) if isinstance(m, Alive) and m.node == "j" and to != "j"]
    assert len(relayed) == 4
    assert all(m.told_all for m in relayed)
    assert "j|state" not in seed._broadcasts  # the seed does not gossip it either
    member = node("b", members=("a", "c", "d", "e"))
    member.receive(1.01, "a", Frame("a", [relayed[0]]))
    assert member.members["j"].status == Status.ALIVE
    assert "j|state" not in member._broadcasts
    # Without the mark (gossip, or a relay in a cluster bigger than the fan-out) it spreads on.
    member.receive(1.02, "a", Frame("a", [Alive("k", 0, "k:7946")]))
    assert "k|state" in member._broadcasts


def test_join_news_in_a_cluster_bigger_than_the_relay_fan_out_is_gossiped_on() -> None:
    seed = node(members=tuple(f"m{i}" for i in range(JOIN_RELAY_FANOUT + 3)))
    state = MemberState("j", "j:7946", 0, Status.ALIVE)
    seed.receive(1.0, "j", Frame("j", [PushPull([state], join=True)], addr="j:7946"))
    relayed = [(to, m) for to, m in kinds(sent(seed), Alive) if isinstance(m, Alive) and m.node == "j" and to != "j"]
    assert len({to for to, _ in relayed}) >= JOIN_RELAY_FANOUT - 1  # (j may be among those picked)
    assert not any(m.told_all for _, m in relayed)
    member = node("m0", members=("a",))
    member.receive(1.01, "a", Frame("a", [relayed[0][1]]))
    assert "j|state" in member._broadcasts  # the members the relay missed hear it by gossip


def test_join_retries_queued_behind_an_answered_request_are_not_answered_again() -> None:
    seed = node()
    request = Frame("j", [PushPull([MemberState("j", "j:7946", 0, Status.ALIVE)], join=True)], addr="j:7946")
    seed.receive(1.0, "j", request)
    assert kinds(sent(seed), PushPull)
    seed.receive(1.01, "j", request)  # two retries that waited in j's queue while its dials failed
    seed.receive(1.02, "j", request)
    assert sent(seed) == []
    seed.receive(2.1, "j", request)  # a retry a second later: our answer may have been lost
    assert [to for to, _ in kinds(sent(seed), PushPull)] == ["j"]


def test_an_unconfirmed_suspicion_asks_witnesses_before_declaring_death() -> None:
    swim = node()
    swim.receive(1.0, "b", Frame("b", [Ping(1, "a")]))  # b was heard before it was suspected
    swim._suspect(1.5, swim.members["b"], 0, "a")
    sent(swim)
    suspicion = swim._suspicions["b"]
    deadline = swim._suspicion_deadline("b", suspicion)
    swim.tick(deadline)
    assert swim.members["b"].status == Status.SUSPECT
    asked = [str(to) for to, _ in kinds(sent(swim), PushPull)]
    assert len(asked) == 2
    assert "b" not in asked
    # A witness has b's refutation: the answer clears the suspicion.
    refuted = MemberState("b", "b:7946", 1, Status.ALIVE)
    swim.receive(deadline + 0.05, asked[0], Frame(asked[0], [PushPull([refuted], reply=True)]))
    assert swim.members["b"].status == Status.ALIVE
    assert "b" not in swim._suspicions


def test_an_unconfirmed_suspicion_ends_in_death_when_the_witnesses_know_nothing_newer() -> None:
    swim = node()
    swim._suspect(1.0, swim.members["b"], 0, "a")
    suspicion = swim._suspicions["b"]
    swim.tick(swim._suspicion_deadline("b", suspicion))
    assert suspicion.verify_until is not None
    swim.tick(suspicion.verify_until - 0.001)
    assert swim.members["b"].status == Status.SUSPECT
    swim.tick(suspicion.verify_until)
    assert swim.members["b"].status == Status.DEAD


def test_a_stall_of_this_node_gives_its_probe_and_suspicions_their_time_back() -> None:
    swim = node()
    target, seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    other = "e" if target != "e" else "d"
    swim._suspect(probe.started, swim.members[other], 0, "a")
    suspicion = swim._suspicions[other]
    deadline = swim._suspicion_deadline(other, suspicion)
    # The process stopped right after sending the ping and ran again 3 s later: every
    # deadline has passed, and the ack is still unread.
    stall = 3.0
    resumed = probe.started + stall
    swim.stalled(resumed, stall)
    swim.tick(resumed)
    assert kinds(sent(swim), PingReq) == []  # the probe has not run out: no indirect probes yet
    assert swim.members[other].status == Status.SUSPECT  # nor has the suspicion
    assert swim._suspicion_deadline(other, suspicion) == deadline + stall
    assert swim.awareness == 1
    swim.receive(resumed + 0.001, target, Frame(target, [Ack(seq)]))
    swim.tick(resumed + 0.01)
    assert swim.members[target].status == Status.ALIVE


def test_a_revoked_member_is_dead_everywhere_and_its_refutations_are_ignored() -> None:
    swim = Swim("a", "a:7946", config=CFG, rng=random.Random(7), now=0.0)
    swim.receive(0.0, "b", Frame("b", [Alive("b", 0, "b:7946", {"cert": "cd" * 32})]))
    swim.receive(0.0, "c", Frame("c", [Alive("c", 0, "c:7946", {"cert": "ef" * 32})]))
    swim.receive(1.0, "c", Frame("c", [Revoke("cd" * 32, "b")]))  # revoked on another node
    assert swim.members["b"].status == Status.DEAD
    # b refutes, and a node that has not heard of the revocation yet relays it.
    swim.receive(1.1, "c", Frame("c", [Alive("b", 5, "b:7946", {"cert": "cd" * 32})]))
    assert swim.members["b"].status == Status.DEAD
    # Re-joined with a new certificate, it is welcome again.
    swim.receive(2.0, "c", Frame("c", [Alive("b", 6, "b:7946", {"cert": "01" * 32})]))
    assert swim.members["b"].status == Status.ALIVE


def test_a_probe_fails_at_its_deadline_not_a_whole_interval_later() -> None:
    swim = node()
    target, _seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    assert probe.ends_at == pytest.approx(probe.started + CFG.probe_deadline)
    swim.tick(probe.indirect_at)
    swim.tick(probe.ends_at)
    assert swim.members[target].status == Status.SUSPECT


def rounds_of(names: list[str], rounds: range) -> dict[int, dict[str, list[tuple[str, bool]]]]:
    """Every node's partners in each round, for a cluster where all know all."""
    nodes = {name: node(name, tuple(n for n in names if n != name)) for name in names}
    return {r: {name: swim._partners(r) for name, swim in nodes.items()} for r in rounds}


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6, 7, 8, 16, 31, 32])
def test_each_round_pairs_every_member_and_a_cycle_meets_everyone(size: int) -> None:
    names = [f"n{i:02d}" for i in range(size)]
    cycle = size - 1 + size % 2
    table = rounds_of(names, range(100, 100 + cycle))
    met: set[frozenset[str]] = set()
    pings = dict.fromkeys(names, 0)
    for partners in table.values():
        for name, pairs in partners.items():
            assert pairs, f"{name} has no partner in a round"
            assert len(pairs) <= 2
            for other, first in pairs:
                # The pair agrees: each lists the other, and exactly one of them pings first.
                assert (name, not first) in partners[other]
                met.add(frozenset((name, other)))
                pings[name] += first
    assert len(met) == size * (size - 1) // 2  # every pair met within one cycle
    # Each side pings in about half its rounds; an odd cluster's extra pair adds a few.
    assert all(cycle // 2 - 1 <= count <= cycle // 2 + 2 for count in pings.values()), pings


def test_a_member_that_died_drops_out_of_the_rounds_at_once() -> None:
    a = node("a", members=("b", "c", "d"))
    assert "d" in {name for r in range(3) for name, _ in a._partners(r)}
    a.receive(1.0, "b", Frame("b", [Dead("d", 0, "b")]))
    assert a.members["d"].status == Status.DEAD
    assert {name for r in range(6) for name, _ in a._partners(r)} == {"b", "c"}


def test_the_waiting_side_pings_only_when_its_partner_has_not() -> None:
    interval, standby = CFG.probe_interval, CFG.probe_standby
    a = node("a", members=("b",))
    # Two members meet in every round; a pings first in even rounds, b in odd ones.
    a.tick(10 * interval)
    assert [to for to, _ in kinds(sent(a), Ping)] == ["b"]
    a.receive(10 * interval + 0.01, "b", Frame("b", [Ack(a._probes["b"].seq)]))
    a.tick(11 * interval)  # b's turn: a waits
    assert kinds(sent(a), Ping) == []
    a.receive(11 * interval + 0.05, "b", Frame("b", [Ping(3, "a")]))
    assert kinds(sent(a), Ack) == [("b", Ack(3))]
    a.tick(11 * interval + standby + 0.01)
    assert kinds(sent(a), Ping) == []  # b's ping came: that exchange checked both
    a.tick(13 * interval)  # b's turn again, but b stays silent
    assert kinds(sent(a), Ping) == []
    a.tick(13 * interval + standby)
    assert [to for to, _ in kinds(sent(a), Ping)] == ["b"]


def test_rounds_start_on_the_shared_clock() -> None:
    a = node("a", members=("b",))
    a.clock_offset = 1000.25  # this node's monotonic clock runs 1000.25 s behind the wall clock
    first = math.ceil(1000.25 / CFG.probe_interval) * CFG.probe_interval - 1000.25
    a.tick(0.0)
    sent(a)
    assert a.next_deadline() == pytest.approx(first)


def test_a_joiner_takes_its_seeds_round_clock() -> None:
    seed = node("a", members=("c",))
    seed.clock_offset = 500.0
    joiner = Swim("b", "b:7946", config=CFG, rng=random.Random(1), now=2.0)
    joiner.clock_offset = -3.0
    joiner.join(2.0, ["a:7946"])
    (request,) = joiner.take_outbox()
    seed.receive(2.01, "b", request.frame)
    answer = next(o for o in seed.take_outbox() if o.name == "b" and isinstance(o.frame.messages[0], PushPull))
    joiner.receive(2.02, "a", answer.frame)
    assert joiner._clock(2.02) == pytest.approx(seed._clock(2.01))


def test_pings_pull_round_clocks_together_a_bounded_step_at_a_time() -> None:
    a = node("a", members=("b",))
    a.receive(1.0, "b", Frame("b", [Ping(1, "a", clock=1.1)]))  # b's clock is 0.1 s ahead
    assert a._clock(1.0) == pytest.approx(1.05)  # halfway
    a.receive(2.0, "b", Frame("b", [Ping(2, "a", clock=100.0)]))  # a wild clock moves us a little
    assert a._clock(2.0) == pytest.approx(2.05 + CFG.probe_interval / 4)
    a.receive(3.0, "b", Frame("b", [Ping(3, "a")]))  # a node without round clocks
    assert a._clock(3.0) == pytest.approx(3.05 + CFG.probe_interval / 4)


def test_hearing_of_a_suspicion_checks_the_suspect_at_once() -> None:
    swim = node(members=tuple("bcdefg"))
    swim.receive(0.5, "c", Frame("c", [Suspect("b", 0, "c")]))
    pings = kinds(sent(swim), Ping)
    assert [to for to, _ in pings] == ["b"]  # out of schedule: no probe round was due
    check = swim._probes["b"]
    swim.tick(check.indirect_at)
    assert {to for to, _ in kinds(sent(swim), PingReq)} <= set("cdefg")
    swim.tick(check.ends_at)
    assert swim.name in swim._suspicions["b"].confirmers  # our failed check is a confirmation
    assert "b" not in swim._probes


def test_an_acked_check_confirms_nothing_and_a_refuted_suspect_is_not_suspected_again() -> None:
    swim = node(members=tuple("bcdefg"))
    start_round_answered(swim, 0.01)
    swim.receive(0.5, "c", Frame("c", [Suspect("b", 0, "c")]))
    (_, ping), *_ = kinds(sent(swim), Ping)
    assert isinstance(ping, Ping)
    swim.receive(0.55, "b", Frame("b", [Ack(ping.seq)]))
    swim.tick(0.6)
    assert "b" not in swim._probes
    assert swim._suspicions["b"].confirmers == set()
    swim.receive(1.0, "d", Frame("d", [Suspect("e", 0, "d")]))
    check = swim._probes["e"]
    swim.receive(1.1, "e", Frame("e", [Alive("e", 1, "e:7946")]))  # refuted; the check's ack is lost
    swim.tick(check.indirect_at)
    swim.tick(check.ends_at)
    assert swim.members["e"].status == Status.ALIVE
    assert "e" not in swim._suspicions


def test_only_a_few_members_of_a_big_cluster_check_a_suspect() -> None:
    members = tuple(f"m{i:03d}" for i in range(200))
    checkers = 0
    for seed in range(50):
        swim = node(members=members)
        swim._rng = random.Random(seed)
        swim.receive(0.5, "m001", Frame("m001", [Suspect("m000", 0, "m001")]))
        checkers += "m000" in swim._probes
    assert 0 < checkers < 50 * CFG.suspicion_checkers / 198 * 3


def test_periodic_sync_sends_a_hash_and_full_state_only_when_views_differ() -> None:
    a, b = node("a", members=("b", "c")), node("b", members=("a", "c"))
    for swim in (a, b):
        swim._broadcasts.clear()  # nothing to piggyback: the sync alone
    a._push_pull(1.0)
    (frame,) = [o.frame for o in a.take_outbox()]
    (summary,) = frame.messages
    assert isinstance(summary, PushPullSummary)
    assert frame.addr == ""  # a member's address rides only with full state
    assert len(encode_frame(frame)) < 40
    b.receive(1.0, "a", frame)
    assert b.take_outbox() == []  # same view: nothing more
    b.receive(1.1, "d", Frame("d", [Alive("d", 0, "d:7946")]))  # b learns something a has not
    b.take_outbox()
    b.receive(1.2, "a", frame)
    (answer,) = b.take_outbox()
    assert answer.name == "a"
    assert isinstance(answer.frame.messages[0], PushPull)
    assert answer.frame.addr == "b:7946"
    a.receive(1.3, "b", answer.frame)
    assert "d" in a.members
    replies = [m for o in a.take_outbox() for m in o.frame.messages if isinstance(m, PushPull)]
    assert [m.reply for m in replies] == [True]


def test_state_digest_ignores_the_order_of_metadata() -> None:
    a, b = node("a", members=("b",)), node("b", members=("a",))
    a.members["a"].meta = {"api": "x", "cert": "f"}
    b.members["a"].meta = {"cert": "f", "api": "x"}
    assert a._state_digest() == b._state_digest()
    b.members["a"].meta = {"cert": "g", "api": "x"}
    assert a._state_digest() != b._state_digest()


def test_a_gossip_round_reaches_every_target_once_per_broadcast() -> None:
    swim = node(members=("b", "c", "d", "e"))
    start_round_answered(swim, 0.71)
    swim._broadcasts.clear()
    swim._broadcast_keys.clear()
    swim.receive(1.0, "b", Frame("b", [Dead("c", 0, "b")]))
    sent(swim)
    swim.tick(swim._next_gossip)
    out = [(o.name, o.frame.messages) for o in swim.take_outbox()]
    assert sorted(str(name) for name, _ in out if name != "c") == ["b", "d", "e"]  # c is dead; maybe gossiped to anyway
    assert all(messages == [Dead("c", 0, "b")] for _, messages in out)


def gossip_frames(swim: Swim, subject: str) -> list[list[Message]]:
    """The frames sent that are gossip (not probes) about `subject` to members other than it."""
    frames = [(o.name, list(o.frame.messages)) for o in swim.take_outbox()]
    return [
        messages
        for to, messages in frames
        if to != subject
        and not any(isinstance(m, Ping | PingReq) for m in messages)
        and any(getattr(m, "node", None) == subject for m in messages)
    ]


def test_urgent_news_is_gossiped_at_once_but_not_more_often_than_the_urgent_gap() -> None:
    swim = node(members=tuple("bcdefghij"))
    swim.tick(1.0)  # a regular gossip tick may fall here; what follows is measured from it
    sent(swim)
    last = swim._last_gossip
    swim.receive(1.2, "b", Frame("b", [Suspect("g", 0, "b")]))
    assert swim.next_deadline() <= max(1.2, last + URGENT_GOSSIP_GAP)  # news goes out now, not a tick later
    swim.tick(1.2)
    assert gossip_frames(swim, "g")
    # A burst of accusations right behind it waits for the gap, then goes out in one gossip round.
    for i, accuser in enumerate("cdef"):
        swim.receive(1.2 + 0.005 * (i + 1), accuser, Frame(accuser, [Suspect("h", 0, accuser)]))
        swim.tick(1.2 + 0.005 * (i + 1))
    assert swim._next_gossip == pytest.approx(1.2 + URGENT_GOSSIP_GAP)
    assert not gossip_frames(swim, "h")
    swim.tick(1.2 + URGENT_GOSSIP_GAP)
    frames = gossip_frames(swim, "h")
    assert len(frames) == CFG.gossip_nodes
    assert {m.accuser for m in frames[0] if isinstance(m, Suspect) and m.node == "h"} == set("cdef")


def test_a_ping_that_waits_for_a_new_connection_gets_the_handshake_time() -> None:
    swim = node()
    target, _seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    deadline = probe.ends_at
    swim.dialling(target, 1.0)
    swim.dialling(target, 1.0)  # once per probe
    swim.tick(deadline + 0.01)
    assert kinds(sent(swim), PingReq) == []  # no indirect probes while the handshake may still run
    assert swim.members[target].status == Status.ALIVE
    swim.tick(deadline + 0.99)
    assert swim.members[target].status == Status.ALIVE
    for helper, req in kinds(sent(swim), PingReq):  # the helpers cannot reach it either
        assert isinstance(req, PingReq)
        swim.receive(deadline + 0.99, str(helper), Frame(str(helper), [Nack(req.seq)]))
    swim.tick(deadline + 1.0)
    assert swim.members[target].status == Status.SUSPECT  # the dial failed: the probe fails, a second late


def test_a_probe_that_waited_on_a_dial_accuses_no_one_without_the_helpers_nacks() -> None:
    swim = node()
    target, _seq = run_probe_until_sent(swim)
    probe = swim._probes[target]
    swim.dialling(target, 1.0)
    swim.tick(probe.indirect_at)
    assert len(kinds(sent(swim), PingReq)) == CFG.indirect_checks
    swim.tick(probe.ends_at)
    assert swim.members[target].status == Status.ALIVE
    assert swim.awareness == 1  # Lifeguard: this node may be the slow one


def test_a_relay_whose_ping_waits_on_a_dial_holds_its_nack() -> None:
    swim = node()
    swim.receive(1.0, "c", Frame("c", [PingReq(7, "b", "b:7946")]))
    assert [to for to, _ in kinds(sent(swim), Ping)] == ["b"]
    swim.dialling("b", 1.0)
    swim.tick(1.0 + CFG.probe_timeout)
    assert kinds(sent(swim), Nack) == []
    swim.tick(2.0 + CFG.probe_timeout)
    assert kinds(sent(swim), Nack) == [("c", Nack(7))]


def gossiped_about(swim: Swim, since: float, names: set[str]) -> set[str]:
    """Which of `names` this node gossips an Alive about over a few gossip rounds."""
    t = since
    about: set[str] = set()
    for _ in range(10):
        t += CFG.gossip_interval
        swim.tick(t)
        about |= {m.node for _, _, m in sent(swim) if isinstance(m, Alive) and m.node in names}
    return about


def test_a_joiner_takes_its_seeds_view_without_gossiping_it_on_but_spreads_later_news() -> None:
    swim = Swim("x", "x:1", config=CFG, rng=random.Random(1), now=0.0)
    swim.join(0.0, ["seed:1"])
    swim.take_outbox()
    view = [MemberState(n, f"{n}:1", 0, Status.ALIVE) for n in ("seed", "b", "c", "d")]
    swim.receive(0.1, "seed", Frame("seed", [PushPull(view, reply=True)]))
    assert {"seed", "b", "c", "d"} <= set(swim.members)
    assert [e.name for e in swim.take_events() if e.kind == EventKind.JOINED] == ["seed", "b", "c", "d"]
    # The seed gossiped these members when it learned of them; everyone has them.
    assert gossiped_about(swim, 0.1, {"seed", "b", "c", "d"}) == set()
    # A later full sync may heal a partition: what is news there is spread.
    later = [*view, MemberState("z", "z:1", 0, Status.ALIVE), MemberState("b", "b:1", 3, Status.ALIVE)]
    swim.receive(3.0, "c", Frame("c", [PushPull(later)]))
    assert gossiped_about(swim, 3.0, {"z", "b", "c", "d"}) == {"z", "b"}
