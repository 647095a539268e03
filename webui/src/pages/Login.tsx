// The login page, and the forced change of an initial (or admin-set) password that follows it
// when the node says so. Validation runs as the user types; a problem the node answers is
// shown next to the field its `$.path` names, or above the form.
import { useState, type FormEvent } from "react";
import {
  ActionGroup,
  Alert,
  Button,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
  Login as LoginLayout,
  LoginHeader,
  LoginMainBody,
  LoginMainHeader,
  TextInput,
  Title,
} from "../pf";
import { ApiProblem } from "../api/client";
import { useSession } from "../session";

export const MIN_PASSWORD = 12;
export const MAX_PASSWORD = 256;

/** What is wrong with a new password as typed (undefined: nothing). */
export function newPasswordError(next: string, current: string): string | undefined {
  if (!next) return undefined;
  if (next.length < MIN_PASSWORD) return `At least ${MIN_PASSWORD} characters (${next.length} so far)`;
  if (next.length > MAX_PASSWORD) return `At most ${MAX_PASSWORD} characters`;
  if (next === current) return "Choose a password other than the current one";
  return undefined;
}

function Field({ error }: { error?: string }) {
  if (!error) return null;
  return (
    <FormHelperText>
      <HelperText>
        <HelperTextItem variant="error">{error}</HelperTextItem>
      </HelperText>
    </FormHelperText>
  );
}

function message(error: unknown): string {
  if (error instanceof ApiProblem) {
    if (error.status === 401) return "Wrong user name or password.";
    if (error.status === 429) return "Too many attempts: wait a moment and try again.";
    return error.detail;
  }
  return "The node could not be reached.";
}

export function LoginForm({ expired }: { expired: boolean }) {
  const session = useSession();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await session.login(username, password);
    } catch (e) {
      setError(message(e));
      setBusy(false);
    }
  }

  return (
    <Form onSubmit={submit} aria-label="Log in">
      {expired && !error && <Alert variant="info" component="h3" isInline isPlain title="Your session ended. Log in to continue." />}
      {error && <Alert variant="danger" component="h3" isInline title={error} />}
      <FormGroup label="User name" isRequired fieldId="login-username">
        <TextInput
          id="login-username"
          name="username"
          autoComplete="username"
          isRequired
          value={username}
          onChange={(_e, v) => setUsername(v)}
        />
      </FormGroup>
      <FormGroup label="Password" isRequired fieldId="login-password">
        <TextInput
          id="login-password"
          name="password"
          type="password"
          autoComplete="current-password"
          isRequired
          value={password}
          onChange={(_e, v) => setPassword(v)}
        />
      </FormGroup>
      <ActionGroup>
        <Button type="submit" variant="primary" isBlock isLoading={busy} isDisabled={busy || !username || !password}>
          Log in
        </Button>
      </ActionGroup>
    </Form>
  );
}

export function ChangePasswordForm({ user, current }: { user: string; current: string }) {
  const session = useSession();
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const nextError = newPasswordError(next, current) ?? problem?.fieldError("new_password");
  const againError = again && again !== next ? "The two passwords differ" : undefined;
  const ready = next.length > 0 && !newPasswordError(next, current) && again === next;

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!ready) return;
    setBusy(true);
    setProblem(null);
    try {
      await session.changePassword(user, current, next);
    } catch (e) {
      setProblem(e instanceof ApiProblem ? e : new ApiProblem(0, { detail: "The node could not be reached." }));
      setBusy(false);
    }
  }

  return (
    <Form onSubmit={submit} aria-label="Change password">
      <Alert variant="warning" component="h3" isInline title={`Choose a new password for ${user}`}>
        This password was set for you: it must be changed before anything else.
      </Alert>
      {problem && !problem.fieldError("new_password") && <Alert variant="danger" component="h3" isInline title={problem.detail} />}
      <FormGroup label="New password" isRequired fieldId="new-password">
        <TextInput
          id="new-password"
          name="new_password"
          type="password"
          autoComplete="new-password"
          isRequired
          validated={nextError ? "error" : "default"}
          value={next}
          onChange={(_e, v) => {
            setNext(v);
            setProblem(null);
          }}
        />
        <Field error={nextError} />
      </FormGroup>
      <FormGroup label="New password again" isRequired fieldId="new-password-again">
        <TextInput
          id="new-password-again"
          name="new_password_again"
          type="password"
          autoComplete="new-password"
          isRequired
          validated={againError ? "error" : "default"}
          value={again}
          onChange={(_e, v) => setAgain(v)}
        />
        <Field error={againError} />
      </FormGroup>
      <ActionGroup>
        <Button type="submit" variant="primary" isBlock isLoading={busy} isDisabled={busy || !ready}>
          Change password and continue
        </Button>
      </ActionGroup>
    </Form>
  );
}

export function Login() {
  const { state } = useSession();
  const changing = state.status === "must-change";
  return (
    <LoginLayout
      header={
        <LoginHeader
          headerBrand={
            <Title headingLevel="h1" size="2xl">
              DebVisor
            </Title>
          }
        />
      }
    >
      <LoginMainHeader
        title={changing ? "Change your password" : "Log in to DebVisor"}
        subtitle={changing ? undefined : "Any node of the cluster answers for all of it."}
      />
      <LoginMainBody>
        {state.status === "must-change" ? (
          <ChangePasswordForm user={state.user} current={state.current} />
        ) : (
          <LoginForm expired={state.status === "anonymous" && state.expired} />
        )}
      </LoginMainBody>
    </LoginLayout>
  );
}
