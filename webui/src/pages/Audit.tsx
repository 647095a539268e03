// The audit log: filters (user, action, node, since, until) kept in the URL so that a reload
// or a shared link shows the same view, cursor paging (the API pages oldest first with
// `after`), and the export of everything the filters match as CSV or JSON.
import { useState, type FormEvent } from "react";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router-dom";
import {
  ActionGroup,
  Alert,
  Button,
  Card,
  CardBody,
  Content,
  Flex,
  FlexItem,
  Form,
  FormGroup,
  Label,
  PageSection,
  Spinner,
  Stack,
  Table,
  Tbody,
  Td,
  TextInput,
  Th,
  Thead,
  Title,
  Tr,
} from "../pf";
import { api, url } from "../api/client";
import type { AuditPage } from "../api/types";
import { outcomeColor, timestamp } from "../format";

export const PAGE_SIZE = 50;
export const FILTERS = ["user", "action", "node", "since", "until"] as const;
type Filter = (typeof FILTERS)[number];

/** A datetime-local value (the browser's local time) as the ISO instant the API takes. */
export function toInstant(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** The API query of the page's URL parameters. */
export function auditQuery(params: URLSearchParams): Record<string, string | number | undefined> {
  return {
    user: params.get("user") ?? undefined,
    action: params.get("action") ?? undefined,
    node: params.get("node") ?? undefined,
    since: toInstant(params.get("since") ?? ""),
    until: toInstant(params.get("until") ?? ""),
    after: Number(params.get("after") ?? 0) || 0,
    limit: PAGE_SIZE,
  };
}

export default function Audit() {
  const [params, setParams] = useSearchParams();
  const [draft, setDraft] = useState<Record<Filter, string>>(
    () => Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ""])) as Record<Filter, string>,
  );
  const [previous, setPrevious] = useState<number[]>([]);
  const query = auditQuery(params);
  const page = useQuery({
    queryKey: ["audit", "log", query],
    queryFn: () => api.get<AuditPage>("/audit", { query }),
    placeholderData: keepPreviousData,
  });

  function apply(event: FormEvent) {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const f of FILTERS) if (draft[f]) next.set(f, draft[f]);
    setPrevious([]);
    setParams(next);
  }

  function go(after: number | null) {
    const next = new URLSearchParams(params);
    if (after) next.set("after", String(after));
    else next.delete("after");
    setParams(next);
  }

  const exportQuery = { ...query, after: undefined, limit: undefined, node: undefined };
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Audit log</Title>
        <Content component="p">Every change, refusal, login and logout, oldest first.</Content>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          <Card>
            <CardBody>
              <Form onSubmit={apply} aria-label="Filter the audit log">
                <Flex>
                  {(
                    [
                      ["user", "User", "text"],
                      ["action", "Action (exact, or a prefix ending in . or *)", "text"],
                      ["node", "Node (a name, or all)", "text"],
                      ["since", "Since", "datetime-local"],
                      ["until", "Until", "datetime-local"],
                    ] as [Filter, string, "text" | "datetime-local"][]
                  ).map(([f, label, type]) => (
                    <FlexItem key={f}>
                      <FormGroup label={label} fieldId={`audit-${f}`}>
                        <TextInput
                          id={`audit-${f}`}
                          type={type}
                          value={draft[f]}
                          onChange={(_e, v) => setDraft({ ...draft, [f]: v })}
                        />
                      </FormGroup>
                    </FlexItem>
                  ))}
                </Flex>
                <ActionGroup>
                  <Button type="submit" variant="primary">
                    Filter
                  </Button>
                  <Button component="a" variant="secondary" href={url("/audit/export", { ...exportQuery, format: "csv" })}>
                    Export CSV
                  </Button>
                  <Button component="a" variant="secondary" href={url("/audit/export", { ...exportQuery, format: "json" })}>
                    Export JSON
                  </Button>
                </ActionGroup>
              </Form>
            </CardBody>
          </Card>
          {page.isPending && <Spinner size="xl" aria-label="Loading the audit log" />}
          {page.isError && <Alert variant="danger" isInline title={page.error.message} />}
          {page.data?.unreachable?.length ? (
            <Alert variant="warning" isInline title={`No answer from ${page.data.unreachable.join(", ")}`} />
          ) : null}
          {page.data && (
            <Card>
              <CardBody>
                <Table aria-label="Audit entries" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>#</Th>
                      <Th>Time</Th>
                      <Th>Node</Th>
                      <Th>User</Th>
                      <Th>Source</Th>
                      <Th>Action</Th>
                      <Th>Target</Th>
                      <Th>Outcome</Th>
                      <Th>Detail</Th>
                    </Tr>
                  </Thead>
                  <Tbody>
                    {page.data.entries.map((e) => (
                      <Tr key={`${e.node}-${e.seq}`}>
                        <Td dataLabel="#">{e.seq}</Td>
                        <Td dataLabel="Time">{timestamp(e.ts)}</Td>
                        <Td dataLabel="Node">{e.node}</Td>
                        <Td dataLabel="User">{e.user}</Td>
                        <Td dataLabel="Source">{e.source}</Td>
                        <Td dataLabel="Action">{e.action}</Td>
                        <Td dataLabel="Target">{e.target}</Td>
                        <Td dataLabel="Outcome">
                          <Label color={outcomeColor(e.outcome)} isCompact>
                            {e.outcome}
                          </Label>
                        </Td>
                        <Td dataLabel="Detail">{e.detail}</Td>
                      </Tr>
                    ))}
                  </Tbody>
                </Table>
                {page.data.entries.length === 0 && <Content component="p">No entries match.</Content>}
                <Flex>
                  <FlexItem>
                    <Button
                      variant="secondary"
                      isDisabled={previous.length === 0}
                      onClick={() => {
                        const back = previous[previous.length - 1] ?? 0;
                        setPrevious(previous.slice(0, -1));
                        go(back);
                      }}
                    >
                      Previous page
                    </Button>
                  </FlexItem>
                  <FlexItem>
                    <Button
                      variant="secondary"
                      isDisabled={page.data.next_after === null}
                      onClick={() => {
                        setPrevious([...previous, Number(query.after) || 0]);
                        go(page.data.next_after);
                      }}
                    >
                      Next page
                    </Button>
                  </FlexItem>
                </Flex>
              </CardBody>
            </Card>
          )}
        </Stack>
      </PageSection>
    </>
  );
}
