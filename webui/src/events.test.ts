import { describe, expect, it, vi } from "vitest";
import { QueryClient } from "@tanstack/react-query";
import { EventStream, invalidate, parseFrame, staleKeys, type EventMessage } from "./events";

class FakeSocket {
  static made: FakeSocket[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: MessageEvent) => void) | null = null;
  onclose: ((c: CloseEvent) => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }
  open() {
    this.onopen?.();
  }
  send(frame: string) {
    this.onmessage?.({ data: frame } as MessageEvent);
  }
  drop(code = 1006) {
    this.onclose?.({ code } as CloseEvent);
  }
  close() {
    this.closed = true;
  }
}

function stream(onEvents = vi.fn(), extra: Partial<ConstructorParameters<typeof EventStream>[0]> = {}) {
  FakeSocket.made = [];
  const timers: (() => void)[] = [];
  const delays: number[] = [];
  const s = new EventStream({
    base: "wss://node:8443",
    onEvents,
    socket: (u) => new FakeSocket(u) as unknown as WebSocket,
    schedule: (fn, ms) => {
      timers.push(fn);
      delays.push(ms);
      return timers.length;
    },
    cancel: () => undefined,
    ...extra,
  });
  return { s, timers, delays, onEvents };
}

describe("parseFrame", () => {
  it("splits a burst on newlines and skips what is not an event", () => {
    expect(parseFrame('{"type":"audit","id":1}\n\n{"type":"facts","id":2}\nnot json\n{"x":1}')).toEqual([
      { type: "audit", id: 1 },
      { type: "facts", id: 2 },
    ]);
  });
});

describe("staleKeys", () => {
  it("maps each event kind to the queries it makes stale", () => {
    expect(staleKeys({ type: "membership", member: "n2" })).toEqual([["cluster"], ["nodes"]]);
    expect(staleKeys({ type: "facts", node: "n1", owner: "n2" })).toEqual([["cluster"], ["nodes"], ["node", "n2"]]);
    expect(staleKeys({ type: "config", kind: "user" })).toEqual([["users"]]);
    expect(staleKeys({ type: "network", node: "n3" })).toEqual([["network", "n3"]]);
    expect(staleKeys({ type: "heartbeat" })).toEqual([]);
  });

  it("invalidates each named query once per batch", () => {
    const client = new QueryClient();
    const spy = vi.spyOn(client, "invalidateQueries");
    const batch: EventMessage[] = [
      { type: "audit", node: "n1", id: 1 },
      { type: "audit", node: "n1", id: 2 },
      { type: "membership", node: "n1", id: 3 },
    ];
    invalidate(client, batch);
    expect(spy.mock.calls.map((c) => c[0]?.queryKey)).toEqual([["audit"], ["cluster"], ["nodes"]]);
  });
});

describe("EventStream", () => {
  it("delivers events, drops replays, and resumes from the last id of each node", () => {
    const { s, timers, onEvents } = stream();
    const statuses: string[] = [];
    s.start();
    const first = FakeSocket.made[0]!;
    expect(first.url).toBe("wss://node:8443/api/v1/events");
    first.open();
    first.send('{"type":"audit","node":"n1","id":5}\n{"type":"audit","node":"n2","id":9}');
    first.send('{"type":"heartbeat","at":1}');
    expect(onEvents).toHaveBeenCalledTimes(1);
    first.drop();
    expect(timers).toHaveLength(1);
    timers[0]!();
    const second = FakeSocket.made[1]!;
    expect(decodeURIComponent(second.url)).toBe("wss://node:8443/api/v1/events?since=n1:5,n2:9");
    second.open();
    second.send('{"type":"audit","node":"n1","id":5}\n{"type":"audit","node":"n1","id":6}');
    expect(onEvents).toHaveBeenLastCalledWith([{ type: "audit", node: "n1", id: 6 }]);
    s.stop();
    expect(second.closed).toBe(true);
    void statuses;
  });

  it("backs off between failed attempts and resets once connected", () => {
    const { s, timers, delays } = stream();
    s.start();
    FakeSocket.made[0]!.drop();
    timers[0]!();
    FakeSocket.made[1]!.drop();
    timers[1]!();
    FakeSocket.made[2]!.open();
    FakeSocket.made[2]!.drop();
    expect(delays).toEqual([500, 1000, 500]);
    s.stop();
  });

  it("reports an ended session, a refused upgrade and a gap", () => {
    const onUnauthorized = vi.fn();
    const onGap = vi.fn();
    const onRefused = vi.fn();
    const { s, timers } = stream(vi.fn(), { onUnauthorized, onGap, onRefused });
    s.start();
    const socket = FakeSocket.made[0]!;
    socket.open();
    socket.send('{"type":"gap","node":"n2","since":4}');
    expect(onGap).toHaveBeenCalledTimes(1);
    socket.drop(4401);
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    expect(onRefused).not.toHaveBeenCalled();
    timers[0]!();
    FakeSocket.made[1]!.drop(1006); // refused before it opened
    expect(onRefused).toHaveBeenCalledTimes(1);
    s.stop();
  });
});
