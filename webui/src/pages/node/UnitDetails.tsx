// One unit: its state and resources, its dependencies, the actions the user may press (none
// for a viewer; on a protected unit, stop and disable only as an admin's forced action, after
// typing the unit's name), and its journal. Refetched when a `unit` event names it.
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  ActionList,
  ActionListItem,
  Alert,
  Button,
  Card,
  CardBody,
  CardHeader,
  CardTitle,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Form,
  FormGroup,
  Label,
  Modal,
  ModalBody,
  ModalFooter,
  ModalHeader,
  Spinner,
  TextInput,
} from "../../pf";
import { api } from "../../api/client";
import type { UnitActionResult, UnitDetails } from "../../api/types";
import { bytes, duration, timestamp } from "../../format";
import { can, useMe } from "../../session";
import { Journal } from "./Journal";
import { stateColor, unitActions, type ActionButton } from "./units";

function Row({ term, children }: { term: string; children: React.ReactNode }) {
  return (
    <DescriptionListGroup>
      <DescriptionListTerm>{term}</DescriptionListTerm>
      <DescriptionListDescription>{children}</DescriptionListDescription>
    </DescriptionListGroup>
  );
}

function ForceModal({
  unit,
  button,
  busy,
  error,
  onConfirm,
  onClose,
}: {
  unit: string;
  button: ActionButton;
  busy: boolean;
  error: Error | null;
  onConfirm: () => void;
  onClose: () => void;
}) {
  const [typed, setTyped] = useState("");
  return (
    <Modal isOpen variant="small" onClose={onClose} aria-labelledby="force-title">
      <ModalHeader title={`Force ${button.action} of ${unit}?`} labelId="force-title" titleIconVariant="warning" />
      <ModalBody>
        <Form onSubmit={(e) => e.preventDefault()}>
          {error && <Alert variant="danger" isInline title={error.message} />}
          <p>
            {unit} is protected: stopping or disabling it can cut operators off from this node. Type the unit's name to
            confirm.
          </p>
          <FormGroup label="Unit name" fieldId="force-confirm">
            <TextInput id="force-confirm" value={typed} onChange={(_e, v) => setTyped(v)} />
          </FormGroup>
        </Form>
      </ModalBody>
      <ModalFooter>
        <Button variant="danger" isDisabled={typed !== unit || busy} isLoading={busy} onClick={onConfirm}>
          Force {button.action}
        </Button>
        <Button variant="link" onClick={onClose}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}

export function UnitDetailsCard({ name, unit, onClose }: { name: string; unit: string; onClose: () => void }) {
  const me = useMe();
  const queries = useQueryClient();
  const path = `/nodes/${encodeURIComponent(name)}/units/${encodeURIComponent(unit)}`;
  const details = useQuery({ queryKey: ["unit", name, unit], queryFn: () => api.get<UnitDetails>(path) });
  const [forcing, setForcing] = useState<ActionButton | null>(null);
  const act = useMutation({
    mutationFn: (b: ActionButton) => api.post<UnitActionResult>(`${path}/${b.action}`, b.force ? { force: true } : {}),
    onSuccess: () => {
      setForcing(null);
      void queries.invalidateQueries({ queryKey: ["unit", name, unit] });
    },
  });
  const d = details.data;
  const buttons = d ? unitActions(me.permissions, d.protected) : [];
  return (
    <Card data-testid="unit-details">
      <CardHeader actions={{ actions: <Button variant="secondary" onClick={onClose}>Close</Button> }}>
        <CardTitle component="h2">
          {unit}{" "}
          {d?.protected && (
            <Label color="purple" isCompact data-testid="unit-protected">
              protected
            </Label>
          )}
        </CardTitle>
      </CardHeader>
      <CardBody>
        {details.isPending && <Spinner size="lg" aria-label="Loading the unit" />}
        {details.isError && <Alert variant="danger" isInline title={details.error.message} />}
        {d && (
          <>
            {buttons.length > 0 && (
              <ActionList className="dv-unit-actions">
                {buttons.map((b) => (
                  <ActionListItem key={b.action}>
                    <Button
                      variant={b.force ? "danger" : "secondary"}
                      isDisabled={act.isPending}
                      isLoading={act.isPending && act.variables?.action === b.action}
                      onClick={() => (b.force ? setForcing(b) : act.mutate(b))}
                      data-testid={`unit-action-${b.action}`}
                    >
                      {b.force ? `Force ${b.action}` : b.action.charAt(0).toUpperCase() + b.action.slice(1)}
                    </Button>
                  </ActionListItem>
                ))}
              </ActionList>
            )}
            {act.isError && !forcing && <Alert variant="danger" isInline title={act.error.message} className="dv-unit-actions" />}
            {act.data && (
              <Alert
                variant={act.data.job_result === "done" || act.data.job_result === "" ? "success" : "warning"}
                isInline
                isPlain
                className="dv-unit-actions"
                title={`${act.data.action}: ${act.data.job_result || "done"} (now ${act.data.active_state}/${act.data.sub_state})`}
              />
            )}
            <DescriptionList isCompact isHorizontal columnModifier={{ lg: "2Col" }} aria-label="Unit details">
              <Row term="Description">{d.description}</Row>
              <Row term="State">
                <Label isCompact color={stateColor(d.active_state)} data-testid="unit-details-state">
                  {d.active_state}
                </Label>{" "}
                {d.sub_state} ({d.load_state})
              </Row>
              <Row term="Unit file">
                {d.unit_file_state || "–"}
                {d.unit_file_preset ? ` (preset ${d.unit_file_preset})` : ""}
              </Row>
              <Row term="Since">{d.since ? timestamp(d.since) : "–"}</Row>
              <Row term="Main PID">{d.main_pid ?? "–"}</Row>
              <Row term="Memory">{d.memory_bytes === null ? "–" : bytes(d.memory_bytes)}</Row>
              <Row term="CPU time">{d.cpu_seconds === null ? "–" : duration(d.cpu_seconds)}</Row>
              <Row term="Tasks">{d.tasks ?? "–"}</Row>
              <Row term="Restarts">{d.restarts ?? "–"}</Row>
              <Row term="Result">{d.result || "–"}</Row>
              <Row term="Fragment">{d.fragment_path || "–"}</Row>
              {d.drop_in_paths.length > 0 && <Row term="Drop-ins">{d.drop_in_paths.join(", ")}</Row>}
              {d.requires.length > 0 && <Row term="Requires">{d.requires.join(", ")}</Row>}
              {d.wants.length > 0 && <Row term="Wants">{d.wants.join(", ")}</Row>}
              {d.wanted_by.length > 0 && <Row term="Wanted by">{d.wanted_by.join(", ")}</Row>}
            </DescriptionList>
          </>
        )}
        {can(me, "journal:read") && <Journal name={name} unit={unit} />}
      </CardBody>
      {forcing && (
        <ForceModal
          unit={unit}
          button={forcing}
          busy={act.isPending}
          error={act.error}
          onConfirm={() => act.mutate(forcing)}
          onClose={() => setForcing(null)}
        />
      )}
    </Card>
  );
}
