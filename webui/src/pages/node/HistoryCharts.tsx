// A node's resource history (CPU, memory, network, disk I/O) over the last hour, day or week:
// the range is asked of the node once, then each `history` event's sample is appended to the
// cached frame (./live.ts), so an open chart costs no request after the first. Loaded lazily
// by the node page: uPlot is not in the first load.
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Alert, Card, CardBody, CardTitle, Flex, FlexItem, Gallery, Spinner, ToggleGroup, ToggleGroupItem } from "../../pf";
import { api } from "../../api/client";
import type { History } from "../../api/types";
import { Chart, formatValue } from "./Chart";
import { CHARTS, RANGES, chartData, fromHistory, latest, type Range } from "./history";

const RANGE_LABELS: Record<Range, string> = { "1h": "Hour", "1d": "Day", "1w": "Week" };

export function historyQuery(name: string, range: Range, metrics?: string) {
  return {
    queryKey: ["history", name, range, metrics ?? "all"],
    queryFn: async () =>
      fromHistory(await api.get<History>(`/nodes/${encodeURIComponent(name)}/history`, { query: { range, metrics } })),
  };
}

export default function HistoryCharts({ name }: { name: string }) {
  const [range, setRange] = useState<Range>("1h");
  const history = useQuery(historyQuery(name, range));
  const frame = history.data;
  return (
    <Card>
      <CardTitle component="h2">
        <Flex justifyContent={{ default: "justifyContentSpaceBetween" }} alignItems={{ default: "alignItemsCenter" }}>
          <FlexItem>Resources</FlexItem>
          <FlexItem>
            <ToggleGroup isCompact aria-label="History range">
              {RANGES.map((r) => (
                <ToggleGroupItem
                  key={r}
                  text={RANGE_LABELS[r]}
                  buttonId={`range-${r}`}
                  isSelected={range === r}
                  onChange={() => setRange(r)}
                />
              ))}
            </ToggleGroup>
          </FlexItem>
        </Flex>
      </CardTitle>
      <CardBody>
        {history.isPending && <Spinner size="lg" aria-label="Loading the history" />}
        {history.isError && <Alert variant="warning" isInline title={`No history: ${history.error.message}`} />}
        {frame && (
          <Gallery hasGutter minWidths={{ default: "100%", xl: "calc(50% - 1rem)" }}>
            {CHARTS.map((spec) => (
              <div key={spec.id} data-testid={`history-${spec.id}`} data-last={frame.times[frame.times.length - 1] ?? ""}>
                <h3 className="dv-chart-title">
                  {spec.title}
                  <span className="dv-chart-now">
                    {spec.columns.map((c, i) => `${spec.labels[i]} ${formatValue(spec.kind, latest(frame, c))}`).join(" · ")}
                  </span>
                </h3>
                <Chart title={spec.title} kind={spec.kind} labels={spec.labels} data={chartData(frame, spec.columns)} />
              </div>
            ))}
          </Gallery>
        )}
      </CardBody>
    </Card>
  );
}
