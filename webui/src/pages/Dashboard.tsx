// The cluster at a glance: totals, every member and its state with its facts, and (for those
// who may read the audit log) the latest audit entries. Live: events invalidate these queries.
import { lazy, Suspense } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import {
  Alert,
  Card,
  CardBody,
  CardTitle,
  Content,
  Gallery,
  Label,
  PageSection,
  Spinner,
  Stack,
  Table,
  Tbody,
  Td,
  Th,
  Thead,
  Title,
  Tr,
} from "../pf";
import { api } from "../api/client";
import type { AuditEntry, AuditPage, ClusterSummary } from "../api/types";
import { bytes, outcomeColor, stateColor, timestamp } from "../format";
import { can, useMe } from "../session";

// Per-node CPU and memory charts: uPlot loads after the page, not with it.
const NodeLoad = lazy(() => import("./node/NodeLoad"));

const RECENT = 10;
const RECENT_WINDOW_SECONDS = 24 * 3600;
const MAX_PAGES = 5;

/** The newest entries of the last day, newest first (the API pages oldest first). Exported:
 * main.tsx starts it on the first load as soon as the session is known. */
export async function recentAudit(): Promise<AuditEntry[]> {
  const since = new Date(Date.now() - RECENT_WINDOW_SECONDS * 1000).toISOString();
  let kept: AuditEntry[] = [];
  let after: number | null = 0;
  for (let page = 0; page < MAX_PAGES && after !== null; page++) {
    const answer: AuditPage = await api.get<AuditPage>("/audit", { query: { since, after, limit: 500 } });
    kept = [...kept, ...answer.entries].slice(-RECENT);
    after = answer.next_after;
  }
  return kept.reverse();
}

function Totals({ summary }: { summary: ClusterSummary }) {
  const alive = summary.members.filter((m) => m.state === "alive").length;
  const cards: [string, string][] = [
    ["Nodes", `${alive} of ${summary.totals.nodes} alive`],
    ["CPUs", String(summary.totals.cpus)],
    ["Memory", bytes(summary.totals.memory_bytes)],
  ];
  return (
    <Gallery hasGutter minWidths={{ default: "12rem" }}>
      {cards.map(([title, value]) => (
        <Card key={title} isCompact>
          <CardTitle component="h2">{title}</CardTitle>
          <CardBody>
            <span className="dv-figure" data-testid={`total-${title.toLowerCase()}`}>
              {value}
            </span>
          </CardBody>
        </Card>
      ))}
    </Gallery>
  );
}

function Members({ summary }: { summary: ClusterSummary }) {
  return (
    <Card>
      <CardTitle component="h2">Members</CardTitle>
      <CardBody>
        <Table aria-label="Cluster members" variant="compact">
          <Thead>
            <Tr>
              <Th>Name</Th>
              <Th>State</Th>
              <Th>API</Th>
              <Th>CPUs</Th>
              <Th>Memory</Th>
              <Th>Version</Th>
            </Tr>
          </Thead>
          <Tbody>
            {summary.members.map((member) => {
              const facts = summary.facts?.[member.name];
              return (
                <Tr key={member.name}>
                  <Td dataLabel="Name">
                    <Link to={`/nodes/${encodeURIComponent(member.name)}`}>{member.name}</Link>
                  </Td>
                  <Td dataLabel="State">
                    <Label color={stateColor(member.state)} isCompact>
                      {member.state}
                    </Label>
                  </Td>
                  <Td dataLabel="API">{member.api_address}</Td>
                  <Td dataLabel="CPUs">{facts ? facts.cpu.count : "–"}</Td>
                  <Td dataLabel="Memory">{facts ? bytes(facts.memory.total_bytes) : "–"}</Td>
                  <Td dataLabel="Version">{member.version}</Td>
                </Tr>
              );
            })}
          </Tbody>
        </Table>
      </CardBody>
    </Card>
  );
}

function RecentAudit() {
  const recent = useQuery({ queryKey: ["audit", "recent"], queryFn: recentAudit });
  return (
    <Card>
      <CardTitle component="h2">Recent audit events</CardTitle>
      <CardBody>
        {recent.isPending && <Spinner size="lg" aria-label="Loading audit events" />}
        {recent.isError && <Alert variant="danger" isInline title={recent.error.message} />}
        {recent.data && recent.data.length === 0 && <Content component="p">Nothing in the last day.</Content>}
        {recent.data && recent.data.length > 0 && (
          <Table aria-label="Recent audit events" variant="compact">
            <Thead>
              <Tr>
                <Th>Time</Th>
                <Th>Node</Th>
                <Th>User</Th>
                <Th>Action</Th>
                <Th>Outcome</Th>
              </Tr>
            </Thead>
            <Tbody>
              {recent.data.map((entry) => (
                <Tr key={`${entry.node}-${entry.seq}`}>
                  <Td dataLabel="Time">{timestamp(entry.ts)}</Td>
                  <Td dataLabel="Node">{entry.node}</Td>
                  <Td dataLabel="User">{entry.user}</Td>
                  <Td dataLabel="Action">{entry.action}</Td>
                  <Td dataLabel="Outcome">
                    <Label color={outcomeColor(entry.outcome)} isCompact>
                      {entry.outcome}
                    </Label>
                  </Td>
                </Tr>
              ))}
            </Tbody>
          </Table>
        )}
      </CardBody>
    </Card>
  );
}

export function Dashboard() {
  const me = useMe();
  const cluster = useQuery({ queryKey: ["cluster"], queryFn: () => api.get<ClusterSummary>("/cluster") });
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Cluster</Title>
        {cluster.data && (
          <Content component="p">
            Answered by {cluster.data.answered_by}; cluster {cluster.data.cluster_id.slice(0, 12)}
          </Content>
        )}
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          {cluster.isPending && <Spinner size="xl" aria-label="Loading the cluster" />}
          {cluster.isError && <Alert variant="danger" isInline title={cluster.error.message} />}
          {cluster.data && <Totals summary={cluster.data} />}
          {cluster.data && <Members summary={cluster.data} />}
          {cluster.data && (
            <Suspense fallback={null}>
              <NodeLoad nodes={cluster.data.members.filter((m) => m.state === "alive").map((m) => m.name)} />
            </Suspense>
          )}
          {can(me, "audit:read") && <RecentAudit />}
        </Stack>
      </PageSection>
    </>
  );
}
