// Reboot or power off a node (docs/operating.md#rebooting-and-powering-off-a-node): admins
// only (`node:power`; nobody else sees the button), with a reason and the node's name typed
// back, checked as typed; the node's own answer (a problem on a field) shows next to it.
import { useState } from "react";
import { useMutation } from "@tanstack/react-query";
import {
  Alert,
  Button,
  Form,
  FormGroup,
  FormHelperText,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  Modal,
  ModalBody,
  ModalFooter,
  ModalHeader,
  TextInput,
} from "../../pf";
import { ApiProblem, api } from "../../api/client";
import type { PowerAccepted, PowerPost } from "../../api/types";

export function reasonError(reason: string): string | undefined {
  if (reason.length > 200) return "At most 200 characters";
  return undefined;
}

export function powerReady(name: string, body: PowerPost): boolean {
  return body.confirm === name && body.reason.trim().length > 0 && !reasonError(body.reason);
}

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

function PowerModal({ name, onClose }: { name: string; onClose: () => void }) {
  const [body, setBody] = useState<PowerPost>({ action: "reboot", reason: "", confirm: "" });
  const power = useMutation({
    mutationFn: () => api.post<PowerAccepted>(`/nodes/${encodeURIComponent(name)}/power`, body),
  });
  const problem = power.error instanceof ApiProblem ? power.error : null;
  const verb = body.action === "reboot" ? "Reboot" : "Power off";
  return (
    <Modal isOpen variant="small" onClose={onClose} aria-labelledby="power-title">
      <ModalHeader title={`Reboot or power off ${name}`} labelId="power-title" titleIconVariant="warning" />
      <ModalBody>
        {power.data ? (
          <Alert variant="success" isInline title={`${name} is going down (${power.data.target})`} data-testid="power-done">
            It left the cluster; systemd queued {power.data.job}.
          </Alert>
        ) : (
          <Form onSubmit={(e) => e.preventDefault()}>
            {power.isError && !problem?.fieldError("reason") && !problem?.fieldError("confirm") && (
              <Alert variant="danger" isInline title={power.error.message} />
            )}
            <FormGroup label="Action" fieldId="power-action">
              <FormSelect
                id="power-action"
                value={body.action}
                onChange={(_e, v) => setBody({ ...body, action: v === "poweroff" ? "poweroff" : "reboot" })}
              >
                <FormSelectOption value="reboot" label="Reboot" />
                <FormSelectOption value="poweroff" label="Power off" />
              </FormSelect>
            </FormGroup>
            <FormGroup label="Reason" fieldId="power-reason" isRequired>
              <TextInput
                id="power-reason"
                isRequired
                value={body.reason}
                validated={reasonError(body.reason) || problem?.fieldError("reason") ? "error" : "default"}
                onChange={(_e, v) => setBody({ ...body, reason: v })}
              />
              <Helper error={reasonError(body.reason) ?? problem?.fieldError("reason")} />
            </FormGroup>
            <FormGroup label={`Type ${name} to confirm`} fieldId="power-confirm" isRequired>
              <TextInput
                id="power-confirm"
                isRequired
                value={body.confirm}
                validated={body.confirm && body.confirm !== name ? "error" : "default"}
                onChange={(_e, v) => setBody({ ...body, confirm: v })}
              />
              <Helper
                error={body.confirm && body.confirm !== name ? `Not ${name}` : problem?.fieldError("confirm")}
              />
            </FormGroup>
          </Form>
        )}
      </ModalBody>
      <ModalFooter>
        {!power.data && (
          <Button
            variant="danger"
            isDisabled={!powerReady(name, body) || power.isPending}
            isLoading={power.isPending}
            onClick={() => power.mutate()}
          >
            {verb}
          </Button>
        )}
        <Button variant="link" onClick={onClose}>
          {power.data ? "Close" : "Cancel"}
        </Button>
      </ModalFooter>
    </Modal>
  );
}

export function PowerButton({ name }: { name: string }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <Button variant="danger" onClick={() => setOpen(true)} data-testid="power-open">
        Reboot or power off…
      </Button>
      {open && <PowerModal name={name} onClose={() => setOpen(false)} />}
    </>
  );
}
