// The one way the UI calls the API: same-origin fetch with the session cookie, the CSRF token
// on unsafe requests (kept in memory only, never in localStorage), problem+json turned into
// an ApiProblem, a 401 reported once (the session ended: back to the login page), and a 429
// waited out for as long as Retry-After says before trying again.
import type { FieldError, Problem } from "./types";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const MAX_RETRIES_429 = 3;
const MAX_RETRY_AFTER_SECONDS = 30;

export class ApiProblem extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly errors: FieldError[];

  constructor(status: number, problem: Partial<Problem> | null) {
    const detail = problem?.detail ?? problem?.title ?? `HTTP ${status}`;
    super(detail);
    this.name = "ApiProblem";
    this.status = status;
    this.title = problem?.title ?? `HTTP ${status}`;
    this.detail = detail;
    this.errors = problem?.errors ?? [];
  }

  /** The message for the form field a problem's `errors` name by JSON path (`$.new_password`). */
  fieldError(field: string): string | undefined {
    return this.errors.find((e) => e.path === `$.${field}` || e.path === field)?.message;
  }
}

let csrfToken: string | null = null;
let unauthorized: (() => void) | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export function onUnauthorized(handler: (() => void) | null): void {
  unauthorized = handler;
}

export type Sleep = (ms: number) => Promise<void>;
const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  signal?: AbortSignal;
  /** A 401 here is an answer, not an ended session (the login form itself). */
  expectUnauthorized?: boolean;
  fetcher?: typeof fetch;
  sleep?: Sleep;
}

export function url(path: string, query?: RequestOptions["query"]): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return `/api/v1${path}${qs ? `?${qs}` : ""}`;
}

export function retryAfterMs(header: string | null): number {
  const seconds = header === null || header.trim() === "" ? NaN : Number(header);
  if (!Number.isFinite(seconds) || seconds < 0) return 1000;
  return Math.min(seconds, MAX_RETRY_AFTER_SECONDS) * 1000;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const fetcher = options.fetcher ?? fetch;
  const sleep = options.sleep ?? realSleep;
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  for (let attempt = 0; ; attempt++) {
    const response = await fetcher(url(path, options.query), {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "same-origin",
      signal: options.signal,
    });
    if (response.status === 429 && attempt < MAX_RETRIES_429) {
      await sleep(retryAfterMs(response.headers.get("Retry-After")));
      continue;
    }
    if (response.ok) {
      if (response.status === 204) return undefined as T;
      const text = await response.text();
      return (text ? JSON.parse(text) : undefined) as T;
    }
    let problem: Partial<Problem> | null = null;
    try {
      problem = (await response.json()) as Partial<Problem>;
    } catch {
      problem = null;
    }
    const error = new ApiProblem(response.status, problem);
    if (response.status === 401 && !options.expectUnauthorized) unauthorized?.();
    throw error;
  }
}

export const api = {
  get: <T>(path: string, options?: RequestOptions) => request<T>("GET", path, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("POST", path, { ...options, body }),
  patch: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>("PATCH", path, { ...options, body }),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("PUT", path, { ...options, body }),
  delete: <T>(path: string, options?: RequestOptions) => request<T>("DELETE", path, options),
};
