// How numbers, times and states read on screen (pure; unit-tested).

export function bytes(value: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${unit === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[unit]}`;
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A UNIX time (seconds) as the browser's local date and time, to the second. */
export function timestamp(seconds: number): string {
  const d = new Date(seconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export type StateColor = "green" | "orange" | "red" | "grey";

/** The colour of a member's gossip state. */
export function stateColor(state: string): StateColor {
  switch (state) {
    case "alive":
      return "green";
    case "suspect":
      return "orange";
    case "dead":
    case "left":
    case "revoked":
      return "red";
    default:
      return "grey";
  }
}

export function outcomeColor(outcome: string): StateColor {
  if (outcome === "success") return "green";
  if (outcome === "denied" || outcome === "failed") return "red";
  if (outcome === "throttled") return "orange";
  return "grey";
}
