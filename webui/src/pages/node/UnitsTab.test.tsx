import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, screen } from "@testing-library/react";
import UnitsTab from "./UnitsTab";
import { ADMIN, renderApp, VIEWER } from "../../test-utils";
import { useSession } from "../../session";

/** As the app does: pages render once someone is logged in. */
function Tab() {
  return useSession().state.status === "authenticated" ? <UnitsTab name="n1" /> : null;
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const DETAILS = {
  name: "dbus.service",
  description: "D-Bus System Message Bus",
  load_state: "loaded",
  active_state: "active",
  sub_state: "running",
  unit_file_state: "static",
  unit_file_preset: "",
  since: null,
  main_pid: 12,
  memory_bytes: null,
  cpu_seconds: null,
  tasks: null,
  restarts: 0,
  result: "success",
  fragment_path: "/usr/lib/systemd/system/dbus.service",
  drop_in_paths: [],
  protected: true,
  job: "",
  ...Object.fromEntries(
    ["after", "before", "conflicts", "part_of", "required_by", "requires", "triggered_by", "triggers", "wanted_by", "wants"].map((k) => [k, []]),
  ),
};

/** Answers by path; `status` for the units list. */
function stub(me: object, unitsStatus = 200) {
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: RequestInfo | URL) => {
      const path = new URL(String(input), "https://node.test").pathname.replace("/api/v1", "");
      const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status });
      if (path === "/auth/whoami") return json(me);
      if (path === "/nodes/n1/units" && unitsStatus === 503)
        return json({ status: 503, title: "Service Unavailable", detail: "no system bus at unix:path=/x" }, 503);
      if (path === "/nodes/n1/units")
        return json([{ name: "dbus.service", description: "D-Bus", load_state: "loaded", active_state: "active", sub_state: "running", following: "", job: "" }]);
      if (path === "/nodes/n1/units/dbus.service") return json(DETAILS);
      if (path === "/nodes/n1/journal") return json({ entries: [], more: false });
      return json({ status: 404, title: "Not Found" }, 404);
    }),
  );
}

describe("the units tab", () => {
  it("says plainly that the node has no system bus", async () => {
    stub(ADMIN, 503);
    renderApp(<Tab />);
    expect(await screen.findByText("No system bus on this node")).toBeTruthy();
    expect(screen.getByText(/no system bus at unix:path=\/x/)).toBeTruthy();
  });

  it("gives an admin a forced stop of a protected unit, and its journal", async () => {
    stub({ ...ADMIN, permissions: [...ADMIN.permissions, "units:read", "units:manage", "units:force", "journal:read"] });
    renderApp(<Tab />, "/nodes/n1?tab=units&unit=dbus.service");
    expect(await screen.findByText("protected")).toBeTruthy();
    expect(screen.getByRole("button", { name: "Force stop" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Restart" })).toBeTruthy();
    expect(await screen.findByText("No entries.")).toBeTruthy();
  });

  it("shows a viewer the unit without a single button to act or its journal", async () => {
    stub({ ...VIEWER, permissions: [...VIEWER.permissions, "units:read"] });
    renderApp(<Tab />, "/nodes/n1?tab=units&unit=dbus.service");
    expect(await screen.findByText("protected")).toBeTruthy();
    for (const name of ["Start", "Stop", "Restart", "Force stop", "Enable", "Disable", "Force disable"]) {
      expect(screen.queryByRole("button", { name })).toBeNull();
    }
    expect(screen.queryByTestId("journal")).toBeNull();
  });
});
