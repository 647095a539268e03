// The caller's API tokens (every role manages its own): create one (its secret is shown once,
// with a copy button, and never again), list them with when this node last saw each used,
// and revoke one after typing its name (a destructive action takes a typed confirmation).
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  ActionGroup,
  Alert,
  Button,
  Card,
  CardBody,
  CardTitle,
  ClipboardCopy,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
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
  TextInput,
  Th,
  Thead,
  Title,
  Tr,
} from "../pf";
import { api, ApiProblem } from "../api/client";
import type { Token, TokenCreated, TokensPost } from "../api/types";
import { timestamp } from "../format";

const TOKEN_NAME = /^[\w .:@/-]{1,64}$/; // TokenName in appliance/auth/types.py

export function tokenNameError(name: string): string | undefined {
  if (!name) return undefined;
  if (!TOKEN_NAME.test(name)) return "1 to 64 letters, digits, spaces and . : @ / _ -";
  return undefined;
}

export function expiryError(days: string): string | undefined {
  if (!days) return undefined;
  const n = Number(days);
  if (!Number.isInteger(n) || n < 1 || n > 3650) return "A whole number of days, 1 to 3650 (or empty: never)";
  return undefined;
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

function CreateToken() {
  const queries = useQueryClient();
  const [name, setName] = useState("");
  const [days, setDays] = useState("30");
  const create = useMutation({
    mutationFn: (body: TokensPost) => api.post<TokenCreated>("/tokens", body),
    onSuccess: () => {
      setName("");
      void queries.invalidateQueries({ queryKey: ["tokens"] });
    },
  });
  const problem = create.error instanceof ApiProblem ? create.error : null;
  const nameErr = tokenNameError(name) ?? problem?.fieldError("name");
  const daysErr = expiryError(days) ?? problem?.fieldError("expires_in_seconds");
  const ready = name && !tokenNameError(name) && !expiryError(days);

  function submit(event: FormEvent) {
    event.preventDefault();
    if (ready) create.mutate({ name, expires_in_seconds: days ? Number(days) * 86400 : null });
  }

  return (
    <Stack hasGutter>
      {create.data && (
        <Alert variant="success" component="h3" isInline title={`Token ${create.data.token.name} created`}>
          <p>Copy its secret now: it is shown this once and never again.</p>
          <ClipboardCopy isReadOnly hoverTip="Copy" clickTip="Copied" aria-label="The new token's secret">
            {create.data.secret}
          </ClipboardCopy>
        </Alert>
      )}
      <Form onSubmit={submit} aria-label="Create an API token" isWidthLimited>
        {problem && !nameErr && !daysErr && <Alert variant="danger" component="h3" isInline title={problem.detail} />}
        <FormGroup label="Name" isRequired fieldId="token-name">
          <TextInput
            id="token-name"
            isRequired
            value={name}
            validated={nameErr ? "error" : "default"}
            onChange={(_e, v) => {
              setName(v);
              if (create.isError) create.reset();
            }}
          />
          <Helper error={nameErr} />
        </FormGroup>
        <FormGroup label="Expires after (days)" fieldId="token-days">
          <TextInput
            id="token-days"
            inputMode="numeric"
            value={days}
            validated={daysErr ? "error" : "default"}
            onChange={(_e, v) => setDays(v)}
          />
          <Helper error={daysErr} />
        </FormGroup>
        <ActionGroup>
          <Button type="submit" variant="primary" isDisabled={!ready || create.isPending} isLoading={create.isPending}>
            Create token
          </Button>
        </ActionGroup>
      </Form>
    </Stack>
  );
}

function RevokeToken({ token, onClose }: { token: Token; onClose: () => void }) {
  const queries = useQueryClient();
  const [typed, setTyped] = useState("");
  const revoke = useMutation({
    mutationFn: () => api.delete(`/tokens/${encodeURIComponent(token.id)}`),
    onSuccess: () => {
      void queries.invalidateQueries({ queryKey: ["tokens"] });
      onClose();
    },
  });
  return (
    <Modal isOpen variant="small" onClose={onClose} aria-labelledby="revoke-title">
      <ModalHeader title={`Revoke the token ${token.name}?`} labelId="revoke-title" titleIconVariant="warning" />
      <ModalBody>
        <Form onSubmit={(e) => e.preventDefault()}>
          {revoke.isError && <Alert variant="danger" component="h3" isInline title={revoke.error.message} />}
          <p>Programs using it are refused at once. Type its name to confirm.</p>
          <FormGroup label="Token name" fieldId="revoke-confirm">
            <TextInput id="revoke-confirm" value={typed} onChange={(_e, v) => setTyped(v)} />
          </FormGroup>
        </Form>
      </ModalBody>
      <ModalFooter>
        <Button
          variant="danger"
          isDisabled={typed !== token.name || revoke.isPending}
          isLoading={revoke.isPending}
          onClick={() => revoke.mutate()}
        >
          Revoke
        </Button>
        <Button variant="link" onClick={onClose}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}

export default function Tokens() {
  const tokens = useQuery({ queryKey: ["tokens"], queryFn: () => api.get<Token[]>("/tokens") });
  const [revoking, setRevoking] = useState<Token | null>(null);
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">API tokens</Title>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          <Card>
            <CardTitle component="h2">Your tokens</CardTitle>
            <CardBody>
              {tokens.isPending && <Spinner size="lg" aria-label="Loading tokens" />}
              {tokens.isError && <Alert variant="danger" isInline title={tokens.error.message} />}
              {tokens.data && tokens.data.length === 0 && <p>No tokens yet.</p>}
              {tokens.data && tokens.data.length > 0 && (
                <Table aria-label="API tokens" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>Name</Th>
                      <Th>Role</Th>
                      <Th>Created</Th>
                      <Th>Expires</Th>
                      <Th>Last used here</Th>
                      <Th screenReaderText="Actions" />
                    </Tr>
                  </Thead>
                  <Tbody>
                    {tokens.data.map((token) => (
                      <Tr key={token.id}>
                        <Td dataLabel="Name">{token.name}</Td>
                        <Td dataLabel="Role">{token.role}</Td>
                        <Td dataLabel="Created">{timestamp(token.created_at)}</Td>
                        <Td dataLabel="Expires">{token.expires_at ? timestamp(token.expires_at) : "never"}</Td>
                        <Td dataLabel="Last used here">{token.last_used ? timestamp(token.last_used) : "never"}</Td>
                        <Td dataLabel="Actions">
                          <Button variant="secondary" isDanger size="sm" onClick={() => setRevoking(token)}>
                            Revoke {token.name}
                          </Button>
                        </Td>
                      </Tr>
                    ))}
                  </Tbody>
                </Table>
              )}
            </CardBody>
          </Card>
          <Card>
            <CardTitle component="h2">Create a token</CardTitle>
            <CardBody>
              <CreateToken />
            </CardBody>
          </Card>
        </Stack>
      </PageSection>
      {revoking && <RevokeToken token={revoking} onClose={() => setRevoking(null)} />}
    </>
  );
}
