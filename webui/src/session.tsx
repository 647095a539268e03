// Who is logged in, and the moves between states: anonymous → (login) → authenticated, or
// → must change the initial password → authenticated; any 401 from the API (the session
// ended: idle, lifetime, logout elsewhere, password changed) → anonymous with `expired`, the
// page's URL untouched, so that logging in again returns to where the user was.
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api, onUnauthorized, setCsrfToken } from "./api/client";
import type { PasswordChanged, SessionCreated, Whoami } from "./api/types";

export type SessionState =
  | { status: "loading" }
  | { status: "anonymous"; expired: boolean }
  | { status: "must-change"; user: string; current: string }
  | { status: "authenticated"; me: Whoami };

export interface Session {
  state: SessionState;
  login(username: string, password: string): Promise<void>;
  changePassword(user: string, current: string, next: string): Promise<void>;
  logout(): Promise<void>;
  expired(): void;
}

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}

export function useMe(): Whoami {
  const { state } = useSession();
  if (state.status !== "authenticated") throw new Error("useMe without a session");
  return state.me;
}

export function can(me: Whoami, permission: string): boolean {
  return me.permissions.includes(permission);
}

async function whoami(): Promise<Whoami | null> {
  try {
    return await api.get<Whoami>("/auth/whoami", { expectUnauthorized: true });
  } catch {
    return null;
  }
}

let early: Promise<Whoami | null> | null = null;

/** The page's first session check, started as early as possible: main.tsx calls it before
 * React renders, so that it runs while the app mounts and the page's first queries can start
 * the moment it answers (not one render later). The provider takes it when it mounts; a later
 * mount (a test's next render) asks anew. */
export function checkSession(): Promise<Whoami | null> {
  early ??= whoami();
  return early;
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const queries = useQueryClient();
  const [state, setState] = useState<SessionState>({ status: "loading" });

  const adopt = useCallback((me: Whoami | null, expired = false) => {
    setCsrfToken(me?.csrf_token ?? null);
    setState(me ? { status: "authenticated", me } : { status: "anonymous", expired });
  }, []);

  useEffect(() => {
    const first = checkSession();
    early = null;
    void first.then((me) => adopt(me));
  }, [adopt]);

  const expired = useCallback(() => {
    setCsrfToken(null);
    queries.clear();
    setState((s) => (s.status === "authenticated" ? { status: "anonymous", expired: true } : s));
  }, [queries]);

  useEffect(() => {
    onUnauthorized(expired);
    return () => onUnauthorized(null);
  }, [expired]);

  const session = useMemo<Session>(
    () => ({
      state,
      expired,
      async login(username, password) {
        const created = await api.post<SessionCreated>("/auth/login", { username, password }, { expectUnauthorized: true });
        setCsrfToken(created.csrf_token);
        if (created.must_change_password) {
          setState({ status: "must-change", user: created.user, current: password });
          return;
        }
        adopt(await whoami());
      },
      async changePassword(user, current, next) {
        const changed = await api.post<PasswordChanged>(
          `/users/${encodeURIComponent(user)}/password`,
          { current_password: current, new_password: next },
          { expectUnauthorized: true },
        );
        // Changing the password ended every session; the answer carries the new one.
        setCsrfToken(changed.session?.csrf_token ?? null);
        adopt(await whoami());
      },
      async logout() {
        try {
          await api.post("/auth/logout");
        } finally {
          queries.clear();
          adopt(null);
        }
      },
    }),
    [state, adopt, expired, queries],
  );

  return <SessionContext.Provider value={session}>{children}</SessionContext.Provider>;
}
