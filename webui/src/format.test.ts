import { describe, expect, it } from "vitest";
import { bytes, duration, outcomeColor, stateColor } from "./format";

describe("format", () => {
  it("prints sizes in binary units", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(8 * 1024 ** 3)).toBe("8.0 GiB");
    expect(bytes(100 * 1024 ** 3)).toBe("100 GiB");
  });

  it("prints durations coarsely", () => {
    expect(duration(42)).toBe("42 s");
    expect(duration(3 * 3600 + 120)).toBe("3 h 2 min");
    expect(duration(2 * 86400 + 3600)).toBe("2 d 1 h");
  });

  it("colours states and outcomes", () => {
    expect(stateColor("alive")).toBe("green");
    expect(stateColor("suspect")).toBe("orange");
    expect(stateColor("dead")).toBe("red");
    expect(outcomeColor("denied")).toBe("red");
  });
});
