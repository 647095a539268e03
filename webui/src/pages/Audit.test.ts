import { describe, expect, it } from "vitest";
import { auditQuery, PAGE_SIZE, toInstant } from "./Audit";

describe("the audit page's query", () => {
  it("takes the filters and the cursor from the URL", () => {
    const q = auditQuery(new URLSearchParams("user=ops&action=user.*&after=120"));
    expect(q).toMatchObject({ user: "ops", action: "user.*", after: 120, limit: PAGE_SIZE });
    expect(q.since).toBeUndefined();
    expect(auditQuery(new URLSearchParams("after=oops")).after).toBe(0);
  });

  it("sends local date-times as instants", () => {
    const instant = toInstant("2026-12-08T10:30");
    expect(instant).toBe(new Date("2026-12-08T10:30").toISOString());
    expect(toInstant("")).toBeUndefined();
    expect(toInstant("not a date")).toBeUndefined();
  });
});
