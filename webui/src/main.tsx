import "@patternfly/react-core/dist/styles/base.css";
import "./app.css";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { BrowserRouter } from "react-router-dom";
import { App } from "./App";
import { api, ApiProblem } from "./api/client";
import type { ClusterSummary } from "./api/types";
import { recentAudit } from "./pages/Dashboard";
import { can, checkSession, SessionProvider } from "./session";
import { followSystemTheme } from "./theme";

followSystemTheme();

const queries = new QueryClient({
  defaultOptions: {
    queries: {
      // Fresh until an event says otherwise: the events socket invalidates what changed.
      staleTime: Infinity,
      refetchOnWindowFocus: false,
      retry: (count, error) => !(error instanceof ApiProblem && error.status < 500) && count < 2,
    },
  },
});

// The first load: the session check goes out now, and once it answers the dashboard's queries
// start at once, in parallel, before React has rendered the authenticated shell (the same
// keys and functions as the dashboard's, which then finds them in flight or done).
void checkSession().then((me) => {
  if (!me || window.location.pathname !== "/") return;
  void queries.prefetchQuery({ queryKey: ["cluster"], queryFn: () => api.get<ClusterSummary>("/cluster") });
  if (can(me, "audit:read")) void queries.prefetchQuery({ queryKey: ["audit", "recent"], queryFn: recentAudit });
});

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <QueryClientProvider client={queries}>
        <BrowserRouter>
          <SessionProvider>
            <App />
          </SessionProvider>
        </BrowserRouter>
      </QueryClientProvider>
    </StrictMode>,
  );
}
