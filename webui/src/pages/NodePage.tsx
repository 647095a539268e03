// One node's page: its facts, asked of the node itself (the API forwards to it: hardware,
// kernel, version, uptime, addresses, labels and description) with its resource history
// charts (loaded lazily: uPlot is not in the first load), its systemd units and journal
// (units:read), and for admins the power actions. The tab is in the URL (`?tab=units`).
import { lazy, Suspense } from "react";
import { useQuery } from "@tanstack/react-query";
import { useParams, useSearchParams } from "react-router-dom";
import {
  Alert,
  Card,
  CardBody,
  CardTitle,
  Content,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Label,
  PageSection,
  Spinner,
  Flex,
  FlexItem,
  Stack,
  Tab,
  Tabs,
  TabTitleText,
  Table,
  Tbody,
  Td,
  Th,
  Thead,
  Title,
  Tr,
} from "../pf";
import { api } from "../api/client";
import type { Node } from "../api/types";
import { bytes, duration, timestamp } from "../format";
import { can, useMe } from "../session";
import { PowerButton } from "./node/Power";

const HistoryCharts = lazy(() => import("./node/HistoryCharts"));
const UnitsTab = lazy(() => import("./node/UnitsTab"));

function Fact({ term, children }: { term: string; children: React.ReactNode }) {
  return (
    <DescriptionListGroup>
      <DescriptionListTerm>{term}</DescriptionListTerm>
      <DescriptionListDescription>{children}</DescriptionListDescription>
    </DescriptionListGroup>
  );
}

export default function NodePage() {
  const { name = "" } = useParams();
  const me = useMe();
  const [params, setParams] = useSearchParams();
  const mayUnits = can(me, "units:read");
  const tab = params.get("tab") === "units" && mayUnits ? "units" : "overview";
  const node = useQuery({
    queryKey: ["node", name],
    queryFn: () => api.get<Node>(`/nodes/${encodeURIComponent(name)}`),
  });
  const n = node.data;
  return (
    <>
      <PageSection>
        <Flex justifyContent={{ default: "justifyContentSpaceBetween" }}>
          <FlexItem>
            <Title headingLevel="h1">Node {name}</Title>
            {n?.description && <Content component="p">{n.description}</Content>}
          </FlexItem>
          {can(me, "node:power") && (
            <FlexItem>
              <PowerButton name={name} />
            </FlexItem>
          )}
        </Flex>
      </PageSection>
      <PageSection type="tabs">
        <Tabs
          activeKey={tab}
          onSelect={(_e, key) => setParams(key === "units" ? { tab: "units" } : {})}
          aria-label="Node views"
          inset={{ default: "insetMd" }}
        >
          <Tab eventKey="overview" title={<TabTitleText>Overview</TabTitleText>} tabContentId="node-tab" />
          {mayUnits && <Tab eventKey="units" title={<TabTitleText>Units</TabTitleText>} tabContentId="node-tab" />}
        </Tabs>
      </PageSection>
      {tab === "units" ? (
        <PageSection id="node-tab" role="tabpanel" aria-label="Units">
          <Suspense fallback={<Spinner size="xl" aria-label="Loading" />}>
            <UnitsTab name={name} />
          </Suspense>
        </PageSection>
      ) : (
      <PageSection id="node-tab" role="tabpanel" aria-label="Overview">
        {node.isPending && <Spinner size="xl" aria-label="Loading the node" />}
        {node.isError && <Alert variant="danger" isInline title={node.error.message} />}
        {n && (
          <Stack hasGutter>
            <Card>
              <CardTitle component="h2">Facts</CardTitle>
              <CardBody>
                <DescriptionList isCompact isHorizontal columnModifier={{ lg: "2Col" }} aria-label="Facts">
                  <Fact term="Version">{n.version}</Fact>
                  <Fact term="Kernel">{n.kernel}</Fact>
                  <Fact term="CPU">
                    {n.cpu.count} × {n.cpu.model}
                  </Fact>
                  <Fact term="Memory">
                    {bytes(n.memory.available_bytes)} free of {bytes(n.memory.total_bytes)}
                  </Fact>
                  <Fact term="Disk">
                    {bytes(n.disk.free_bytes)} free of {bytes(n.disk.total_bytes)} ({n.disk.path})
                  </Fact>
                  <Fact term="Started">
                    {timestamp(n.started_at)} (up {duration(n.uptime_seconds)})
                  </Fact>
                  <Fact term="Node id">{n.node_id}</Fact>
                  <Fact term="Labels">
                    {Object.keys(n.labels).length === 0
                      ? "none"
                      : Object.entries(n.labels).map(([k, v]) => (
                          <Label key={k} isCompact>
                            {k}={v}
                          </Label>
                        ))}
                  </Fact>
                </DescriptionList>
              </CardBody>
            </Card>
            <Suspense fallback={<Spinner size="lg" aria-label="Loading the charts" />}>
              <HistoryCharts name={name} />
            </Suspense>
            <Card>
              <CardTitle component="h2">Addresses</CardTitle>
              <CardBody>
                <Table aria-label="Addresses" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>Interface</Th>
                      <Th>Address</Th>
                      <Th>Family</Th>
                      <Th>Scope</Th>
                    </Tr>
                  </Thead>
                  <Tbody>
                    {n.addresses.map((a) => (
                      <Tr key={`${a.interface}-${a.address}`}>
                        <Td dataLabel="Interface">{a.interface}</Td>
                        <Td dataLabel="Address">
                          {a.address}/{a.prefix_len}
                        </Td>
                        <Td dataLabel="Family">{a.family === "inet" ? "IPv4" : "IPv6"}</Td>
                        <Td dataLabel="Scope">{a.scope}</Td>
                      </Tr>
                    ))}
                  </Tbody>
                </Table>
              </CardBody>
            </Card>
          </Stack>
        )}
      </PageSection>
      )}
    </>
  );
}
