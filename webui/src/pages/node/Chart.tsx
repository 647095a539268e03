// One uPlot time-series chart (docs/history.md's columns): drawn on a canvas that follows its
// container's width and the theme's text colour; new data is handed to the same plot
// (setData), never a new one. uPlot and its CSS are imported here only, so they load with
// the node page's charts and not with the first page.
import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { bytes } from "../../format";

export type Kind = "percent" | "bytes" | "rate";

const COLOURS = ["#4394e5", "#f0ab00", "#5ba352", "#ca6c0f"];

/** Tick steps of byte scales: 1, 2, 5 ... times powers of 1024, so ticks read 512 MiB, 1 GiB. */
const BYTE_STEPS = Array.from({ length: 6 }, (_, k) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * 1024 ** k)).flat();

export function formatValue(kind: Kind, v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (kind === "percent") return `${v.toFixed(1)} %`;
  if (kind === "bytes") return bytes(Math.round(v));
  return `${bytes(Math.round(v))}/s`;
}

export interface ChartProps {
  title: string;
  kind: Kind;
  labels: string[];
  data: (number | null)[][];
  height?: number;
  /** uPlot's legend (the values under the cursor); small charts go without. */
  legend?: boolean;
}

/** The theme's class on <html> (src/theme.ts toggles it): the canvas takes its colours once,
 * so a chart is drawn again when the theme changes. */
function useThemeClass(): string {
  const root = document.documentElement;
  const [theme, setTheme] = useState(root.className);
  useEffect(() => {
    const watch = new MutationObserver(() => setTheme(root.className));
    watch.observe(root, { attributes: true, attributeFilter: ["class"] });
    return () => watch.disconnect();
  }, [root]);
  return theme;
}

export function Chart({ title, kind, labels, data, height = 160, legend = true }: ChartProps) {
  const theme = useThemeClass();
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(data);
  latest.current = data;

  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const text = getComputedStyle(el).color || "#888";
    const grid = "rgba(128,128,128,0.25)";
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      series: [
        { label: "Time" },
        ...labels.map((label, i) => ({
          label,
          stroke: COLOURS[i % COLOURS.length],
          width: 1.5,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => formatValue(kind, v),
        })),
      ],
      scales: kind === "percent" ? { y: { range: [0, 100] } } : { y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
      axes: [
        { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } },
        {
          stroke: text,
          grid: { stroke: grid },
          ticks: { stroke: grid },
          size: 70,
          ...(kind === "percent" ? {} : { incrs: BYTE_STEPS }),
          values: (_u, splits) => splits.map((v) => formatValue(kind, v)),
        },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { show: legend },
    };
    const u = new uPlot(opts, latest.current as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => {
      u.setSize({ width: Math.max(200, el.clientWidth), height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [kind, labels, height, legend, theme]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return <div ref={box} className="dv-chart" role="group" aria-label={`${title} chart`} data-testid={`chart-${title}`} />;
}
