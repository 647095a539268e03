import { describe, expect, it } from "vitest";
import { confirmWithinError, documentOf, labelsText, nodeNameError, parseLabels, overlayErrors, joinInstructions, lineDiff, lineOfPath, parseDocument, pathLines, secondsLeft } from "./logic";

const DOC = `{
  "bridges": [
    {
      "name": "dvbr0",
      "addresses": ["10.0.0.1/24", "bad"]
    }
  ]
}`;

describe("paths to lines", () => {
  it("finds each path on the line it is written", () => {
    const lines = pathLines(DOC);
    expect(lines.get("$")).toBe(1);
    expect(lines.get("$.bridges")).toBe(2);
    expect(lines.get("$.bridges[0]")).toBe(3);
    expect(lines.get("$.bridges[0].name")).toBe(4);
    expect(lines.get("$.bridges[0].addresses[1]")).toBe(5);
  });
  it("falls back to the nearest enclosing path", () => {
    expect(lineOfPath(DOC, "$.bridges[0].mtu")).toBe(3);
    expect(lineOfPath(DOC, "$.vlans[2].id")).toBe(1);
  });
  it("survives a broken document", () => {
    expect(lineOfPath('{"bridges": [{"name": ', "$.bridges[0].name")).toBe(1);
  });
});

describe("parsing the document", () => {
  it("accepts an object", () => {
    expect(parseDocument('{"bridges": []}').config).toEqual({ bridges: [] });
  });
  it("refuses what is not an object", () => {
    expect(parseDocument("[]").error?.message).toMatch(/JSON object/);
  });
  it("says on which line JSON breaks", () => {
    const parsed = parseDocument('{\n  "bridges": [\n  }');
    expect(parsed.error).toBeDefined();
    expect(parsed.error!.line).toBeGreaterThanOrEqual(1);
  });
});

describe("line diff", () => {
  it("marks added and removed lines", () => {
    expect(lineDiff("a\nb\nc", "a\nx\nc")).toEqual([
      { op: " ", text: "a" },
      { op: "-", text: "b" },
      { op: "+", text: "x" },
      { op: " ", text: "c" },
    ]);
  });
  it("diffs from nothing", () => {
    expect(lineDiff("", "a")).toEqual([{ op: "+", text: "a" }]);
  });
});

describe("the rest", () => {
  it("leaves empty sections out of the document", () => {
    expect(documentOf({ bonds: [], bridges: [{ name: "b" } as never], nics: [], vlans: [], vxlans: [] })).toBe(
      '{\n  "bridges": [\n    {\n      "name": "b"\n    }\n  ]\n}',
    );
    expect(documentOf(null)).toBe("{}");
  });
  it("counts down to the deadline, never below zero", () => {
    expect(secondsLeft(100, 90_500)).toBe(10);
    expect(secondsLeft(100, 200_000)).toBe(0);
  });
  it("checks the confirm window like the API (10 to 3600 s)", () => {
    expect(confirmWithinError("9")).toBeDefined();
    expect(confirmWithinError("120")).toBeUndefined();
    expect(confirmWithinError("x")).toBeDefined();
  });
  it("writes the join command and kernel argument", () => {
    expect(joinInstructions("dvj_abc")).toEqual({ command: "debvisor serve --join dvj_abc", kernel: "debvisor.join=dvj_abc" });
  });
});

describe("overlay form", () => {
  it("accepts a good overlay and leaves empty fields alone", () => {
    expect(overlayErrors({ name: "tenant-a", vni: "100", bridge: "ovl100", mtu: "1450", underlay: "10.0.0.0/24" })).toEqual({});
    expect(overlayErrors({ name: "", vni: "", bridge: "", mtu: "", underlay: "" })).toEqual({});
  });
  it("names each bad field", () => {
    const errors = overlayErrors({ name: "Bad", vni: "0", bridge: "a-very-long-bridge-name", mtu: "100", underlay: "x" });
    expect(Object.keys(errors).sort()).toEqual(["bridge", "mtu", "name", "underlay", "vni"]);
  });
});

describe("node names", () => {
  it("takes what the node takes", () => {
    expect(nodeNameError("")).toBeUndefined();
    expect(nodeNameError("rack1-n2")).toBeUndefined();
    expect(nodeNameError("-x")).toBeDefined();
    expect(nodeNameError("Upper")).toBeDefined();
  });
});

describe("labels", () => {
  it("reads key=value lines and writes them back", () => {
    const parsed = parseLabels("rack=r1\n\nzone = a=b\n");
    expect(parsed).toEqual({ labels: { rack: "r1", zone: "a=b" }, errors: [] });
    expect(labelsText(parsed.labels)).toBe("rack=r1\nzone=a=b");
  });
  it("names the line of each problem", () => {
    expect(parseLabels("Rack=1\nnovalue\nrack=1\nrack=2").errors.map((e) => e.line)).toEqual([1, 2, 4]);
  });
});
