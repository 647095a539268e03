// A node's description and labels. The API writes them only on the node that answers
// (`PUT /api/v1/node`), so they are editable here for the node this page is served by; for
// another node the page shows them (from its facts) and links to that node's own console.
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "react-router-dom";
import {
  ActionGroup,
  Alert,
  Button,
  Card,
  CardBody,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
  PageSection,
  Spinner,
  TextArea,
  TextInput,
  Title,
} from "../../pf";
import { api, ApiProblem } from "../../api/client";
import type { Node } from "../../api/types";
import { can, useMe } from "../../session";
import { labelsText, parseLabels } from "./logic";
import "./network.css";

function Editor({ node, mayWrite }: { node: Node; mayWrite: boolean }) {
  const queries = useQueryClient();
  const [description, setDescription] = useState(node.description);
  const [text, setText] = useState(labelsText(node.labels));
  const parsed = parseLabels(text);
  const save = useMutation({
    mutationFn: () => api.put<Node>("/node", { description, labels: parsed.labels }),
    onSuccess: () => void queries.invalidateQueries({ queryKey: ["node", node.name] }),
  });
  const problem = save.error instanceof ApiProblem ? save.error : null;
  const descErr = description.length > 256 ? "At most 256 characters" : problem?.fieldError("description");
  const labelErrs = [
    ...parsed.errors.map((e) => `Line ${e.line}: ${e.message}`),
    ...(problem?.errors ?? []).filter((e) => e.path.startsWith("$.labels")).map((e) => `${e.path}: ${e.message}`),
  ];
  return (
    <Form onSubmit={(e) => { e.preventDefault(); if (!labelErrs.length && !descErr) save.mutate(); }} aria-label="Labels and description">
      {save.isSuccess && <Alert variant="success" isInline component="h3" title="Saved" />}
      {problem && !descErr && labelErrs.length === 0 && <Alert variant="danger" isInline component="h3" title={problem.detail} />}
      <FormGroup label="Description" fieldId="node-description">
        <TextInput id="node-description" value={description} readOnlyVariant={mayWrite ? undefined : "default"} validated={descErr ? "error" : "default"} onChange={(_e, v) => { setDescription(v); save.reset(); }} />
        {descErr && (
          <FormHelperText>
            <HelperText>
              <HelperTextItem variant="error">{descErr}</HelperTextItem>
            </HelperText>
          </FormHelperText>
        )}
      </FormGroup>
      <FormGroup label="Labels (one key=value a line)" fieldId="node-labels">
        <TextArea id="node-labels" className="dv-mono" value={text} rows={Math.max(4, text.split("\n").length + 1)} readOnlyVariant={mayWrite ? undefined : "default"} validated={labelErrs.length ? "error" : "default"} onChange={(_e, v) => { setText(v); save.reset(); }} />
        <FormHelperText>
          <HelperText aria-live="polite">
            {labelErrs.map((m) => (
              <HelperTextItem key={m} variant="error">{m}</HelperTextItem>
            ))}
          </HelperText>
        </FormHelperText>
      </FormGroup>
      {mayWrite && (
        <ActionGroup>
          <Button type="submit" variant="primary" isDisabled={labelErrs.length > 0 || !!descErr || save.isPending} isLoading={save.isPending}>
            Save
          </Button>
        </ActionGroup>
      )}
    </Form>
  );
}

export default function NodeLabels() {
  const { name = "" } = useParams();
  const me = useMe();
  const node = useQuery({ queryKey: ["node", name], queryFn: () => api.get<Node>(`/nodes/${encodeURIComponent(name)}`) });
  const here = useQuery({ queryKey: ["node", "(this)"], queryFn: () => api.get<Node>("/node") });
  const local = here.data?.name === name;
  return (
    <>
      <PageSection>
        <Title headingLevel="h1">Labels and description of {name}</Title>
        <p>
          <Link to={`/nodes/${encodeURIComponent(name)}`}>Node {name}</Link>
        </p>
      </PageSection>
      <PageSection>
        <Card>
          <CardBody>
            {(node.isPending || here.isPending) && <Spinner size="lg" aria-label="Loading the node" />}
            {node.isError && <Alert variant="danger" isInline title={node.error.message} />}
            {node.data && here.data && !local && (
              <Alert variant="info" isInline component="h2" title={`Edited on ${name}'s own console`}>
                The API writes a node's labels only on that node: open this page at {name}&apos;s own address.
              </Alert>
            )}
            {node.data && here.data && <Editor key={JSON.stringify([node.data.description, node.data.labels])} node={node.data} mayWrite={local && can(me, "node:write")} />}
          </CardBody>
        </Card>
      </PageSection>
    </>
  );
}
