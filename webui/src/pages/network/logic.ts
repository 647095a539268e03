// The pure logic of the networking pages, kept apart from React so Vitest covers it: where a
// problem's `$.path` points in the document being edited, a line diff of two documents (the
// plan's "what changes in the file"), the confirm window's countdown, and the join command.
import type { NetworkConfig } from "../../api/network-types";

export interface ParsedDocument {
  config?: NetworkConfig;
  error?: { message: string; line: number };
}

/** Line (1-based) of a character offset in a text. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++;
  return line;
}

/** The edited document as a configuration, or where it stops being JSON. */
export function parseDocument(text: string): ParsedDocument {
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { error: { message: "the configuration is a JSON object ({\"bridges\": [...], ...})", line: 1 } };
    }
    return { config: value as NetworkConfig };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const at = /position (\d+)/.exec(message);
    return { error: { message, line: at ? lineAt(text, Number(at[1])) : 1 } };
  }
}

/**
 * The line each JSON path starts on in a document (`$`, `$.bridges`, `$.bridges[0].name`):
 * a small scanner over the text as typed, so a problem names the line the user wrote.
 */
export function pathLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let i = 0;
  let line = 1;
  const skip = () => {
    while (i < text.length && /\s/.test(text[i]!)) {
      if (text[i] === "\n") line++;
      i++;
    }
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return text.slice(start + 1, i - 1);
    }
  };
  const value = (path: string, depth: number): void => {
    skip();
    if (depth > 64 || i >= text.length) return;
    lines.set(path, line);
    const c = text[i];
    if (c === "{") {
      i++;
      for (;;) {
        skip();
        if (text[i] === "}") return void i++;
        if (text[i] !== '"') return;
        const keyLine = line;
        const key = str();
        skip();
        if (text[i] !== ":") return;
        i++;
        const child = `${path}.${key}`;
        value(child, depth + 1);
        lines.set(child, keyLine);
        skip();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return void i++;
        else return;
      }
    } else if (c === "[") {
      i++;
      for (let n = 0; ; n++) {
        skip();
        if (text[i] === "]") return void i++;
        value(`${path}[${n}]`, depth + 1);
        skip();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return void i++;
        else return;
      }
    } else if (c === '"') {
      str();
    } else {
      while (i < text.length && !/[\s,\]}]/.test(text[i]!)) i++;
    }
  };
  value("$", 0);
  return lines;
}

/** The line a problem's path names, or of its nearest enclosing path that exists. */
export function lineOfPath(text: string, path: string): number | undefined {
  const lines = pathLines(text);
  for (let p = path; p; ) {
    const found = lines.get(p);
    if (found !== undefined) return found;
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    if (cut <= 0) break;
    p = p.slice(0, cut);
  }
  return lines.get("$");
}

export type DiffLine = { op: " " | "-" | "+"; text: string };

/** A line diff (longest common subsequence) of two texts. */
export function lineDiff(before: string, after: string): DiffLine[] {
  const a = before ? before.split("\n") : [];
  const b = after ? after.split("\n") : [];
  const rows = a.length + 1;
  const cols = b.length + 1;
  const lcs = new Uint32Array(rows * cols);
  for (let x = a.length - 1; x >= 0; x--)
    for (let y = b.length - 1; y >= 0; y--)
      lcs[x * cols + y] = a[x] === b[y] ? lcs[(x + 1) * cols + y + 1]! + 1 : Math.max(lcs[(x + 1) * cols + y]!, lcs[x * cols + y + 1]!);
  const out: DiffLine[] = [];
  let x = 0;
  let y = 0;
  while (x < a.length && y < b.length) {
    if (a[x] === b[y]) {
      out.push({ op: " ", text: a[x]! });
      x++;
      y++;
    } else if (lcs[(x + 1) * cols + y]! >= lcs[x * cols + y + 1]!) out.push({ op: "-", text: a[x++]! });
    else out.push({ op: "+", text: b[y++]! });
  }
  while (x < a.length) out.push({ op: "-", text: a[x++]! });
  while (y < b.length) out.push({ op: "+", text: b[y++]! });
  return out;
}

/** A configuration as the editor shows it: sections left empty are left out. */
export function documentOf(config: NetworkConfig | null | undefined): string {
  if (!config) return "{}";
  const shown: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (!(Array.isArray(value) && value.length === 0)) shown[key] = value;
  }
  return JSON.stringify(shown, null, 2);
}

/** Whole seconds left until a deadline (wall-clock seconds), never below 0. */
export function secondsLeft(deadline: number, nowMs: number): number {
  return Math.max(0, Math.ceil(deadline - nowMs / 1000));
}

export function confirmWithinError(value: string): string | undefined {
  const n = Number(value);
  if (value === "" || !Number.isFinite(n) || n < 10 || n > 3600) return "Seconds, 10 to 3600";
  return undefined;
}

/** The command that makes a fresh machine join with a token, and the kernel argument for the image. */
export function joinInstructions(token: string): { command: string; kernel: string } {
  return { command: `debvisor serve --join ${token}`, kernel: `debvisor.join=${token}` };
}

export interface OverlayForm {
  name: string;
  vni: string;
  bridge: string;
  mtu: string;
  underlay: string;
}

const OVERLAY_NAME = /^[a-z][a-z0-9-]{0,31}$/; // OVERLAY_NAME in appliance/network/types.py
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const CIDR = /^([0-9.]+\/\d{1,2}|[0-9a-fA-F:]+\/\d{1,3})$/;

function wholeIn(value: string, low: number, high: number): boolean {
  const n = Number(value);
  return /^\d+$/.test(value) && n >= low && n <= high;
}

/** The overlay form's problems as typed (empty fields are not yet problems). */
export function overlayErrors(form: OverlayForm): Partial<Record<keyof OverlayForm, string>> {
  const errors: Partial<Record<keyof OverlayForm, string>> = {};
  if (form.name && !OVERLAY_NAME.test(form.name)) errors.name = "Lowercase letters, digits and -, starting with a letter, at most 32";
  if (form.vni && !wholeIn(form.vni, 1, 16777215)) errors.vni = "A whole number, 1 to 16777215";
  if (form.bridge && !IFNAME.test(form.bridge)) errors.bridge = "An interface name: at most 15 letters, digits, _ . -";
  if (form.mtu && !wholeIn(form.mtu, 1280, 65535)) errors.mtu = "A whole number, 1280 to 65535";
  if (form.underlay && !CIDR.test(form.underlay)) errors.underlay = "A network such as 10.0.0.0/24";
  return errors;
}

const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/; // validate_node_name in pxe/addresses.py

/** A node name as approving a machine takes it (empty: the node picks one). */
export function nodeNameError(name: string): string | undefined {
  if (!name || NODE_NAME.test(name)) return undefined;
  return "1 to 63 lowercase letters, digits and -, not starting or ending with -";
}

const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/; // LABEL_KEY in appliance/node/types.py
export const MAX_LABELS = 64;

export interface ParsedLabels {
  labels: Record<string, string>;
  errors: { line: number; message: string }[];
}

/** Labels written one `key=value` a line (blank lines skipped), as the node checks them. */
export function parseLabels(text: string): ParsedLabels {
  const labels: Record<string, string> = {};
  const errors: { line: number; message: string }[] = [];
  text.split("\n").forEach((raw, n) => {
    const line = raw.trim();
    if (!line) return;
    const eq = line.indexOf("=");
    const key = eq < 0 ? line : line.slice(0, eq).trim();
    const value = eq < 0 ? "" : line.slice(eq + 1).trim();
    if (eq < 0) errors.push({ line: n + 1, message: "write key=value" });
    else if (!LABEL_KEY.test(key)) errors.push({ line: n + 1, message: `${key}: lowercase letters, digits and . _ / -, at most 63` });
    else if (value.length > 256) errors.push({ line: n + 1, message: `${key}: the value is longer than 256 characters` });
    else if (key in labels) errors.push({ line: n + 1, message: `${key} is given twice` });
    else labels[key] = value;
  });
  if (Object.keys(labels).length > MAX_LABELS) errors.push({ line: 1, message: `at most ${MAX_LABELS} labels` });
  return { labels, errors };
}

export function labelsText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
}
