// Joining and sessions: create a single-use join token (admins; shown once, with the
// `debvisor serve --join` command and the `debvisor.join=` kernel argument to copy), and the
// caller's own sessions on this node (the API lists only one's own), each revocable after
// typing its id. The API has no list or revoke of join tokens: they expire on their own.
import { useState } from "react";
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
} from "../../pf";
import { api } from "../../api/client";
import type { JoinTokenCreated, SessionInfo } from "../../api/network-types";
import { timestamp } from "../../format";
import { can, useMe } from "../../session";
import { joinInstructions } from "./logic";
import { TypedConfirm } from "./TypedConfirm";

export function ttlError(hours: string): string | undefined {
  const n = Number(hours);
  if (!/^\d+$/.test(hours) || n < 1 || n > 24 * 7) return "Whole hours, 1 to 168";
  return undefined;
}

function JoinToken() {
  const [hours, setHours] = useState("3");
  const create = useMutation({
    mutationFn: () => api.post<JoinTokenCreated>("/cluster/join-tokens", { ttl_seconds: Number(hours) * 3600 }),
  });
  const err = ttlError(hours) ?? create.error?.message;
  const made = create.data ? joinInstructions(create.data.token) : null;
  return (
    <Stack hasGutter>
      {create.data && made && (
        <Alert variant="success" isInline component="h3" title={`Join token ${create.data.id} created, valid until ${timestamp(create.data.expires_at)}`}>
          <Stack hasGutter>
            <p>It is shown this once and lets one machine join. On the new machine run:</p>
            <ClipboardCopy isReadOnly hoverTip="Copy" clickTip="Copied" aria-label="The join command" textAriaLabel="The join command">
              {made.command}
            </ClipboardCopy>
            <p>or boot the image with the kernel argument:</p>
            <ClipboardCopy isReadOnly hoverTip="Copy" clickTip="Copied" aria-label="The kernel argument" textAriaLabel="The kernel argument">
              {made.kernel}
            </ClipboardCopy>
          </Stack>
        </Alert>
      )}
      <Form
        isWidthLimited
        aria-label="Create a join token"
        onSubmit={(e) => {
          e.preventDefault();
          if (!ttlError(hours)) create.mutate();
        }}
      >
        <FormGroup label="Valid for (hours)" fieldId="join-hours">
          <TextInput id="join-hours" inputMode="numeric" value={hours} validated={err ? "error" : "default"} onChange={(_e, v) => { setHours(v); create.reset(); }} />
          {err && (
            <FormHelperText>
              <HelperText>
                <HelperTextItem variant="error">{err}</HelperTextItem>
              </HelperText>
            </FormHelperText>
          )}
        </FormGroup>
        <ActionGroup>
          <Button type="submit" variant="primary" isDisabled={!!ttlError(hours) || create.isPending} isLoading={create.isPending}>
            Create join token
          </Button>
        </ActionGroup>
      </Form>
    </Stack>
  );
}

function Sessions() {
  const queries = useQueryClient();
  const sessions = useQuery({ queryKey: ["sessions"], queryFn: () => api.get<SessionInfo[]>("/auth/sessions") });
  const [ending, setEnding] = useState<SessionInfo | null>(null);
  return (
    <>
      {sessions.isPending && <Spinner size="lg" aria-label="Loading sessions" />}
      {sessions.isError && <Alert variant="danger" isInline title={sessions.error.message} />}
      {sessions.data && (
        <Table aria-label="Your sessions" variant="compact">
          <Thead>
            <Tr>
              <Th>Session</Th>
              <Th>From</Th>
              <Th>Browser or client</Th>
              <Th>Started</Th>
              <Th>Last seen</Th>
              <Th screenReaderText="Actions" />
            </Tr>
          </Thead>
          <Tbody>
            {sessions.data.map((s) => (
              <Tr key={s.id}>
                <Td dataLabel="Session">
                  {s.id.slice(0, 8)} {s.current && <Label isCompact color="blue">this one</Label>}
                </Td>
                <Td dataLabel="From">{s.source}</Td>
                <Td dataLabel="Browser or client">{s.user_agent}</Td>
                <Td dataLabel="Started">{timestamp(s.created_at)}</Td>
                <Td dataLabel="Last seen">{timestamp(s.last_seen)}</Td>
                <Td dataLabel="Actions">
                  {!s.current && (
                    <Button variant="secondary" isDanger size="sm" onClick={() => setEnding(s)}>
                      End session {s.id.slice(0, 8)}
                    </Button>
                  )}
                </Td>
              </Tr>
            ))}
          </Tbody>
        </Table>
      )}
      {ending && (
        <TypedConfirm
          title={`End the session ${ending.id.slice(0, 8)}?`}
          text="Whoever uses it is logged out at once."
          expected={ending.id.slice(0, 8)}
          what="Session"
          action="End session"
          run={() => api.delete(`/auth/sessions/${encodeURIComponent(ending.id)}`)}
          onDone={() => void queries.invalidateQueries({ queryKey: ["sessions"] })}
          onClose={() => setEnding(null)}
        />
      )}
    </>
  );
}

export default function Access() {
  const me = useMe();
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Join tokens and sessions</Title>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          {can(me, "cluster:manage") && (
            <Card>
              <CardTitle component="h2">Add a node: a join token</CardTitle>
              <CardBody>
                <JoinToken />
              </CardBody>
            </Card>
          )}
          <Card>
            <CardTitle component="h2">Your sessions on this node</CardTitle>
            <CardBody>
              <Sessions />
            </CardBody>
          </Card>
        </Stack>
      </PageSection>
    </>
  );
}
