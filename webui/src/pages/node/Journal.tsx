// A unit's journal (docs/journal.md): the newest page, and with Follow on, one WebSocket to
// .../journal/follow that resumes after the last entry shown and appends each new one.
import { useEffect, useRef, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Alert, Button, Flex, FlexItem, Spinner, Switch, Title } from "../../pf";
import { api } from "../../api/client";
import type { JournalEntry, JournalPage } from "../../api/types";
import { entryOf, followUrl, journalLine, mergeEntries, priorityClass } from "./journal";

export function Journal({ name, unit }: { name: string; unit: string }) {
  const page = useQuery({
    queryKey: ["journal", name, unit],
    queryFn: () => api.get<JournalPage>(`/nodes/${encodeURIComponent(name)}/journal`, { query: { unit, limit: 100 } }),
  });
  const [entries, setEntries] = useState<JournalEntry[]>([]);
  const [follow, setFollow] = useState(false);
  const [status, setStatus] = useState<string | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const lastCursor = useRef<string | undefined>(undefined);

  useEffect(() => {
    if (page.data) setEntries((shown) => mergeEntries(shown, page.data.entries));
  }, [page.data]);
  useEffect(() => {
    lastCursor.current = entries[entries.length - 1]?.cursor;
    const el = box.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [entries]);

  useEffect(() => {
    if (!follow) return undefined;
    const socket = new WebSocket(followUrl(window.location, name, unit, lastCursor.current));
    setStatus("connecting");
    socket.onopen = () => setStatus("following");
    socket.onmessage = (m: MessageEvent) => {
      if (typeof m.data !== "string") return;
      const entry = entryOf(m.data);
      if (entry) setEntries((shown) => mergeEntries(shown, [entry]));
    };
    socket.onclose = (c: CloseEvent) => setStatus(c.code === 1000 ? null : `stopped (${c.code}${c.reason ? `: ${c.reason}` : ""})`);
    return () => {
      socket.onclose = null;
      socket.close(1000);
      setStatus(null);
    };
  }, [follow, name, unit]);

  return (
    <div className="dv-journal-block" data-testid="journal">
      <Flex alignItems={{ default: "alignItemsCenter" }}>
        <FlexItem>
          <Title headingLevel="h3">Journal</Title>
        </FlexItem>
        <FlexItem>
          <Switch id="journal-follow" label="Follow" isChecked={follow} onChange={(_e, v) => setFollow(v)} />
        </FlexItem>
        {status && <FlexItem data-testid="journal-status">{status}</FlexItem>}
        <FlexItem>
          <Button variant="link" isInline onClick={() => void page.refetch()}>
            Reload
          </Button>
        </FlexItem>
      </Flex>
      {page.isPending && <Spinner size="md" aria-label="Loading the journal" />}
      {page.isError && <Alert variant="warning" isInline title={`No journal: ${page.error.message}`} />}
      {page.data && (
        <div ref={box} className="dv-journal" role="log" aria-label={`Journal of ${unit}`} tabIndex={0}>
          {entries.length === 0 ? (
            <div>No entries.</div>
          ) : (
            entries.map((e) => (
              <div key={e.cursor} className={priorityClass(e.priority)}>
                {journalLine(e)}
              </div>
            ))
          )}
        </div>
      )}
    </div>
  );
}
