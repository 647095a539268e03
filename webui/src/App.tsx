// The app: session first (login, forced password change), then the shell with its routes.
// Pages other than the dashboard are loaded when first visited, which keeps the first load small.
import { lazy, Suspense } from "react";
import { Route, Routes } from "react-router-dom";
import { Bullseye, Spinner } from "./pf";
import { LiveEvents } from "./live";
import { Login } from "./pages/Login";
import { Dashboard } from "./pages/Dashboard";
import { NotFound } from "./pages/NotFound";
import { Shell } from "./Shell";
import { useSession } from "./session";

// Loaded when first visited: the first load carries only the login page and the dashboard.
const Nodes = lazy(() => import("./pages/Nodes"));
const NodePage = lazy(() => import("./pages/NodePage"));
const Users = lazy(() => import("./pages/Users"));
const Audit = lazy(() => import("./pages/Audit"));
const Tokens = lazy(() => import("./pages/Tokens"));
const HostNetwork = lazy(() => import("./pages/network/HostNetwork"));
const Overlays = lazy(() => import("./pages/network/Overlays"));
const Pxe = lazy(() => import("./pages/network/Pxe"));
const Access = lazy(() => import("./pages/network/Access"));
const NodeLabels = lazy(() => import("./pages/network/NodeLabels"));

function Loading() {
  return (
    <Bullseye>
      <Spinner size="xl" aria-label="Loading" />
    </Bullseye>
  );
}

export function App() {
  const { state } = useSession();
  if (state.status === "loading") return <Loading />;
  if (state.status !== "authenticated") return <Login />;
  return (
    <LiveEvents>
      <Shell>
        <Suspense fallback={<Loading />}>
          <Routes>
            <Route path="/" element={<Dashboard />} />
            <Route path="/nodes" element={<Nodes />} />
            <Route path="/nodes/:name" element={<NodePage />} />
            <Route path="/users" element={<Users />} />
            <Route path="/audit" element={<Audit />} />
            <Route path="/tokens" element={<Tokens />} />
            <Route path="/networks" element={<Overlays />} />
            <Route path="/nodes/:name/network" element={<HostNetwork />} />
            <Route path="/nodes/:name/pxe" element={<Pxe />} />
            <Route path="/nodes/:name/labels" element={<NodeLabels />} />
            <Route path="/access" element={<Access />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </Shell>
    </LiveEvents>
  );
}

