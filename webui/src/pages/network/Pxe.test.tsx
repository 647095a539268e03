import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, screen } from "@testing-library/react";
import { Route, Routes } from "react-router-dom";
import Pxe from "./Pxe";
import { ADMIN, renderApp, stubApi } from "../../test-utils";
import { useSession } from "../../session";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const MAC = "52:54:00:12:34:56";
const MACHINES = [
  { mac: MAC, ip: "10.0.0.50", name: null, state: "pending", boots: 1, first_seen: 1, last_seen: 2, enlisted_at: null, hardware: null },
];
const SETTINGS = { enabled: true, approve_all: false, credential_seconds: 1800, lease_seconds: 3600, interface: "br0", enrolments: {} };
const PXE_ONLY = { ...ADMIN, role: "operator", permissions: ["self:manage", "node:read", "pxe:manage"] };
const WITH_APPROVAL = { ...PXE_ONLY, role: "admin", permissions: [...PXE_ONLY.permissions, "cluster:manage"] };

function Authenticated({ children }: { children: React.ReactNode }) {
  return useSession().state.status === "authenticated" ? children : null;
}

function page() {
  return (
    <Authenticated>
      <Routes>
        <Route path="/nodes/:name/pxe" element={<Pxe />} />
      </Routes>
    </Authenticated>
  );
}

const answers = (me: object) => ({ "/auth/whoami": me, "/nodes/n1/pxe/machines": MACHINES, "/nodes/n1/pxe": SETTINGS });

describe("a node's PXE page", () => {
  it("lets who may admit members approve a waiting machine, and refuse it", async () => {
    stubApi(answers(WITH_APPROVAL));
    renderApp(page(), "/nodes/n1/pxe");
    await screen.findByRole("button", { name: `Approve ${MAC}` });
    expect(screen.getByRole("button", { name: `Refuse ${MAC}` })).toBeTruthy();
    expect((await screen.findByLabelText("Settings (JSON)")).textContent).toContain('"interface": "br0"');
  });

  it("gives pxe:manage alone no Approve (approving admits a member: cluster:manage)", async () => {
    stubApi(answers(PXE_ONLY));
    renderApp(page(), "/nodes/n1/pxe");
    await screen.findByRole("button", { name: `Refuse ${MAC}` });
    expect(screen.queryByRole("button", { name: `Approve ${MAC}` })).toBeNull();
  });
});
