import { describe, expect, it } from "vitest";
import { isCurrent, NAV } from "./Shell";

describe("navigation", () => {
  it("marks the entry of the current page", () => {
    expect(isCurrent("/", "/")).toBe(true);
    expect(isCurrent("/", "/nodes")).toBe(false);
    expect(isCurrent("/nodes", "/nodes/n2")).toBe(true);
    expect(isCurrent("/nodes", "/nodesx")).toBe(false);
  });

  it("says which permission shows each entry", () => {
    expect(NAV.find((e) => e.path === "/users")?.permission).toBe("users:manage");
    expect(NAV.find((e) => e.path === "/audit")?.permission).toBe("audit:read");
  });
});
