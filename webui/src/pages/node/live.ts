// What the node page's views take from the events stream without asking the node again:
// a `history` sample is appended to every cached history of its node (charts keep drawing
// live), and a `unit` event patches the cached unit list of its node in place (its details,
// if open, are refetched). Called by src/live.tsx with each batch of events.
import type { QueryClient } from "@tanstack/react-query";
import type { Unit } from "../../api/types";
import type { EventMessage } from "../../events";
import { appendSample, sampleOf, type Frame } from "./history";

export interface UnitChange {
  unit: string;
  load_state: string;
  active_state: string;
  sub_state: string;
  unloaded: boolean;
}

export function unitChangeOf(event: EventMessage): UnitChange | null {
  if (event.type !== "unit" || typeof event.unit !== "string") return null;
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  return {
    unit: event.unit,
    load_state: str(event.load_state),
    active_state: str(event.active_state),
    sub_state: str(event.sub_state),
    unloaded: event.unloaded === true,
  };
}

/** The list with one unit's change applied; null when the unit is not in it (a new unit:
 * ask again, the event does not carry its description). */
export function applyUnitChange(units: Unit[], change: UnitChange): Unit[] | null {
  const i = units.findIndex((u) => u.name === change.unit);
  const old = units[i];
  if (old === undefined) return change.unloaded ? units : null;
  const next = units.slice();
  next[i] = {
    ...old,
    load_state: change.load_state || old.load_state,
    active_state: change.active_state || old.active_state,
    sub_state: change.sub_state || old.sub_state,
  };
  return next;
}

export function applyLive(client: QueryClient, events: EventMessage[]): void {
  for (const event of events) {
    const node = typeof event.node === "string" ? event.node : "";
    if (!node) continue;
    const sample = sampleOf(event);
    if (sample) {
      client.setQueriesData<Frame>({ queryKey: ["history", node] }, (frame) => (frame ? appendSample(frame, sample) : frame));
      continue;
    }
    const change = unitChangeOf(event);
    if (change) {
      const key = ["units", node];
      const units = client.getQueryData<Unit[]>(key);
      if (units) {
        const next = applyUnitChange(units, change);
        if (next) client.setQueryData(key, next);
        else void client.invalidateQueries({ queryKey: key, exact: true });
      }
      void client.invalidateQueries({ queryKey: ["unit", node, change.unit] });
    }
  }
}
