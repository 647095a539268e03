import { describe, expect, it } from "vitest";
import { QueryClient } from "@tanstack/react-query";
import type { Unit } from "../../api/types";
import { applyLive, applyUnitChange } from "./live";
import { filterUnits, unitActions, unitType } from "./units";
import { entryOf, followUrl, journalLine, mergeEntries } from "./journal";
import { powerReady, reasonError } from "./Power";

function unit(name: string, active = "active", description = ""): Unit {
  return { name, description, load_state: "loaded", active_state: active, sub_state: "running", following: "", job: "" };
}

const UNITS = [unit("ssh.service", "active", "OpenBSD Secure Shell"), unit("cron.service", "failed", "Regular jobs"), unit("dbus.socket")];

describe("filterUnits", () => {
  it("filters by type, state and a search in names and descriptions, sorted by name", () => {
    expect(unitType("getty@tty1.service")).toBe("service");
    expect(filterUnits(UNITS, { type: "", state: "", search: "" }).map((u) => u.name)).toEqual([
      "cron.service",
      "dbus.socket",
      "ssh.service",
    ]);
    expect(filterUnits(UNITS, { type: "service", state: "", search: "" })).toHaveLength(2);
    expect(filterUnits(UNITS, { type: "", state: "failed", search: "" }).map((u) => u.name)).toEqual(["cron.service"]);
    expect(filterUnits(UNITS, { type: "", state: "", search: "secure" }).map((u) => u.name)).toEqual(["ssh.service"]);
    expect(filterUnits(UNITS, { type: "socket", state: "failed", search: "" })).toEqual([]);
  });
});

describe("unitActions", () => {
  const viewer = ["node:read", "units:read"];
  const operator = [...viewer, "units:manage"];
  const admin = [...operator, "units:force"];

  it("gives a viewer nothing to press", () => {
    expect(unitActions(viewer, false)).toEqual([]);
    expect(unitActions(viewer, true)).toEqual([]);
  });

  it("hides stop and disable of a protected unit from an operator", () => {
    expect(unitActions(operator, false).map((b) => b.action)).toEqual(["start", "stop", "restart", "enable", "disable"]);
    expect(unitActions(operator, true).map((b) => b.action)).toEqual(["start", "restart", "enable"]);
  });

  it("offers an admin a forced stop and disable of a protected unit", () => {
    const buttons = unitActions(admin, true);
    expect(buttons.filter((b) => b.force).map((b) => b.action)).toEqual(["stop", "disable"]);
    expect(unitActions(admin, false).every((b) => !b.force)).toBe(true);
  });
});

describe("unit events", () => {
  it("patches a listed unit in place and asks again for one it does not know", () => {
    const change = { unit: "cron.service", load_state: "loaded", active_state: "active", sub_state: "running", unloaded: false };
    const next = applyUnitChange(UNITS, change);
    expect(next?.find((u) => u.name === "cron.service")?.active_state).toBe("active");
    expect(next?.find((u) => u.name === "cron.service")?.description).toBe("Regular jobs");
    expect(UNITS[1]?.active_state).toBe("failed");
    expect(applyUnitChange(UNITS, { ...change, unit: "new.service" })).toBeNull();
    expect(applyUnitChange(UNITS, { ...change, unit: "gone.service", unloaded: true })).toBe(UNITS);
  });

  it("updates the cached list of the event's node", async () => {
    const client = new QueryClient();
    client.setQueryData(["units", "n1"], UNITS);
    client.setQueryData(["units", "n2"], UNITS);
    applyLive(client, [
      { type: "unit", node: "n1", id: 3, unit: "ssh.service", load_state: "loaded", active_state: "inactive", sub_state: "dead" },
    ]);
    expect(client.getQueryData<Unit[]>(["units", "n1"])?.find((u) => u.name === "ssh.service")?.sub_state).toBe("dead");
    expect(client.getQueryData<Unit[]>(["units", "n2"])?.find((u) => u.name === "ssh.service")?.sub_state).toBe("running");
    applyLive(client, [{ type: "unit", node: "n1", id: 4, unit: "other.service", active_state: "active" }]);
    expect(client.getQueryState(["units", "n1"])?.isInvalidated).toBe(true);
  });
});

describe("journal", () => {
  const e = (cursor: string, message = "m") => ({ cursor, message, time: 0, boot: "b", identifier: "sshd", pid: 7, truncated: false });

  it("merges followed entries without repeats and keeps the newest", () => {
    const shown = [e("a"), e("b")];
    expect(mergeEntries(shown, [e("b"), e("c")]).map((x) => x.cursor)).toEqual(["a", "b", "c"]);
    expect(mergeEntries(shown, [e("a")])).toBe(shown);
    expect(mergeEntries(shown, [e("c"), e("d")], 3).map((x) => x.cursor)).toEqual(["b", "c", "d"]);
  });

  it("reads frames, skipping heartbeats", () => {
    expect(entryOf(JSON.stringify(e("x")))?.cursor).toBe("x");
    expect(entryOf('{"type":"heartbeat","at":1}')).toBeNull();
    expect(entryOf("not json")).toBeNull();
    expect(journalLine(e("x", "hello"))).toMatch(/ sshd\[7\]: hello$/);
  });

  it("follows after the last entry shown, or the newest few", () => {
    const loc = { protocol: "https:", host: "n1:8443" };
    expect(followUrl(loc, "n1", "ssh.service")).toBe("wss://n1:8443/api/v1/nodes/n1/journal/follow?unit=ssh.service&limit=50");
    expect(followUrl(loc, "n1", "ssh.service", "s=1;i=2")).toContain("after=s%3D1%3Bi%3D2");
  });
});

describe("power", () => {
  it("needs a reason and the node's name typed back", () => {
    expect(powerReady("n2", { action: "reboot", reason: "kernel", confirm: "n2" })).toBe(true);
    expect(powerReady("n2", { action: "reboot", reason: "kernel", confirm: "n3" })).toBe(false);
    expect(powerReady("n2", { action: "reboot", reason: " ", confirm: "n2" })).toBe(false);
    expect(reasonError("x".repeat(201))).toBeDefined();
  });
});
