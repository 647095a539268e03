// A node's resource history as the charts hold it (docs/history.md): the API's answer turned
// into one column per sample field, then kept current from the `history` events (one 5 s
// sample each) instead of asking the node again. Pure: unit-tested in history.test.ts.
import type { History } from "../../api/types";

export type Range = "1h" | "1d" | "1w";
export const RANGES: Range[] = ["1h", "1d", "1w"];

export const COLUMNS = ["cpu", "mem_used", "mem_available", "net_rx", "net_tx", "disk_read", "disk_write"] as const;
export type Column = (typeof COLUMNS)[number];

/** Buckets per range (what the node keeps), and the sampling step of the events. */
export const CAPACITY: Record<Range, number> = { "1h": 720, "1d": 1440, "1w": 1008 };
export const SAMPLE_SECONDS = 5;

export interface Frame {
  range: Range;
  step: number;
  times: number[];
  cols: Partial<Record<Column, (number | null)[]>>;
  /** Samples already averaged into the newest bucket (1d and 1w buckets hold several). */
  lastCount: number;
}

/** The API's answer as a frame (the averages; a missing series is simply absent). */
export function fromHistory(history: History): Frame {
  const range = (RANGES as string[]).includes(history.range) ? (history.range as Range) : "1h";
  const cols: Frame["cols"] = {};
  for (const series of history.series) {
    if ((COLUMNS as readonly string[]).includes(series.name)) cols[series.name as Column] = [...series.avg];
  }
  const last = history.times[history.times.length - 1];
  // The bucket in progress already holds the samples since its start (one per 5 s).
  const now = Date.now() / 1000;
  const lastCount =
    last === undefined ? 0 : Math.max(1, Math.min(history.step / SAMPLE_SECONDS, Math.floor((now - last) / SAMPLE_SECONDS)));
  return { range, step: history.step, times: [...history.times], cols, lastCount };
}

export type Sample = { time: number } & Partial<Record<Column, number | null>>;

/** A `history` event's sample, or null when it is not one. */
export function sampleOf(event: Record<string, unknown>): Sample | null {
  if (event.type !== "history" || typeof event.time !== "number") return null;
  const sample: Sample = { time: event.time };
  for (const c of COLUMNS) {
    const v = event[c];
    sample[c] = typeof v === "number" ? v : null;
  }
  return sample;
}

/** The frame with one more sample: a later bucket is appended (buckets nobody sampled in
 * between stay null: a gap, never a line across it) and the oldest dropped, so the chart keeps
 * its span; a sample of the newest bucket is averaged into it, as the node does; an older one
 * is already in the answer and is ignored. */
export function appendSample(frame: Frame, sample: Sample): Frame {
  const bucket = Math.floor(sample.time / frame.step) * frame.step;
  const n = frame.times.length;
  const last = n ? frame.times[n - 1] : undefined;
  if (last !== undefined && bucket < last) return frame;
  const cols: Frame["cols"] = {};
  if (last !== undefined && bucket === last) {
    const k = frame.lastCount;
    for (const [name, values] of Object.entries(frame.cols) as [Column, (number | null)[]][]) {
      const v = sample[name];
      const old = values[n - 1];
      const next = values.slice();
      if (typeof v === "number") next[n - 1] = old === null || old === undefined || k <= 0 ? v : (old * k + v) / (k + 1);
      cols[name] = next;
    }
    return { ...frame, cols, lastCount: k + 1 };
  }
  const missing = last === undefined ? 0 : Math.min(CAPACITY[frame.range], (bucket - last) / frame.step - 1);
  const times = frame.times.slice();
  for (let i = missing; i >= 1; i--) times.push(bucket - i * frame.step);
  times.push(bucket);
  const drop = Math.max(0, times.length - Math.max(CAPACITY[frame.range], n));
  for (const [name, values] of Object.entries(frame.cols) as [Column, (number | null)[]][]) {
    const next = values.slice();
    for (let i = 0; i < missing; i++) next.push(null);
    const v = sample[name];
    next.push(typeof v === "number" ? v : null);
    cols[name] = drop ? next.slice(drop) : next;
  }
  return { ...frame, times: drop ? times.slice(drop) : times, cols, lastCount: 1 };
}

export interface ChartSpec {
  id: string;
  title: string;
  columns: Column[];
  labels: string[];
  kind: "percent" | "bytes" | "rate";
}

export const CHARTS: ChartSpec[] = [
  { id: "cpu", title: "CPU", columns: ["cpu"], labels: ["CPU"], kind: "percent" },
  { id: "memory", title: "Memory", columns: ["mem_used", "mem_available"], labels: ["Used", "Available"], kind: "bytes" },
  { id: "net", title: "Network", columns: ["net_rx", "net_tx"], labels: ["Received", "Sent"], kind: "rate" },
  { id: "disk", title: "Disk I/O", columns: ["disk_read", "disk_write"], labels: ["Read", "Written"], kind: "rate" },
];

/** uPlot's aligned data for one chart: times first, then one array per column. */
export function chartData(frame: Frame, columns: Column[]): (number | null)[][] {
  return [frame.times, ...columns.map((c) => frame.cols[c] ?? frame.times.map(() => null))];
}

/** The newest value of a column that is not null, for the chart's caption. */
export function latest(frame: Frame, column: Column): number | null {
  const values = frame.cols[column] ?? [];
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}

/** Memory in use as a percentage of what the node has (used + available), per bucket. */
export function memoryPercent(frame: Frame): (number | null)[] {
  const used = frame.cols.mem_used ?? [];
  const available = frame.cols.mem_available ?? [];
  return frame.times.map((_, i) => {
    const u = used[i];
    const a = available[i];
    if (u === null || u === undefined || a === null || a === undefined || u + a <= 0) return null;
    return Math.round((u / (u + a)) * 1000) / 10;
  });
}
