// The UI's one events WebSocket (/api/v1/events, docs/events.md): every page's cached queries
// are refreshed from what events name, never by polling, so however many views are open the
// UI stays far inside the per-user rate limit. The socket reconnects with back-off and
// resumes from the last id seen from each node (`since`); a `gap` (events were lost) reloads
// everything shown.
import type { QueryClient, QueryKey } from "@tanstack/react-query";

export interface EventMessage {
  type: string;
  id?: number;
  node?: string;
  [field: string]: unknown;
}

export type StreamStatus = "connecting" | "live" | "reconnecting" | "stopped";

/** The cached queries an event makes stale (query keys are prefixes: ["node", "n2"] covers
 * ["node", "n2", "facts"]). Control messages and unknown types name nothing. */
export function staleKeys(event: EventMessage): QueryKey[] {
  switch (event.type) {
    case "membership":
      return [["cluster"], ["nodes"]];
    case "facts": {
      const owner = typeof event.owner === "string" ? event.owner : event.node;
      return [["cluster"], ["nodes"], ["node", owner]];
    }
    case "audit":
      return [["audit"]];
    case "config": {
      const kind = String(event.kind ?? "");
      if (kind.startsWith("user")) return [["users"]];
      if (kind.startsWith("token")) return [["tokens"]];
      if (kind.startsWith("network") || kind.startsWith("overlay")) return [["networks"]];
      return [["config"]];
    }
    case "network":
      return [["network", event.node]];
    case "pxe":
      return [["pxe", event.node]];
    default:
      return [];
  }
}

/** Split one text frame into its events (newline-separated JSON objects). */
export function parseFrame(frame: string): EventMessage[] {
  const events: EventMessage[] = [];
  for (const line of frame.split("\n")) {
    if (!line.trim()) continue;
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed && typeof parsed === "object" && typeof (parsed as EventMessage).type === "string") {
        events.push(parsed as EventMessage);
      }
    } catch {
      // a broken line is skipped; the next reload shows the truth
    }
  }
  return events;
}

export interface StreamOptions {
  /** Where to connect (default: this page's host). */
  base?: string;
  onEvents: (events: EventMessage[]) => void;
  onStatus?: (status: StreamStatus) => void;
  /** The node closed the socket for credentials (4401): the session ended. */
  onUnauthorized?: () => void;
  /** Events were lost (a `gap`, or a reconnect after a long break): reload everything. */
  onGap?: () => void;
  /** A connection closed before it opened (the upgrade was refused, or the node is down):
   * the owner may check whether the session is still valid. */
  onRefused?: () => void;
  socket?: (url: string) => WebSocket;
  schedule?: (fn: () => void, ms: number) => unknown;
  cancel?: (handle: unknown) => void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;

export class EventStream {
  private readonly last = new Map<string, number>();
  private socket: WebSocket | null = null;
  private timer: unknown = null;
  private backoff = MIN_BACKOFF_MS;
  private stopped = true;
  private everOpened = false;

  constructor(private readonly options: StreamOptions) {}

  /** `since` for a reconnect: the last id seen from each node. */
  since(): string {
    return [...this.last.entries()].map(([node, id]) => `${node}:${id}`).join(",");
  }

  url(): string {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws"; // ws: only for the dev server
    const base = this.options.base ?? `${scheme}://${window.location.host}`;
    const since = this.since();
    return `${base}/api/v1/events${since ? `?since=${encodeURIComponent(since)}` : ""}`;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) (this.options.cancel ?? clearTimeout)(this.timer as ReturnType<typeof setTimeout>);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000);
    this.options.onStatus?.("stopped");
  }

  private connect(): void {
    this.options.onStatus?.(this.everOpened ? "reconnecting" : "connecting");
    const make = this.options.socket ?? ((u: string) => new WebSocket(u));
    const socket = make(this.url());
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      this.backoff = MIN_BACKOFF_MS;
      this.everOpened = true;
      this.options.onStatus?.("live");
    };
    socket.onmessage = (message: MessageEvent) => {
      if (this.socket !== socket || typeof message.data !== "string") return;
      this.receive(parseFrame(message.data));
    };
    socket.onclose = (close: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (close.code === 4401) {
        this.options.onUnauthorized?.();
      }
      if (close.code === 4400) this.last.clear(); // a `since` the node refused: start afresh
      if (!opened) this.options.onRefused?.();
      this.retry();
    };
  }

  private retry(): void {
    this.options.onStatus?.("reconnecting");
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = (this.options.schedule ?? setTimeout)(() => {
      this.timer = null;
      if (!this.stopped) this.connect();
    }, delay);
  }

  private receive(events: EventMessage[]): void {
    const real: EventMessage[] = [];
    for (const event of events) {
      if (event.type === "gap") {
        this.options.onGap?.();
        continue;
      }
      if (event.type === "heartbeat" || event.type === "lagged") continue;
      if (typeof event.node === "string" && typeof event.id === "number") {
        const seen = this.last.get(event.node) ?? 0;
        if (event.id <= seen) continue; // replayed after a resume: already handled
        this.last.set(event.node, event.id);
      }
      real.push(event);
    }
    if (real.length) this.options.onEvents(real);
  }
}

/** Mark what a batch of events names as stale; active queries refetch, once per key. */
export function invalidate(client: QueryClient, events: EventMessage[]): void {
  const seen = new Set<string>();
  for (const event of events) {
    for (const key of staleKeys(event)) {
      const id = JSON.stringify(key);
      if (seen.has(id)) continue;
      seen.add(id);
      void client.invalidateQueries({ queryKey: key });
    }
  }
}
