// A node's host networking: its links with counters, the stored / applied / pending
// configuration, an editor for the configuration (a problem's `$.path` shown on the line it
// names), the plan as a diff, and apply with a visible countdown and Confirm / Roll back
// (the API's commit-confirmed flow). Live from `network` events (key ["network", node]).
import { useEffect, useMemo, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "react-router-dom";
import {
  ActionGroup,
  Alert,
  Button,
  Card,
  CardBody,
  CardTitle,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
  Label,
  PageSection,
  Spinner,
  Stack,
  Table,
  Tbody,
  Td,
  TextArea,
  TextInput,
  Th,
  Thead,
  Title,
  Tr,
} from "../../pf";
import { api, ApiProblem } from "../../api/client";
import type { NetworkApplied, NetworkConfig, NetworkOutcome, NetworkPlan, NetworkStatus } from "../../api/network-types";
import { bytes } from "../../format";
import "./network.css";
import { can, useMe } from "../../session";
import { confirmWithinError, documentOf, lineDiff, lineOfPath, parseDocument, secondsLeft, type DiffLine } from "./logic";

/** Problems of a body `{config: ...}` name `$.config.x`: the document's own path is `$.x`. */
function documentPath(path: string): string {
  return path.startsWith("$.config") ? `$${path.slice("$.config".length)}` : path;
}

function Links({ status }: { status: NetworkStatus }) {
  return (
    <Table aria-label="Links" variant="compact">
      <Thead>
        <Tr>
          <Th>Name</Th>
          <Th>Kind</Th>
          <Th>State</Th>
          <Th>MTU</Th>
          <Th>Addresses</Th>
          <Th>Received</Th>
          <Th>Sent</Th>
          <Th>Errors / dropped</Th>
        </Tr>
      </Thead>
      <Tbody>
        {status.links.map((link) => {
          const c = { rx_bytes: 0, rx_packets: 0, rx_errors: 0, rx_dropped: 0, tx_bytes: 0, tx_packets: 0, tx_errors: 0, tx_dropped: 0, ...link.counters };
          return (
          <Tr key={link.name}>
            <Td dataLabel="Name">
              {link.name}
              {link.master ? ` (in ${link.master})` : ""}
            </Td>
            <Td dataLabel="Kind">{link.kind || "nic"}</Td>
            <Td dataLabel="State">
              <Label isCompact color={link.operstate === "UP" ? "green" : link.up ? "orange" : "grey"}>
                {link.operstate}
              </Label>
            </Td>
            <Td dataLabel="MTU">{link.mtu}</Td>
            <Td dataLabel="Addresses">{(link.addresses ?? []).join(", ") || "none"}</Td>
            <Td dataLabel="Received">
              {bytes(c.rx_bytes)} ({c.rx_packets} packets)
            </Td>
            <Td dataLabel="Sent">
              {bytes(c.tx_bytes)} ({c.tx_packets} packets)
            </Td>
            <Td dataLabel="Errors / dropped">
              {c.rx_errors + c.tx_errors} / {c.rx_dropped + c.tx_dropped}
            </Td>
          </Tr>
          );
        })}
      </Tbody>
    </Table>
  );
}

function Diff({ lines, label }: { lines: DiffLine[]; label: string }) {
  return (
    <pre className="dv-diff" role="region" aria-label={label} tabIndex={0}>
      {lines.map((l, n) => (
        <div key={n} className={l.op === "+" ? "dv-diff-add" : l.op === "-" ? "dv-diff-del" : undefined}>
          {l.op} {l.text}
        </div>
      ))}
    </pre>
  );
}

/** The confirm window: a countdown to the node's deadline, Confirm and Roll back. */
function Pending({ node, status, fetchedAt, mayManage }: { node: string; status: NetworkStatus; fetchedAt: number; mayManage: boolean }) {
  const queries = useQueryClient();
  const deadlineMs = fetchedAt + (status.remaining ?? 0) * 1000; // the node's clock need not match ours
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, []);
  const left = secondsLeft(deadlineMs / 1000, now);
  // At the deadline the node rolls back on its own: read its status then (a bounded few
  // times), not on a timer of our own while nothing is due.
  useEffect(() => {
    if (left > 0) return;
    let tries = 0;
    const timer = setInterval(() => {
      void queries.invalidateQueries({ queryKey: ["network", node] });
      if (++tries >= 10) clearInterval(timer);
    }, 1000);
    return () => clearInterval(timer);
  }, [left, node, queries]);
  const done = () => void queries.invalidateQueries({ queryKey: ["network", node] });
  const confirm = useMutation({
    mutationFn: () => api.post<NetworkOutcome>(`/nodes/${encodeURIComponent(node)}/network/confirm`),
    onSettled: done,
  });
  const rollback = useMutation({
    mutationFn: () => api.post<NetworkOutcome>(`/nodes/${encodeURIComponent(node)}/network/rollback`),
    onSettled: done,
  });
  const error = confirm.error ?? rollback.error;
  return (
    <Alert
      variant="warning"
      isInline
      component="h2"
      title={left > 0 ? `Confirm the change within ${left} s or it is rolled back` : "Rolling back: the change was not confirmed"}
    >
      <Stack hasGutter>
        <p role="timer" aria-live="off" data-testid="countdown">
          {left} s left
        </p>
        {error && <Alert variant="danger" isInline isPlain title={error.message} />}
        {mayManage && left > 0 && (
          <ActionGroup>
            <Button variant="primary" onClick={() => confirm.mutate()} isLoading={confirm.isPending} isDisabled={confirm.isPending || rollback.isPending}>
              Confirm
            </Button>
            <Button variant="secondary" isDanger onClick={() => rollback.mutate()} isLoading={rollback.isPending} isDisabled={confirm.isPending || rollback.isPending}>
              Roll back
            </Button>
          </ActionGroup>
        )}
      </Stack>
    </Alert>
  );
}

function Editor({ node, status, mayManage }: { node: string; status: NetworkStatus; mayManage: boolean }) {
  const queries = useQueryClient();
  const base = `/nodes/${encodeURIComponent(node)}/network`;
  const stored = documentOf(status.desired ?? status.applied);
  const [text, setText] = useState<string | null>(null);
  const doc = text ?? stored;
  const [within, setWithin] = useState("120");
  const parsed = useMemo(() => parseDocument(doc), [doc]);
  const applied = status.applied ? documentOf(status.applied) : ""; // nothing applied: every line is new
  const diff = useMemo(() => lineDiff(applied, parsed.config ? documentOf(parsed.config) : doc), [applied, parsed, doc]);
  const refresh = () => void queries.invalidateQueries({ queryKey: ["network", node] });
  const plan = useMutation({
    mutationFn: (config: NetworkConfig) => api.post<NetworkPlan>(`${base}/plan`, { config }),
  });
  const store = useMutation({
    mutationFn: (config: NetworkConfig) => api.put<NetworkConfig>(base, config),
    onSuccess: () => {
      setText(null);
      refresh();
    },
  });
  const apply = useMutation({
    mutationFn: (config: NetworkConfig) =>
      api.post<NetworkApplied>(`${base}/apply`, { config, confirm_within: Number(within) }),
    onSettled: refresh,
  });
  const failed = [plan.error, store.error, apply.error].find((e) => e instanceof ApiProblem) as ApiProblem | undefined;
  const withinErr = confirmWithinError(within);
  const busy = plan.isPending || store.isPending || apply.isPending;
  const ready = !!parsed.config && !busy;
  const problems = (failed?.errors ?? []).map((e) => {
    const path = documentPath(e.path);
    return { path, message: e.message, line: lineOfPath(doc, path) };
  });
  const reset = () => {
    plan.reset();
    store.reset();
    apply.reset();
  };

  return (
    <Form onSubmit={(e) => e.preventDefault()} aria-label="Network configuration">
      {failed && problems.length === 0 && <Alert variant="danger" component="h3" isInline title={failed.detail} />}
      <FormGroup label="Configuration (JSON: nics, bonds, bridges, vlans, vxlans)" fieldId="net-doc">
        <TextArea
          id="net-doc"
          value={doc}
          rows={Math.min(30, Math.max(8, doc.split("\n").length + 1))}
          resizeOrientation="vertical"
          className="dv-mono"
          readOnlyVariant={mayManage ? undefined : "default"}
          validated={parsed.error || problems.length ? "error" : "default"}
          aria-describedby="net-doc-help"
          onChange={(_e, v) => {
            setText(v);
            reset();
          }}
        />
        <FormHelperText>
          <HelperText id="net-doc-help" aria-live="polite">
            {parsed.error && (
              <HelperTextItem variant="error">
                Line {parsed.error.line}: {parsed.error.message}
              </HelperTextItem>
            )}
            {problems.map((p) => (
              <HelperTextItem key={`${p.path}:${p.message}`} variant="error" data-path={p.path}>
                {p.line !== undefined ? `Line ${p.line}, ` : ""}
                {p.path}: {p.message}
              </HelperTextItem>
            ))}
            {!parsed.error && problems.length === 0 && (
              <HelperTextItem>A link left out is not managed; see docs/networking.md for every field.</HelperTextItem>
            )}
          </HelperText>
        </FormHelperText>
      </FormGroup>
      {mayManage && (
        <FormGroup label="Roll back unless confirmed within (seconds)" fieldId="net-within">
          <TextInput
            id="net-within"
            inputMode="numeric"
            value={within}
            validated={withinErr ? "error" : "default"}
            onChange={(_e, v) => setWithin(v)}
          />
          {withinErr && (
            <FormHelperText>
              <HelperText>
                <HelperTextItem variant="error">{withinErr}</HelperTextItem>
              </HelperText>
            </FormHelperText>
          )}
        </FormGroup>
      )}
      <ActionGroup>
        <Button variant="secondary" isDisabled={!ready} isLoading={plan.isPending} onClick={() => parsed.config && plan.mutate(parsed.config)}>
          Show the plan
        </Button>
        {mayManage && (
          <>
            <Button variant="secondary" isDisabled={!ready} isLoading={store.isPending} onClick={() => parsed.config && store.mutate(parsed.config)}>
              Store
            </Button>
            <Button
              variant="primary"
              isDisabled={!ready || !!withinErr || !!status.pending}
              isLoading={apply.isPending}
              onClick={() => parsed.config && apply.mutate(parsed.config)}
            >
              Apply
            </Button>
          </>
        )}
        {text !== null && (
          <Button variant="link" onClick={() => { setText(null); reset(); }}>
            Discard edits
          </Button>
        )}
      </ActionGroup>
      {plan.data && (
        <Stack hasGutter>
          <Title headingLevel="h3">The plan</Title>
          <p>Compared with the applied configuration:</p>
          <Diff lines={diff} label="Configuration diff" />
          <p>What the node would run ({plan.data.actions.length} changes):</p>
          <Diff lines={plan.data.actions.map((a) => ({ op: "+", text: a }))} label="Planned commands" />
        </Stack>
      )}
    </Form>
  );
}

export default function HostNetwork() {
  const { name = "" } = useParams();
  const me = useMe();
  const mayManage = can(me, "network:manage");
  const status = useQuery({
    queryKey: ["network", name],
    queryFn: () => api.get<NetworkStatus>(`/nodes/${encodeURIComponent(name)}/network/status`),
  });
  const data = status.data;
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Host network of {name}</Title>
        <p>
          <Link to={`/nodes/${encodeURIComponent(name)}`}>Node {name}</Link>
          {can(me, "pxe:manage") && (
            <>
              {" · "}
              <Link to={`/nodes/${encodeURIComponent(name)}/pxe`}>PXE</Link>
            </>
          )}
        </p>
      </PageSection>
      <PageSection>
        {status.isPending && <Spinner size="lg" aria-label="Loading the network status" />}
        {status.isError && <Alert variant="danger" isInline title={status.error.message} />}
        {data && (
          <Stack hasGutter>
            {data.pending && <Pending node={name} status={data} fetchedAt={status.dataUpdatedAt} mayManage={mayManage} />}
            {data.last_outcome && !data.pending && (
              <Alert
                variant={data.last_outcome.result === "confirmed" ? "success" : "info"}
                isInline
                component="h2"
                title={`Last change ${data.last_outcome.result === "confirmed" ? "confirmed" : "rolled back"}${data.last_outcome.reason ? `: ${data.last_outcome.reason}` : ""}`}
                data-testid="last-outcome"
              />
            )}
            <Card>
              <CardTitle component="h2">Links</CardTitle>
              <CardBody>
                <Links status={data} />
              </CardBody>
            </Card>
            <Card>
              <CardTitle component="h2">Configuration</CardTitle>
              <CardBody>
                <Stack hasGutter>
                  <p>{data.startup}</p>
                  <Editor key={documentOf(data.desired ?? data.applied)} node={name} status={data} mayManage={mayManage} />
                </Stack>
              </CardBody>
            </Card>
            <Card>
              <CardTitle component="h2">Stored, applied and pending</CardTitle>
              <CardBody>
                <Stack hasGutter>
                  {(["desired", "applied", "pending"] as const).map((which) => (
                    <div key={which}>
                      <Title headingLevel="h3">{which === "desired" ? "Stored" : which === "applied" ? "Applied (confirmed)" : "Pending"}</Title>
                      <pre className="dv-diff" role="region" tabIndex={0} aria-label={`${which} configuration`}>
                        {data[which] ? documentOf(data[which]) : "none"}
                      </pre>
                    </div>
                  ))}
                </Stack>
              </CardBody>
            </Card>
          </Stack>
        )}
      </PageSection>
    </>
  );
}
