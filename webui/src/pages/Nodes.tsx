// Every member of the cluster with its state and the facts it publishes; a name leads to its page.
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { Alert, Label, PageSection, Spinner, Table, Tbody, Td, Th, Thead, Title, Tr } from "../pf";
import { api } from "../api/client";
import type { ClusterSummary } from "../api/types";
import { bytes, stateColor } from "../format";

export default function Nodes() {
  // The cluster summary carries the members and their published facts in one request.
  const cluster = useQuery({ queryKey: ["cluster"], queryFn: () => api.get<ClusterSummary>("/cluster") });
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Nodes</Title>
      </PageSection>
      <PageSection>
        {cluster.isPending && <Spinner size="xl" aria-label="Loading nodes" />}
        {cluster.isError && <Alert variant="danger" isInline title={cluster.error.message} />}
        {cluster.data && (
          <Table aria-label="Nodes" variant="compact">
            <Thead>
              <Tr>
                <Th>Name</Th>
                <Th>State</Th>
                <Th>API</Th>
                <Th>CPUs</Th>
                <Th>Memory</Th>
                <Th>Kernel</Th>
                <Th>Labels</Th>
              </Tr>
            </Thead>
            <Tbody>
              {cluster.data.members.map((member) => {
                const facts = cluster.data.facts?.[member.name];
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
                    <Td dataLabel="CPUs">{facts?.cpu.count ?? "–"}</Td>
                    <Td dataLabel="Memory">{facts ? bytes(facts.memory.total_bytes) : "–"}</Td>
                    <Td dataLabel="Kernel">{facts?.kernel ?? "–"}</Td>
                    <Td dataLabel="Labels">
                      {Object.entries(facts?.labels ?? {}).map(([k, v]) => (
                        <Label key={k} isCompact>
                          {k}={v}
                        </Label>
                      ))}
                    </Td>
                  </Tr>
                );
              })}
            </Tbody>
          </Table>
        )}
      </PageSection>
    </>
  );
}
