import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, screen, waitFor } from "@testing-library/react";
import { App } from "../App";
import { ADMIN, renderApp, stubApi, VIEWER } from "../test-utils";

vi.mock("../live", () => ({
  LiveEvents: ({ children }: { children: React.ReactNode }) => children,
  useStreamStatus: () => "live",
}));

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const CLUSTER = {
  answered_by: "n1",
  cluster_id: "0123456789abcdef",
  members: [
    { name: "n1", state: "alive", api_address: "10.0.0.1:8443", gossip_address: "", incarnation: 1, last_change: 0, version: "0.1.0" },
    { name: "n2", state: "suspect", api_address: "10.0.0.2:8443", gossip_address: "", incarnation: 3, last_change: 0, version: "0.1.0" },
  ],
  facts: {},
  states: {},
  totals: { cpus: 8, memory_bytes: 16 * 1024 ** 3, nodes: 2 },
  versions: {},
};

const AUDIT = {
  entries: [
    { seq: 7, ts: 1765137600, node: "n1", user: "admin", source: "10.0.0.5", action: "user.create", target: "ops", outcome: "success", detail: "", credential: "", forwarded_by: "", hash: "", prev_hash: "" },
  ],
  next_after: null,
};

describe("the dashboard", () => {
  it("shows the members, their states, the totals and the latest audit entries", async () => {
    stubApi({ "/auth/whoami": ADMIN, "/cluster": CLUSTER, "/audit": AUDIT });
    renderApp(<App />);
    await screen.findByText("1 of 2 alive");
    expect(screen.getByText("suspect")).toBeTruthy();
    expect(screen.getByText("16 GiB")).toBeTruthy();
    await screen.findByText("user.create");
    expect(screen.getByRole("link", { name: "Users", hidden: true })).toBeTruthy();
  });

  it("gives a viewer neither the audit log nor the users page", async () => {
    const fetcher = stubApi({ "/auth/whoami": VIEWER, "/cluster": CLUSTER });
    renderApp(<App />);
    await screen.findByText("1 of 2 alive");
    expect(screen.queryByText("Recent audit events")).toBeNull();
    expect(screen.queryByRole("link", { name: "Users", hidden: true })).toBeNull();
    expect(screen.queryByRole("link", { name: "Audit log", hidden: true })).toBeNull();
    await waitFor(() => expect(fetcher.mock.calls.some(([u]) => String(u).includes("/audit"))).toBe(false));
  });

  it("shows the login page when there is no session", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ status: 401, title: "Unauthorized" }), { status: 401 })));
    renderApp(<App />, "/nodes/n2");
    await screen.findByRole("heading", { name: "Log in to DebVisor" });
  });
});
