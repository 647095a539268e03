// Cluster-wide overlay (VXLAN) networks: every node builds each one. List, create (validated
// as typed, a problem shown next to the field its `$.path` names), delete after typing the
// name. Live from `config` events of kind network/overlay (key ["networks"]).
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
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
} from "../../pf";
import { api, ApiProblem } from "../../api/client";
import type { Overlay, OverlaysPost } from "../../api/network-types";
import type { ClusterSummary } from "../../api/types";
import { Link } from "react-router-dom";
import { can, useMe } from "../../session";
import { TypedConfirm } from "./TypedConfirm";
import { overlayErrors, type OverlayForm } from "./logic";

function Helper({ error }: { error?: string }) {
  if (!error) return null;
  return (
    <FormHelperText>
      <HelperText>
        <HelperTextItem variant="error">{error}</HelperTextItem>
      </HelperText>
    </FormHelperText>
  );
}

const EMPTY: OverlayForm = { name: "", vni: "", bridge: "", mtu: "1450", underlay: "" };
const LABELS: Record<keyof OverlayForm, string> = {
  name: "Name",
  vni: "VNI (1 to 16777215)",
  bridge: "Bridge (each node creates it)",
  mtu: "MTU",
  underlay: "Underlay network (CIDR; empty: the gossip address)",
};

function CreateOverlay() {
  const queries = useQueryClient();
  const [form, setForm] = useState<OverlayForm>(EMPTY);
  const create = useMutation({
    mutationFn: (body: OverlaysPost) => api.post<Overlay>("/networks", body),
    onSuccess: () => {
      setForm(EMPTY);
      void queries.invalidateQueries({ queryKey: ["networks"] });
    },
  });
  const problem = create.error instanceof ApiProblem ? create.error : null;
  const local = overlayErrors(form);
  const errorOf = (field: keyof OverlayForm) => local[field] ?? problem?.fieldError(field);
  const fieldErrors = (Object.keys(LABELS) as (keyof OverlayForm)[]).some((f) => errorOf(f));
  const ready = form.name && form.vni && form.bridge && Object.keys(local).length === 0;

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!ready) return;
    create.mutate({
      name: form.name,
      vni: Number(form.vni),
      bridge: form.bridge,
      mtu: Number(form.mtu || "1450"),
      port: 4789,
      underlay: form.underlay || null,
    });
  }

  return (
    <Form onSubmit={submit} aria-label="Create an overlay network" isWidthLimited>
      {problem && !fieldErrors && <Alert variant="danger" component="h3" isInline title={problem.detail} />}
      {(Object.keys(LABELS) as (keyof OverlayForm)[]).map((field) => (
        <FormGroup key={field} label={LABELS[field]} isRequired={field === "name" || field === "vni" || field === "bridge"} fieldId={`overlay-${field}`}>
          <TextInput
            id={`overlay-${field}`}
            value={form[field]}
            validated={errorOf(field) ? "error" : "default"}
            onChange={(_e, v) => {
              setForm({ ...form, [field]: v });
              if (create.isError) create.reset();
            }}
          />
          <Helper error={errorOf(field)} />
        </FormGroup>
      ))}
      <ActionGroup>
        <Button type="submit" variant="primary" isDisabled={!ready || create.isPending} isLoading={create.isPending}>
          Create overlay network
        </Button>
      </ActionGroup>
    </Form>
  );
}

/** Each member's host network and PXE pages (the cluster summary the dashboard also reads). */
function NodeLinks() {
  const me = useMe();
  const cluster = useQuery({ queryKey: ["cluster"], queryFn: () => api.get<ClusterSummary>("/cluster") });
  if (!cluster.data) return cluster.isError ? <Alert variant="danger" isInline title={cluster.error.message} /> : null;
  return (
    <Table aria-label="Nodes' networking" variant="compact">
      <Thead>
        <Tr>
          <Th>Node</Th>
          <Th>State</Th>
          <Th screenReaderText="Pages" />
        </Tr>
      </Thead>
      <Tbody>
        {cluster.data.members.map((m) => (
          <Tr key={m.name}>
            <Td dataLabel="Node">{m.name}</Td>
            <Td dataLabel="State">{m.state}</Td>
            <Td dataLabel="Pages">
              <Link to={`/nodes/${encodeURIComponent(m.name)}/network`}>Host network of {m.name}</Link>
              {" · "}
              <Link to={`/nodes/${encodeURIComponent(m.name)}/labels`}>Labels of {m.name}</Link>
              {can(me, "pxe:manage") && (
                <>
                  {" · "}
                  <Link to={`/nodes/${encodeURIComponent(m.name)}/pxe`}>PXE of {m.name}</Link>
                </>
              )}
            </Td>
          </Tr>
        ))}
      </Tbody>
    </Table>
  );
}

export default function Overlays() {
  const me = useMe();
  const mayManage = can(me, "network:manage");
  const queries = useQueryClient();
  const overlays = useQuery({ queryKey: ["networks"], queryFn: () => api.get<Overlay[]>("/networks") });
  const [deleting, setDeleting] = useState<Overlay | null>(null);
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Networking</Title>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          <Card>
            <CardTitle component="h2">Nodes</CardTitle>
            <CardBody>
              <NodeLinks />
            </CardBody>
          </Card>
          <Card>
            <CardTitle component="h2">Overlay networks</CardTitle>
            <CardBody>
              {overlays.isPending && <Spinner size="lg" aria-label="Loading overlay networks" />}
              {overlays.isError && <Alert variant="danger" isInline title={overlays.error.message} />}
              {overlays.data && overlays.data.length === 0 && <p>No overlay networks yet.</p>}
              {overlays.data && overlays.data.length > 0 && (
                <Table aria-label="Overlay networks" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>Name</Th>
                      <Th>VNI</Th>
                      <Th>Bridge</Th>
                      <Th>VXLAN device</Th>
                      <Th>MTU</Th>
                      <Th>Underlay</Th>
                      {mayManage && <Th screenReaderText="Actions" />}
                    </Tr>
                  </Thead>
                  <Tbody>
                    {overlays.data.map((o) => (
                      <Tr key={o.name}>
                        <Td dataLabel="Name">{o.name}</Td>
                        <Td dataLabel="VNI">{o.vni}</Td>
                        <Td dataLabel="Bridge">{o.bridge}</Td>
                        <Td dataLabel="VXLAN device">{o.vxlan}</Td>
                        <Td dataLabel="MTU">{o.mtu}</Td>
                        <Td dataLabel="Underlay">{o.underlay ?? "gossip address"}</Td>
                        {mayManage && (
                          <Td dataLabel="Actions">
                            <Button variant="secondary" isDanger size="sm" onClick={() => setDeleting(o)}>
                              Delete {o.name}
                            </Button>
                          </Td>
                        )}
                      </Tr>
                    ))}
                  </Tbody>
                </Table>
              )}
            </CardBody>
          </Card>
          {mayManage && (
            <Card>
              <CardTitle component="h2">Create an overlay network</CardTitle>
              <CardBody>
                <CreateOverlay />
              </CardBody>
            </Card>
          )}
        </Stack>
      </PageSection>
      {deleting && (
        <TypedConfirm
          title={`Delete the overlay network ${deleting.name}?`}
          text="Every node removes its bridge and VXLAN device; guests attached to it lose that network."
          expected={deleting.name}
          what="Network name"
          action="Delete"
          run={() => api.delete(`/networks/${encodeURIComponent(deleting.name)}`)}
          onDone={() => void queries.invalidateQueries({ queryKey: ["networks"] })}
          onClose={() => setDeleting(null)}
        />
      )}
    </>
  );
}
