// The dashboard's small CPU and memory chart per node: each node's last hour asked once
// (`metrics=cpu,memory`: about a third of the full answer), then moved on by the `history`
// events like the node page's charts (./live.ts), so an open dashboard asks nothing more
// however long it stays open. At most MAX_NODES charts: a big cluster's dashboard must not
// spend the user's rate limit on them. Loaded lazily: uPlot is not in the first load.
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { Card, CardBody, CardTitle, Gallery, Spinner } from "../../pf";
import { Chart, formatValue } from "./Chart";
import { historyQuery } from "./HistoryCharts";
import { memoryPercent, type Frame } from "./history";


export const MAX_NODES = 12;
const LABELS = ["CPU", "Memory"];

function NodeChart({ name }: { name: string }) {
  const history = useQuery(historyQuery(name, "1h", "cpu,memory"));
  return (
    <div data-testid={`load-${name}`}>
      <Link to={`/nodes/${encodeURIComponent(name)}`}>{name}</Link>
      {history.data && <span className="dv-chart-now">{caption(history.data)}</span>}
      {history.isPending && <Spinner size="md" aria-label={`Loading ${name}'s load`} />}
      {history.isError && <div>no history: {history.error.message}</div>}
      {history.data && (
        <Chart title={`${name} load`} kind="percent" labels={LABELS} data={loadData(history.data)} height={110} legend={false} />
      )}
    </div>
  );
}

export function loadData(frame: Frame): (number | null)[][] {
  return [frame.times, frame.cols.cpu ?? frame.times.map(() => null), memoryPercent(frame)];
}

function lastOf(values: (number | null)[]): number | null {
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}

function caption(frame: Frame): string {
  const [, cpu = [], memory = []] = loadData(frame);
  return `CPU ${formatValue("percent", lastOf(cpu))} · memory ${formatValue("percent", lastOf(memory))}`;
}

export default function NodeLoad({ nodes }: { nodes: string[] }) {
  const shown = nodes.slice(0, MAX_NODES);
  return (
    <Card>
      <CardTitle component="h2">Load (last hour)</CardTitle>
      <CardBody>
        <Gallery hasGutter minWidths={{ default: "16rem" }}>
          {shown.map((name) => (
            <NodeChart key={name} name={name} />
          ))}
        </Gallery>
        {nodes.length > shown.length && <p>{nodes.length - shown.length} more on their own pages.</p>}
      </CardBody>
    </Card>
  );
}
