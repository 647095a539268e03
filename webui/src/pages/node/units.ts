// The units tab's rules (pure, unit-tested): which units a filter shows, and which actions a
// user may press on a unit (a viewer none; a protected unit's stop and disable only with
// force, which only admins hold: docs/units.md#protected-units).
import type { Unit } from "../../api/types";

export interface UnitFilter {
  type: string; // "" for all, else a suffix: "service", "socket", ...
  state: string; // "" for all, else an active state: "active", "inactive", "failed", ...
  search: string; // a case-insensitive substring of the name or description
}

export const UNIT_TYPES = ["service", "socket", "timer", "target", "mount", "path", "slice", "scope", "device", "swap", "automount"];
export const ACTIVE_STATES = ["active", "inactive", "failed", "activating", "deactivating", "reloading"];

export function unitType(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1);
}

export function filterUnits(units: Unit[], filter: UnitFilter): Unit[] {
  const needle = filter.search.trim().toLowerCase();
  return units
    .filter((u) => !filter.type || unitType(u.name) === filter.type)
    .filter((u) => !filter.state || u.active_state === filter.state)
    .filter((u) => !needle || u.name.toLowerCase().includes(needle) || u.description.toLowerCase().includes(needle))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export type UnitAction = "start" | "stop" | "restart" | "enable" | "disable";
export const ACTIONS: UnitAction[] = ["start", "stop", "restart", "enable", "disable"];
const REFUSED_WHEN_PROTECTED = new Set<UnitAction>(["stop", "disable"]);

export interface ActionButton {
  action: UnitAction;
  force: boolean; // sent with force: true (a protected unit, an admin)
}

/** The buttons a user sees for a unit, given their permissions. */
export function unitActions(permissions: string[], isProtected: boolean): ActionButton[] {
  if (!permissions.includes("units:manage")) return [];
  const mayForce = permissions.includes("units:force");
  const buttons: ActionButton[] = [];
  for (const action of ACTIONS) {
    if (isProtected && REFUSED_WHEN_PROTECTED.has(action)) {
      if (mayForce) buttons.push({ action, force: true });
      continue;
    }
    buttons.push({ action, force: false });
  }
  return buttons;
}

export function stateColor(active: string): "green" | "red" | "orange" | "grey" {
  if (active === "active") return "green";
  if (active === "failed") return "red";
  if (active === "activating" || active === "deactivating" || active === "reloading") return "orange";
  return "grey";
}
