import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, screen } from "@testing-library/react";
import { Route, Routes } from "react-router-dom";
import HostNetwork from "./HostNetwork";
import { ADMIN, renderApp, stubApi, VIEWER } from "../../test-utils";
import { useSession } from "../../session";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const CONFIG = { nics: [], bonds: [], vlans: [], vxlans: [], bridges: [{ name: "br0", addresses: ["10.0.0.1/24"] }] };
const PENDING = {
  node: "n1",
  desired: CONFIG,
  applied: null,
  pending: CONFIG,
  deadline: 2e9,
  remaining: 42,
  last_outcome: null,
  startup: "applied at start",
  links: [{ name: "br0", index: 3, kind: "bridge", mac: "aa:bb:cc:dd:ee:ff", mtu: 1500, up: true, operstate: "UP", addresses: ["10.0.0.1/24"], counters: { rx_bytes: 2048, rx_packets: 2 } }],
  routes: [],
};
const OPERATOR = { ...ADMIN, permissions: [...ADMIN.permissions, "network:read", "network:manage"] };

function Authenticated({ children }: { children: React.ReactNode }) {
  return useSession().state.status === "authenticated" ? children : null;
}

function page() {
  return (
    <Authenticated>
    <Routes>
      <Route path="/nodes/:name/network" element={<HostNetwork />} />
    </Routes>
    </Authenticated>
  );
}

describe("a node's host network", () => {
  it("counts down the confirm window and offers Confirm and Roll back to who may manage", async () => {
    stubApi({ "/auth/whoami": OPERATOR, "/nodes/n1/network/status": PENDING });
    renderApp(page(), "/nodes/n1/network");
    const timer = await screen.findByTestId("countdown");
    expect(Number(timer.textContent?.split(" ")[0])).toBeGreaterThan(40);
    expect(screen.getByRole("button", { name: "Confirm" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Roll back" })).toBeTruthy();
    expect(screen.getByText("2.0 KiB (2 packets)")).toBeTruthy();
    expect((screen.getByRole("button", { name: "Apply" }) as HTMLButtonElement).disabled).toBe(true); // one change at a time
  });

  it("shows a viewer the same without a button it may not press", async () => {
    stubApi({ "/auth/whoami": VIEWER, "/nodes/n1/network/status": PENDING });
    renderApp(page(), "/nodes/n1/network");
    await screen.findByTestId("countdown");
    for (const name of ["Confirm", "Roll back", "Apply", "Store"]) expect(screen.queryByRole("button", { name })).toBeNull();
    expect(screen.getByRole("button", { name: "Show the plan" })).toBeTruthy();
  });
});
