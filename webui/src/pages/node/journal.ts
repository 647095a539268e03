// The journal view's rules (pure, unit-tested): how an entry reads, how followed entries join
// what is shown (deduplicated by cursor, the newest kept), and the follow socket's address.
import type { JournalEntry } from "../../api/types";

export const MAX_LINES = 1000;

export function journalLine(e: JournalEntry): string {
  const d = new Date(e.time * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const when = `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const who = `${e.identifier ?? e.unit ?? "?"}${e.pid ? `[${e.pid}]` : ""}`;
  return `${when} ${who}: ${e.message}${e.truncated ? " …" : ""}`;
}

export function mergeEntries(shown: JournalEntry[], incoming: JournalEntry[], max = MAX_LINES): JournalEntry[] {
  const seen = new Set(shown.map((e) => e.cursor));
  const fresh = incoming.filter((e) => !seen.has(e.cursor));
  if (!fresh.length) return shown;
  const all = [...shown, ...fresh];
  return all.length > max ? all.slice(all.length - max) : all;
}

/** An entry from one follow frame, or null for a heartbeat or anything else. */
export function entryOf(frame: string): JournalEntry | null {
  try {
    const v: unknown = JSON.parse(frame);
    if (v && typeof v === "object" && typeof (v as JournalEntry).cursor === "string" && !("type" in v)) return v as JournalEntry;
  } catch {
    // not an entry
  }
  return null;
}

export function followUrl(location: { protocol: string; host: string }, name: string, unit: string, after?: string): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const q = new URLSearchParams({ unit });
  if (after) q.set("after", after);
  else q.set("limit", "50");
  return `${scheme}://${location.host}/api/v1/nodes/${encodeURIComponent(name)}/journal/follow?${q.toString()}`;
}

export function priorityClass(p: number | null | undefined): string {
  if (p === null || p === undefined) return "";
  if (p <= 3) return "dv-journal-err";
  if (p === 4) return "dv-journal-warn";
  return "";
}
