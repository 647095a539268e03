// The app: session first (login, forced password change), then the shell with its routes.
// Pages other than the dashboard are loaded when first visited, which keeps the first load small.
import { Suspense } from "react";
import { Route, Routes } from "react-router-dom";
import { Bullseye, Spinner } from "./pf";
import { LiveEvents } from "./live";
import { Login } from "./pages/Login";
import { Dashboard } from "./pages/Dashboard";
import { NotFound } from "./pages/NotFound";
import { Shell } from "./Shell";
import { useSession } from "./session";

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
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </Shell>
    </LiveEvents>
  );
}

