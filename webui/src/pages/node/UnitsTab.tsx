// A node's systemd units (docs/units.md): the list with filters (type, state, a search over
// names and descriptions, applied here: one request per node, not one per keystroke), kept
// current by `unit` events (./live.ts), and the chosen unit's details, actions and journal.
// A node without a reachable system bus answers 503: that is said plainly, with its reason.
import { useQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router-dom";
import {
  Alert,
  Button,
  Card,
  CardBody,
  CardTitle,
  EmptyState,
  EmptyStateBody,
  FormSelect,
  FormSelectOption,
  Label,
  Spinner,
  Stack,
  Table,
  Tbody,
  Td,
  TextInput,
  Th,
  Thead,
  Toolbar,
  ToolbarContent,
  ToolbarItem,
  Tr,
} from "../../pf";
import { ApiProblem, api } from "../../api/client";
import type { Unit } from "../../api/types";
import { UnitDetailsCard } from "./UnitDetails";
import { ACTIVE_STATES, UNIT_TYPES, filterUnits, stateColor } from "./units";

export function unitsQuery(name: string) {
  return {
    queryKey: ["units", name],
    queryFn: () => api.get<Unit[]>(`/nodes/${encodeURIComponent(name)}/units`),
    // 503 (no system bus) is an answer to show, not a hiccup to retry
    retry: (count: number, error: Error) => !(error instanceof ApiProblem) && count < 2,
  };
}

export function NoBus({ problem }: { problem: ApiProblem }) {
  return (
    <EmptyState titleText="No system bus on this node" headingLevel="h2" status="warning" data-testid="units-no-bus">
      <EmptyStateBody>
        The node cannot reach systemd, so its units cannot be listed or managed here: {problem.detail}. The node keeps
        trying to reconnect; everything else on it works.
      </EmptyStateBody>
    </EmptyState>
  );
}

export default function UnitsTab({ name }: { name: string }) {
  const [params, setParams] = useSearchParams();
  const filter = { type: params.get("type") ?? "", state: params.get("state") ?? "", search: params.get("q") ?? "" };
  const selected = params.get("unit");
  const units = useQuery(unitsQuery(name));
  const set = (key: string, value: string) =>
    setParams(
      (p) => {
        const next = new URLSearchParams(p);
        if (value) next.set(key, value);
        else next.delete(key);
        return next;
      },
      { replace: key === "q" },
    );

  if (units.isError && units.error instanceof ApiProblem && units.error.status === 503) return <NoBus problem={units.error} />;
  const shown = units.data ? filterUnits(units.data, filter) : [];
  return (
    <Stack hasGutter>
      <Card>
        <CardTitle component="h2">Units</CardTitle>
        <CardBody>
          <Toolbar>
            <ToolbarContent>
              <ToolbarItem>
                <FormSelect value={filter.type} onChange={(_e, v) => set("type", v)} aria-label="Unit type">
                  <FormSelectOption value="" label="All types" />
                  {UNIT_TYPES.map((t) => (
                    <FormSelectOption key={t} value={t} label={t} />
                  ))}
                </FormSelect>
              </ToolbarItem>
              <ToolbarItem>
                <FormSelect value={filter.state} onChange={(_e, v) => set("state", v)} aria-label="Active state">
                  <FormSelectOption value="" label="All states" />
                  {ACTIVE_STATES.map((s) => (
                    <FormSelectOption key={s} value={s} label={s} />
                  ))}
                </FormSelect>
              </ToolbarItem>
              <ToolbarItem>
                <TextInput
                  type="search"
                  value={filter.search}
                  onChange={(_e, v) => set("q", v)}
                  aria-label="Search units"
                  placeholder="Search names and descriptions"
                />
              </ToolbarItem>
              {units.data && (
                <ToolbarItem alignSelf="center">
                  {shown.length} of {units.data.length}
                </ToolbarItem>
              )}
            </ToolbarContent>
          </Toolbar>
          {units.isPending && <Spinner size="lg" aria-label="Loading the units" />}
          {units.isError && <Alert variant="danger" isInline title={units.error.message} />}
          {units.data && (
            <div className="dv-units-table">
              <Table aria-label="Units" variant="compact" isStickyHeader>
                <Thead>
                  <Tr>
                    <Th>Unit</Th>
                    <Th>Description</Th>
                    <Th>Load</Th>
                    <Th>Active</Th>
                    <Th>Sub</Th>
                  </Tr>
                </Thead>
                <Tbody>
                  {shown.map((u) => (
                    <Tr key={u.name} isRowSelected={u.name === selected} data-testid={`unit-row-${u.name}`}>
                      <Td dataLabel="Unit">
                        <Button variant="link" isInline onClick={() => set("unit", u.name)}>
                          {u.name}
                        </Button>
                      </Td>
                      <Td dataLabel="Description">{u.description}</Td>
                      <Td dataLabel="Load">{u.load_state}</Td>
                      <Td dataLabel="Active">
                        <Label isCompact color={stateColor(u.active_state)} data-testid={`unit-state-${u.name}`}>
                          {u.active_state}
                        </Label>
                      </Td>
                      <Td dataLabel="Sub">{u.sub_state}</Td>
                    </Tr>
                  ))}
                </Tbody>
              </Table>
            </div>
          )}
        </CardBody>
      </Card>
      {selected && <UnitDetailsCard key={selected} name={name} unit={selected} onClose={() => set("unit", "")} />}
    </Stack>
  );
}
