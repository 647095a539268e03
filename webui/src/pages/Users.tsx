// The cluster's accounts (admins only: users:manage), and a form to create one. The form
// checks as it is typed; a problem the node answers is shown next to the field it names.
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
  FormSelect,
  FormSelectOption,
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
} from "../pf";
import { api, ApiProblem } from "../api/client";
import type { Role, User, UsersPost } from "../api/types";
import { timestamp } from "../format";
import { MAX_PASSWORD, MIN_PASSWORD } from "./Login";

const ROLES: Role[] = ["viewer", "operator", "developer", "admin"];
const NAME = /^[a-z_][a-z0-9_.-]{0,31}$/; // the API's USER_NAME (appliance/auth/types.py)

export function userNameError(name: string): string | undefined {
  if (!name) return undefined;
  if (!NAME.test(name)) return "Lower-case letters, digits, '.', '_' and '-', starting with a letter or '_' (at most 32)";
  return undefined;
}

export function passwordError(password: string): string | undefined {
  if (!password) return undefined;
  if (password.length < MIN_PASSWORD) return `At least ${MIN_PASSWORD} characters (${password.length} so far)`;
  if (password.length > MAX_PASSWORD) return `At most ${MAX_PASSWORD} characters`;
  return undefined;
}

function Helper({ error, hint }: { error?: string; hint?: string }) {
  if (!error && !hint) return null;
  return (
    <FormHelperText>
      <HelperText>
        <HelperTextItem variant={error ? "error" : "default"}>{error ?? hint}</HelperTextItem>
      </HelperText>
    </FormHelperText>
  );
}

function CreateUser() {
  const queries = useQueryClient();
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const [password, setPassword] = useState("");
  const create = useMutation({
    mutationFn: (body: UsersPost) => api.post<User>("/users", body),
    onSuccess: () => {
      setName("");
      setPassword("");
      void queries.invalidateQueries({ queryKey: ["users"] });
    },
  });
  const problem = create.error instanceof ApiProblem ? create.error : null;
  const nameError = userNameError(name) ?? problem?.fieldError("name");
  const passwordErr = passwordError(password) ?? problem?.fieldError("password");
  const ready = name && password && !userNameError(name) && !passwordError(password);

  function submit(event: FormEvent) {
    event.preventDefault();
    if (ready) create.mutate({ name, role, password, enabled: true });
  }

  return (
    <Form onSubmit={submit} aria-label="Create a user" isWidthLimited>
      {problem && !problem.fieldError("name") && !problem.fieldError("password") && (
        <Alert variant="danger" component="h3" isInline title={problem.detail} />
      )}
      {create.isSuccess && (
        <Alert variant="success" component="h3" isInline title={`User ${create.data.name} created`} />
      )}
      <FormGroup label="Name" isRequired fieldId="user-name">
        <TextInput
          id="user-name"
          isRequired
          value={name}
          validated={nameError ? "error" : "default"}
          onChange={(_e, v) => {
            setName(v);
            create.reset();
          }}
        />
        <Helper error={nameError} />
      </FormGroup>
      <FormGroup label="Role" isRequired fieldId="user-role">
        <FormSelect id="user-role" value={role} onChange={(_e, v) => setRole(v as Role)}>
          {ROLES.map((r) => (
            <FormSelectOption key={r} value={r} label={r} />
          ))}
        </FormSelect>
      </FormGroup>
      <FormGroup label="Initial password" isRequired fieldId="user-password">
        <TextInput
          id="user-password"
          type="password"
          autoComplete="new-password"
          isRequired
          value={password}
          validated={passwordErr ? "error" : "default"}
          onChange={(_e, v) => {
            setPassword(v);
            create.reset();
          }}
        />
        <Helper error={passwordErr} hint="Give it to them by a safe channel; they can change it after logging in." />
      </FormGroup>
      <ActionGroup>
        <Button type="submit" variant="primary" isDisabled={!ready || create.isPending} isLoading={create.isPending}>
          Create user
        </Button>
      </ActionGroup>
    </Form>
  );
}

export default function Users() {
  const users = useQuery({ queryKey: ["users"], queryFn: () => api.get<User[]>("/users") });
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Users</Title>
      </PageSection>
      <PageSection>
        <Stack hasGutter>
          <Card>
            <CardTitle component="h2">Accounts</CardTitle>
            <CardBody>
              {users.isPending && <Spinner size="lg" aria-label="Loading users" />}
              {users.isError && <Alert variant="danger" isInline title={users.error.message} />}
              {users.data && (
                <Table aria-label="Users" variant="compact">
                  <Thead>
                    <Tr>
                      <Th>Name</Th>
                      <Th>Role</Th>
                      <Th>State</Th>
                      <Th>Created</Th>
                    </Tr>
                  </Thead>
                  <Tbody>
                    {users.data.map((user) => (
                      <Tr key={user.name}>
                        <Td dataLabel="Name">{user.name}</Td>
                        <Td dataLabel="Role">{user.role}</Td>
                        <Td dataLabel="State">
                          {!user.enabled && (
                            <Label color="red" isCompact>
                              disabled
                            </Label>
                          )}
                          {user.must_change_password && (
                            <Label color="orange" isCompact>
                              must change password
                            </Label>
                          )}
                          {user.enabled && !user.must_change_password && (
                            <Label color="green" isCompact>
                              active
                            </Label>
                          )}
                        </Td>
                        <Td dataLabel="Created">{timestamp(user.created_at)}</Td>
                      </Tr>
                    ))}
                  </Tbody>
                </Table>
              )}
            </CardBody>
          </Card>
          <Card>
            <CardTitle component="h2">Create a user</CardTitle>
            <CardBody>
              <CreateUser />
            </CardBody>
          </Card>
        </Stack>
      </PageSection>
    </>
  );
}
