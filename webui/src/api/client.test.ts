import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiProblem, onUnauthorized, request, retryAfterMs, setCsrfToken, url } from "./client";

function answer(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": status >= 400 ? "application/problem+json" : "application/json", ...headers },
  });
}

afterEach(() => {
  setCsrfToken(null);
  onUnauthorized(null);
});

describe("request", () => {
  it("sends the CSRF token on unsafe requests only", async () => {
    setCsrfToken("tok");
    const fetcher = vi.fn(async () => answer(200, { ok: true }));
    await request("GET", "/cluster", { fetcher });
    await request("POST", "/tokens", { fetcher, body: { name: "x" } });
    const [getCall, postCall] = fetcher.mock.calls as unknown as [[string, RequestInit], [string, RequestInit]];
    expect((getCall[1].headers as Record<string, string>)["X-CSRF-Token"]).toBeUndefined();
    expect((postCall[1].headers as Record<string, string>)["X-CSRF-Token"]).toBe("tok");
    expect(postCall[1].body).toBe('{"name":"x"}');
    expect(postCall[1].credentials).toBe("same-origin");
  });

  it("waits out a 429 for as long as Retry-After says, then tries again", async () => {
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce(answer(429, { status: 429, title: "Too Many Requests" }, { "Retry-After": "2" }))
      .mockResolvedValueOnce(answer(200, { members: [] }));
    const sleep = vi.fn(async () => undefined);
    const body = await request<{ members: unknown[] }>("GET", "/cluster", { fetcher, sleep });
    expect(body.members).toEqual([]);
    expect(sleep).toHaveBeenCalledWith(2000);
    expect(fetcher).toHaveBeenCalledTimes(2);
  });

  it("reports a 401 as an ended session, except where it is the answer", async () => {
    const ended = vi.fn();
    onUnauthorized(ended);
    const fetcher = vi.fn(async () => answer(401, { status: 401, title: "Unauthorized", detail: "log in" }));
    await expect(request("GET", "/cluster", { fetcher })).rejects.toBeInstanceOf(ApiProblem);
    expect(ended).toHaveBeenCalledTimes(1);
    await expect(request("POST", "/auth/login", { fetcher, expectUnauthorized: true })).rejects.toThrow("log in");
    expect(ended).toHaveBeenCalledTimes(1);
  });

  it("turns problem+json into an ApiProblem that names the field", async () => {
    const fetcher = vi.fn(async () =>
      answer(422, {
        status: 422,
        title: "Unprocessable",
        detail: "invalid body",
        errors: [{ path: "$.new_password", message: "too short" }],
      }),
    );
    const error = (await request("POST", "/users/admin/password", { fetcher }).catch((e: unknown) => e)) as ApiProblem;
    expect(error.status).toBe(422);
    expect(error.fieldError("new_password")).toBe("too short");
    expect(error.fieldError("current_password")).toBeUndefined();
  });
});

describe("helpers", () => {
  it("builds API URLs without empty parameters", () => {
    expect(url("/audit", { user: "ops", action: "", after: 0, limit: undefined })).toBe("/api/v1/audit?user=ops&after=0");
  });

  it("bounds Retry-After", () => {
    expect(retryAfterMs("3")).toBe(3000);
    expect(retryAfterMs("900")).toBe(30000);
    expect(retryAfterMs(null)).toBe(1000);
  });
});
