// A destructive action's confirmation: the button works only once the name is typed.
import { useState } from "react";
import { useMutation } from "@tanstack/react-query";
import { Alert, Button, Form, FormGroup, Modal, ModalBody, ModalFooter, ModalHeader, TextInput } from "../../pf";

export interface TypedConfirmProps {
  title: string;
  text: string;
  expected: string;
  what: string;
  action: string;
  run: () => Promise<unknown>;
  onDone: () => void;
  onClose: () => void;
}

export function TypedConfirm({ title, text, expected, what, action, run, onDone, onClose }: TypedConfirmProps) {
  const [typed, setTyped] = useState("");
  const go = useMutation({
    mutationFn: run,
    onSuccess: () => {
      onDone();
      onClose();
    },
  });
  return (
    <Modal isOpen variant="small" onClose={onClose} aria-labelledby="typed-confirm-title">
      <ModalHeader title={title} labelId="typed-confirm-title" titleIconVariant="warning" />
      <ModalBody>
        <Form onSubmit={(e) => e.preventDefault()}>
          {go.isError && <Alert variant="danger" component="h3" isInline title={go.error.message} />}
          <p>
            {text} Type <strong>{expected}</strong> to confirm.
          </p>
          <FormGroup label={what} fieldId="typed-confirm">
            <TextInput id="typed-confirm" value={typed} onChange={(_e, v) => setTyped(v)} />
          </FormGroup>
        </Form>
      </ModalBody>
      <ModalFooter>
        <Button variant="danger" isDisabled={typed !== expected || go.isPending} isLoading={go.isPending} onClick={() => go.mutate()}>
          {action}
        </Button>
        <Button variant="link" onClick={onClose}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}
