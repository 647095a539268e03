import { describe, expect, it } from "vitest";
import { QueryClient } from "@tanstack/react-query";
import { appendSample, chartData, fromHistory, latest, memoryPercent, sampleOf, type Frame } from "./history";
import { applyLive } from "./live";
import type { History } from "../../api/types";

const T0 = 1_765_152_000;

function hour(values: (number | null)[]): History {
  return {
    node: "n1",
    range: "1h",
    step: 5,
    times: values.map((_, i) => T0 + i * 5),
    series: [
      { name: "cpu", unit: "percent", avg: values },
      { name: "mem_used", unit: "bytes", avg: values.map((v) => (v === null ? null : v * 1000)) },
    ],
  };
}

describe("fromHistory", () => {
  it("keeps the answer's columns and times", () => {
    const f = fromHistory(hour([1, null, 3]));
    expect(f.step).toBe(5);
    expect(f.times).toEqual([T0, T0 + 5, T0 + 10]);
    expect(f.cols.cpu).toEqual([1, null, 3]);
    expect(f.cols.mem_used).toEqual([1000, null, 3000]);
    expect(f.cols.net_rx).toBeUndefined();
    expect(chartData(f, ["cpu", "net_rx"])).toEqual([f.times, [1, null, 3], [null, null, null]]);
    expect(latest(f, "cpu")).toBe(3);
  });
});

describe("appendSample", () => {
  const base = fromHistory(hour([1, 2, 3]));

  it("appends the next bucket and drops the oldest once the span is full", () => {
    const full: Frame = { ...base, times: Array.from({ length: 720 }, (_, i) => T0 + i * 5), cols: { cpu: Array(720).fill(1) } };
    const next = appendSample(full, { time: T0 + 720 * 5, cpu: 50 });
    expect(next.times).toHaveLength(720);
    expect(next.times[0]).toBe(T0 + 5);
    expect(next.times[719]).toBe(T0 + 720 * 5);
    expect(next.cols.cpu?.[719]).toBe(50);
    expect(full.cols.cpu?.[719]).toBe(1); // the old frame is untouched
  });

  it("grows a range that is not full yet", () => {
    const next = appendSample(base, { time: T0 + 15, cpu: 4, mem_used: 4000 });
    expect(next.times).toEqual([T0, T0 + 5, T0 + 10, T0 + 15]);
    expect(next.cols.cpu).toEqual([1, 2, 3, 4]);
    expect(next.cols.mem_used).toEqual([1000, 2000, 3000, 4000]);
  });

  it("leaves buckets nobody sampled as gaps", () => {
    const next = appendSample(base, { time: T0 + 25, cpu: 9 });
    expect(next.times).toEqual([T0, T0 + 5, T0 + 10, T0 + 15, T0 + 20, T0 + 25]);
    expect(next.cols.cpu).toEqual([1, 2, 3, null, null, 9]);
    expect(next.cols.mem_used).toEqual([1000, 2000, 3000, null, null, null]);
  });

  it("ignores a sample the answer already holds", () => {
    expect(appendSample(base, { time: T0 + 5, cpu: 99 })).toBe(base);
  });

  it("averages samples into a day's minute as the node does", () => {
    const day: Frame = { range: "1d", step: 60, times: [T0], cols: { cpu: [10] }, lastCount: 1 };
    const two = appendSample(day, { time: T0 + 5, cpu: 20 });
    expect(two.times).toEqual([T0]);
    expect(two.cols.cpu).toEqual([15]);
    const three = appendSample(two, { time: T0 + 10, cpu: 30, mem_used: null });
    expect(three.cols.cpu).toEqual([20]);
    const nextMinute = appendSample(three, { time: T0 + 60, cpu: 5 });
    expect(nextMinute.times).toEqual([T0, T0 + 60]);
    expect(nextMinute.cols.cpu).toEqual([20, 5]);
    expect(nextMinute.lastCount).toBe(1);
  });

  it("keeps a value when the sample has none for it", () => {
    const next = appendSample(base, { time: T0 + 10, cpu: null });
    expect(next.cols.cpu).toEqual([1, 2, 3]);
  });
});

describe("live history", () => {
  it("reads a history event", () => {
    expect(sampleOf({ type: "history", time: T0, cpu: 5, net_rx: null })).toMatchObject({ time: T0, cpu: 5, net_rx: null });
    expect(sampleOf({ type: "unit", time: T0 })).toBeNull();
  });

  it("appends a node's sample to every cached range of that node only", () => {
    const client = new QueryClient();
    client.setQueryData(["history", "n1", "1h", "all"], fromHistory(hour([1, 2, 3])));
    client.setQueryData(["history", "n2", "1h", "all"], fromHistory({ ...hour([7]), node: "n2" }));
    applyLive(client, [{ type: "history", node: "n1", id: 9, time: T0 + 15, cpu: 4 }]);
    expect(client.getQueryData<Frame>(["history", "n1", "1h", "all"])?.cols.cpu).toEqual([1, 2, 3, 4]);
    expect(client.getQueryData<Frame>(["history", "n2", "1h", "all"])?.cols.cpu).toEqual([7]);
  });
});

describe("memoryPercent", () => {
  it("is used over used + available, null where either is missing", () => {
    const f: Frame = {
      range: "1h",
      step: 5,
      times: [T0, T0 + 5, T0 + 10],
      cols: { mem_used: [1, null, 3], mem_available: [3, 2, 1] },
      lastCount: 1,
    };
    expect(memoryPercent(f)).toEqual([25, null, 75]);
  });
});
