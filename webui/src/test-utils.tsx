// Rendering a page as the app does (queries, router, a session), against a stubbed fetch
// that answers by path: component tests need no node.
import type { ReactNode } from "react";
import { render } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter } from "react-router-dom";
import { vi } from "vitest";
import { SessionProvider } from "./session";

export type Answers = Record<string, unknown>;

/** Stub fetch: the body for the first key the URL's path starts with; 404 otherwise. */
export function stubApi(answers: Answers) {
  const fetcher = vi.fn(async (input: RequestInfo | URL) => {
    const path = new URL(String(input), "https://node.test").pathname.replace("/api/v1", "");
    const key = Object.keys(answers).find((k) => path === k);
    if (key === undefined) return new Response(JSON.stringify({ status: 404, title: "Not Found" }), { status: 404 });
    return new Response(JSON.stringify(answers[key]), { status: 200 });
  });
  vi.stubGlobal("fetch", fetcher);
  return fetcher;
}

export function renderApp(ui: ReactNode, path = "/") {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter initialEntries={[path]}>
        <SessionProvider>{ui}</SessionProvider>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

export const ADMIN = {
  user: "admin",
  role: "admin",
  via: "session",
  must_change_password: false,
  csrf_token: "csrf",
  permissions: ["self:manage", "node:read", "node:write", "audit:read", "users:manage"],
};

export const VIEWER = { ...ADMIN, user: "eve", role: "viewer", permissions: ["self:manage", "node:read", "network:read"] };
