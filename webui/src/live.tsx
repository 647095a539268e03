// Keeps the one events socket open while someone is logged in, feeds what it names to
// TanStack Query (invalidations batched per animation frame), and tells the masthead whether
// the view is live.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "./api/client";
import { EventStream, invalidate, type EventMessage, type StreamStatus } from "./events";
import { useSession } from "./session";
import { applyLive } from "./pages/node/live";

const StatusContext = createContext<StreamStatus>("stopped");

export function useStreamStatus(): StreamStatus {
  return useContext(StatusContext);
}

export function LiveEvents({ children }: { children: ReactNode }) {
  const queries = useQueryClient();
  const session = useSession();
  const [status, setStatus] = useState<StreamStatus>("stopped");
  const loggedIn = session.state.status === "authenticated";
  const { expired } = session;

  useEffect(() => {
    if (!loggedIn) return undefined;
    let pending: EventMessage[] = [];
    let frame: number | null = null;
    const flush = () => {
      frame = null;
      const batch = pending;
      pending = [];
      applyLive(queries, batch); // history samples and unit changes patch what is cached
      invalidate(queries, batch);
    };
    const stream = new EventStream({
      onEvents: (events) => {
        pending.push(...events);
        if (frame === null) frame = requestAnimationFrame(flush);
      },
      onStatus: setStatus,
      onUnauthorized: expired,
      onGap: () => void queries.invalidateQueries(),
      // A refused upgrade is how an ended session looks to a socket: ask (a 401 logs out).
      onRefused: () => void api.get("/auth/whoami").catch(() => undefined),
    });
    stream.start();
    return () => {
      stream.stop();
      if (frame !== null) cancelAnimationFrame(frame);
    };
  }, [loggedIn, queries, expired]);

  return <StatusContext.Provider value={status}>{children}</StatusContext.Provider>;
}
