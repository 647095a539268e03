// A node's PXE boot server: its settings (edited as a JSON document, a problem shown with the
// line its `$.path` names) and the machines that booted from it, with their enrolment; a
// machine waiting to enrol is approved under a name (admins: approving admits a member) or
// refused after typing its MAC. Live from `pxe` events (key ["pxe", node]).
import { useMemo, useState } from "react";
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
  Modal,
  ModalBody,
  ModalFooter,
  ModalHeader,
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
import type { EnlistedMachine, PxeSettingsView } from "../../api/network-types";
import { bytes, timestamp } from "../../format";
import { can, useMe } from "../../session";
import { lineOfPath, nodeNameError } from "./logic";
import { TypedConfirm } from "./TypedConfirm";
import "./network.css";


function settingsDocument(view: PxeSettingsView): string {
  const { enrolments: _omit, ...settings } = view;
  return JSON.stringify(settings, null, 2);
}

function Settings({ node, view }: { node: string; view: PxeSettingsView }) {
  const queries = useQueryClient();
  const stored = settingsDocument(view);
  const [text, setText] = useState<string | null>(null);
  const doc = text ?? stored;
  const parsed = useMemo(() => {
    try {
      const value: unknown = JSON.parse(doc);
      return typeof value === "object" && value !== null && !Array.isArray(value)
        ? { value: value as PxeSettingsView }
        : { error: "the settings are a JSON object" };
    } catch (e) {
      return { error: e instanceof Error ? e.message : String(e) };
    }
  }, [doc]);
  const save = useMutation({
    mutationFn: (body: PxeSettingsView) => api.put<PxeSettingsView>(`/nodes/${encodeURIComponent(node)}/pxe`, body),
    onSuccess: () => {
      setText(null);
      void queries.invalidateQueries({ queryKey: ["pxe", node] });
    },
  });
  const problem = save.error instanceof ApiProblem ? save.error : null;
  const problems = (problem?.errors ?? []).map((e) => ({ ...e, line: lineOfPath(doc, e.path) }));
  return (
    <Form onSubmit={(e) => e.preventDefault()} aria-label="PXE settings">
      {problem && problems.length === 0 && <Alert variant="danger" component="h3" isInline title={problem.detail} />}
      <FormGroup label="Settings (JSON)" fieldId="pxe-doc">
        <TextArea
          id="pxe-doc"
          className="dv-mono"
          value={doc}
          rows={Math.min(24, doc.split("\n").length + 1)}
          validated={parsed.error || problems.length ? "error" : "default"}
          onChange={(_e, v) => {
            setText(v);
            save.reset();
          }}
        />
        <FormHelperText>
          <HelperText aria-live="polite">
            {parsed.error && <HelperTextItem variant="error">{parsed.error}</HelperTextItem>}
            {problems.map((p) => (
              <HelperTextItem key={`${p.path}:${p.message}`} variant="error">
                {p.line !== undefined ? `Line ${p.line}, ` : ""}
                {p.path}: {p.message}
              </HelperTextItem>
            ))}
          </HelperText>
        </FormHelperText>
      </FormGroup>
      <ActionGroup>
        <Button variant="primary" isDisabled={!parsed.value || save.isPending} isLoading={save.isPending} onClick={() => parsed.value && save.mutate(parsed.value)}>
          Save PXE settings
        </Button>
        {text !== null && (
          <Button variant="link" onClick={() => { setText(null); save.reset(); }}>
            Discard edits
          </Button>
        )}
      </ActionGroup>
    </Form>
  );
}

function Approve({ node, machine, onClose }: { node: string; machine: EnlistedMachine; onClose: () => void }) {
  const queries = useQueryClient();
  const [name, setName] = useState(machine.name ?? "");
  const approve = useMutation({
    mutationFn: () =>
      api.post(`/nodes/${encodeURIComponent(node)}/pxe/machines/${encodeURIComponent(machine.mac)}/approve`, name ? { name } : {}),
    onSuccess: () => {
      void queries.invalidateQueries({ queryKey: ["pxe", node] });
      onClose();
    },
  });
  const err = nodeNameError(name) ?? (approve.error instanceof ApiProblem ? approve.error.detail : undefined);
  return (
    <Modal isOpen variant="small" onClose={onClose} aria-labelledby="approve-title">
      <ModalHeader title={`Approve ${machine.mac}?`} labelId="approve-title" />
      <ModalBody>
        <Form onSubmit={(e) => e.preventDefault()}>
          <p>Its next poll gets a join token: it becomes a member of this cluster.</p>
          <FormGroup label="Node name (empty: its stored name, else pxe-MAC)" fieldId="approve-name">
            <TextInput id="approve-name" value={name} validated={err ? "error" : "default"} onChange={(_e, v) => { setName(v); approve.reset(); }} />
            {err && (
              <FormHelperText>
                <HelperText>
                  <HelperTextItem variant="error">{err}</HelperTextItem>
                </HelperText>
              </FormHelperText>
            )}
          </FormGroup>
        </Form>
      </ModalBody>
      <ModalFooter>
        <Button variant="primary" isDisabled={!!nodeNameError(name) || approve.isPending} isLoading={approve.isPending} onClick={() => approve.mutate()}>
          Approve
        </Button>
        <Button variant="link" onClick={onClose}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}

export default function Pxe() {
  const { name = "" } = useParams();
  const me = useMe();
  const queries = useQueryClient();
  const mayManage = can(me, "pxe:manage");
  const mayApprove = can(me, "cluster:manage");
  const base = `/nodes/${encodeURIComponent(name)}/pxe`;
  const settings = useQuery({ queryKey: ["pxe", name, "settings"], queryFn: () => api.get<PxeSettingsView>(base), enabled: mayManage });
  const machines = useQuery({ queryKey: ["pxe", name, "machines"], queryFn: () => api.get<EnlistedMachine[]>(`${base}/machines`) });
  const [approving, setApproving] = useState<EnlistedMachine | null>(null);
  const [refusing, setRefusing] = useState<EnlistedMachine | null>(null);
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">PXE boot server of {name}</Title>
        <p>
          <Link to={`/nodes/${encodeURIComponent(name)}`}>Node {name}</Link>
          {" · "}
          <Link to={`/nodes/${encodeURIComponent(name)}/network`}>Host network</Link>
        </p>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          <Card>
            <CardTitle component="h2">Machines booted from {name}</CardTitle>
            <CardBody>
              {machines.isPending && <Spinner size="lg" aria-label="Loading machines" />}
              {machines.isError && <Alert variant="danger" isInline title={machines.error.message} />}
              {machines.data && machines.data.length === 0 && <p>No machine has booted from this node yet.</p>}
              {machines.data && machines.data.length > 0 && (
                <Table aria-label="Booted machines" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>MAC</Th>
                      <Th>Name</Th>
                      <Th>Address</Th>
                      <Th>State</Th>
                      <Th>Hardware</Th>
                      <Th>Last seen</Th>
                      <Th screenReaderText="Actions" />
                    </Tr>
                  </Thead>
                  <Tbody>
                    {machines.data.map((m) => {
                      const state = m.enrolment?.state ?? m.state;
                      return (
                        <Tr key={m.mac}>
                          <Td dataLabel="MAC">{m.mac}</Td>
                          <Td dataLabel="Name">{m.name ?? "none"}</Td>
                          <Td dataLabel="Address">{m.ip}</Td>
                          <Td dataLabel="State">
                            <Label isCompact color={state === "pending" ? "orange" : state === "refused" ? "red" : "grey"}>
                              {state}
                            </Label>
                          </Td>
                          <Td dataLabel="Hardware">
                            {m.hardware
                              ? `${m.hardware.vendor} ${m.hardware.product}, ${m.hardware.cpu_count} CPUs, ${bytes(m.hardware.memory_bytes)}`
                              : "not reported"}
                          </Td>
                          <Td dataLabel="Last seen">{timestamp(m.last_seen)}</Td>
                          <Td dataLabel="Actions">
                            {state === "pending" && mayApprove && (
                              <Button size="sm" variant="primary" onClick={() => setApproving(m)}>
                                Approve {m.mac}
                              </Button>
                            )}{" "}
                            {state === "pending" && mayManage && (
                              <Button size="sm" variant="secondary" isDanger onClick={() => setRefusing(m)}>
                                Refuse {m.mac}
                              </Button>
                            )}
                          </Td>
                        </Tr>
                      );
                    })}
                  </Tbody>
                </Table>
              )}
            </CardBody>
          </Card>
          {mayManage && (
            <Card>
              <CardTitle component="h2">Settings</CardTitle>
              <CardBody>
                {settings.isPending && <Spinner size="lg" aria-label="Loading PXE settings" />}
                {settings.isError && <Alert variant="danger" isInline title={settings.error.message} />}
                {settings.data && <Settings key={settingsDocument(settings.data)} node={name} view={settings.data} />}
              </CardBody>
            </Card>
          )}
        </Stack>
      </PageSection>
      {approving && <Approve node={name} machine={approving} onClose={() => setApproving(null)} />}
      {refusing && (
        <TypedConfirm
          title={`Refuse ${refusing.mac}?`}
          text="It stays refused until it is forgotten."
          expected={refusing.mac}
          what="MAC address"
          action="Refuse"
          run={() => api.post(`${base}/machines/${encodeURIComponent(refusing.mac)}/refuse`)}
          onDone={() => void queries.invalidateQueries({ queryKey: ["pxe", name] })}
          onClose={() => setRefusing(null)}
        />
      )}
    </>
  );
}
