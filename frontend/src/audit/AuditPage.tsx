import { Alert, Anchor, Button, Card, Group, Select, Stack, Table, Tabs, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { Link, Route, Routes, useParams, useSearchParams } from "react-router";
import { api, V1, withQuery, type Page } from "../api/client";
import type { AuditEvent, QuarantinedRecord, VerificationReport } from "../api/types";
import { useSession } from "../auth/session";
import { Empty, Failure, QueryState } from "../components/states";
import { Pager, StatusBadge, when } from "../components/widgets";
import { chainLinks } from "./chain";

const LIMIT = 25;

export function AuditPage() {
  return (
    <Routes>
      <Route index element={<AuditHome />} />
      <Route path="sessions/:agent/:session" element={<SessionTimeline />} />
    </Routes>
  );
}

function AuditHome() {
  const [params, setParams] = useSearchParams();
  const tab = params.get("tab") ?? "events";
  return (
    <Stack>
      <Title order={1} size="h2">Audit</Title>
      <Tabs value={tab} onChange={(value) => setParams(value ? { tab: value } : {}, { replace: true })}>
        <Tabs.List>
          <Tabs.Tab value="events">Events</Tabs.Tab>
          <Tabs.Tab value="verify">Verify</Tabs.Tab>
          <Tabs.Tab value="quarantine">Quarantine</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="events" pt="md"><Events /></Tabs.Panel>
        <Tabs.Panel value="verify" pt="md"><Verify /></Tabs.Panel>
        <Tabs.Panel value="quarantine" pt="md"><Quarantine /></Tabs.Panel>
      </Tabs>
    </Stack>
  );
}

function Events() {
  const [params, setParams] = useSearchParams();
  const filter = (key: string) => params.get(key) ?? "";
  const set = (key: string, value: string | null) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    if (key !== "offset") next.delete("offset");
    setParams(next, { replace: true });
  };
  const [search] = useDebouncedValue(filter("search"), 250);
  const query = { search, agent: filter("agent"), session: filter("session"), kind: filter("kind"), effect: filter("effect"), tool: filter("tool"), rule: filter("rule"), time_after: filter("time_after") };
  const offset = Number(filter("offset") || 0);
  const events = useQuery({
    queryKey: ["events", query, offset],
    queryFn: () => api.get<Page<AuditEvent>>(`${V1}/audit/events/`, { ...query, limit: LIMIT, offset, ordering: "-time,-id" }),
    placeholderData: keepPreviousData,
  });
  return (
    <Stack>
      <Group align="flex-end" wrap="wrap">
        <TextInput label="Search" value={filter("search")} onChange={(e) => set("search", e.currentTarget.value)} />
        <TextInput label="Agent" value={filter("agent")} onChange={(e) => set("agent", e.currentTarget.value)} />
        <TextInput label="Session" value={filter("session")} onChange={(e) => set("session", e.currentTarget.value)} />
        <TextInput label="Tool" value={filter("tool")} onChange={(e) => set("tool", e.currentTarget.value)} />
        <TextInput label="Rule" value={filter("rule")} onChange={(e) => set("rule", e.currentTarget.value)} />
        <Select label="Kind" clearable data={["intent", "decision", "result", "output", "error"]} value={filter("kind") || null} onChange={(v) => set("kind", v)} />
        <Select label="Effect" clearable data={["allow", "deny", "require_approval"]} value={filter("effect") || null} onChange={(v) => set("effect", v)} />
      </Group>
      <QueryState query={events} what="events">
        {(page) => page.count === 0 ? <Empty title="No event matches">Change the filters; agents' records arrive when their shippers send batches.</Empty> : (
          <>
            <Table.ScrollContainer minWidth={800}>
              <Table striped>
                <Table.Thead><Table.Tr><Table.Th>Time</Table.Th><Table.Th>Agent</Table.Th><Table.Th>Session</Table.Th><Table.Th>Seq</Table.Th><Table.Th>Kind</Table.Th><Table.Th>Tool</Table.Th><Table.Th>Effect</Table.Th><Table.Th>Status</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {page.results.map((event) => (
                    <Table.Tr key={event.id}>
                      <Table.Td>{when(event.time)}</Table.Td>
                      <Table.Td>{event.agent}</Table.Td>
                      <Table.Td><Anchor component={Link} to={`/audit/sessions/${event.agent}/${encodeURIComponent(event.session_id)}`}>{event.session_id}</Anchor></Table.Td>
                      <Table.Td>{event.seq}</Table.Td>
                      <Table.Td>{event.kind}</Table.Td>
                      <Table.Td>{event.tool}</Table.Td>
                      <Table.Td>{event.effect ? <StatusBadge value={event.effect} /> : "—"}</Table.Td>
                      <Table.Td><StatusBadge value={event.status} /></Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Pager count={page.count} capped={page.count_is_capped} limit={LIMIT} offset={offset} onOffset={(o) => set("offset", String(o))} />
          </>
        )}
      </QueryState>
    </Stack>
  );
}

function Verify() {
  const verify = useMutation({ mutationFn: () => api.get<VerificationReport>(`${V1}/audit/verify/`) });
  const report = verify.data;
  return (
    <Stack>
      <Text size="sm" c="dimmed">Recompute every signed checkpoint's Merkle root from the stored events and check its signature. Takes a moment on a large log.</Text>
      <Group><Button onClick={() => verify.mutate()} loading={verify.isPending}>Verify checkpoints now</Button></Group>
      {verify.error ? <Failure error={verify.error} /> : null}
      {report && (
        <Alert color={report.ok ? "green" : "red"} title={report.ok ? "The log verifies" : "Verification found problems"} data-testid="verify-result">
          <Text size="sm">{report.checkpoints} checkpoints, {report.events_checked} events checked, {report.events_not_checkpointed} not yet checkpointed, {report.events_removed_by_retention} removed by retention.</Text>
          {report.problems.length > 0 && (
            <Table mt="xs">
              <Table.Thead><Table.Tr><Table.Th>Problem</Table.Th><Table.Th>Message</Table.Th><Table.Th>Event</Table.Th><Table.Th>Checkpoint</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {report.problems.map((problem, index) => (
                  <Table.Tr key={index}><Table.Td>{problem.problem}</Table.Td><Table.Td>{problem.message}</Table.Td><Table.Td>{problem.event_id ?? "—"}</Table.Td><Table.Td>{problem.checkpoint ?? "—"}</Table.Td></Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )}
        </Alert>
      )}
    </Stack>
  );
}

function Quarantine() {
  const [params, setParams] = useSearchParams();
  const offset = Number(params.get("offset") ?? 0);
  const records = useQuery({
    queryKey: ["quarantine", offset],
    queryFn: () => api.get<Page<QuarantinedRecord>>(`${V1}/audit/quarantine/`, { limit: LIMIT, offset, ordering: "-id" }),
  });
  return (
    <QueryState query={records} what="quarantined records">
      {(page) => page.count === 0 ? <Empty title="Nothing quarantined">Every record received so far verified: signature, key and chain.</Empty> : (
        <>
          <Table.ScrollContainer minWidth={700}>
            <Table>
              <Table.Thead><Table.Tr><Table.Th>When</Table.Th><Table.Th>Agent</Table.Th><Table.Th>Session</Table.Th><Table.Th>Reason</Table.Th><Table.Th>Message</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {page.results.map((record) => (
                  <Table.Tr key={record.id}>
                    <Table.Td>{when(record.quarantined_at)}</Table.Td><Table.Td>{record.agent}</Table.Td>
                    <Table.Td>{record.session_id ? <Anchor component={Link} to={`/audit/sessions/${record.agent}/${encodeURIComponent(record.session_id)}`}>{record.session_id}</Anchor> : "—"}</Table.Td>
                    <Table.Td><StatusBadge value={String(record.reason)} /></Table.Td><Table.Td>{record.message}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Pager count={page.count} limit={LIMIT} offset={offset} onOffset={(o) => setParams({ tab: "quarantine", offset: String(o) })} />
        </>
      )}
    </QueryState>
  );
}

interface TimelineRow {
  source: string;
  status: string;
  id: number;
  time: string | null;
  seq: number | null;
  kind: string | null;
  tool?: string;
  effect?: string;
  rule_ids?: string[];
  reason?: string;
  message?: string;
  payload?: unknown;
  decision_id?: string;
  environment?: string;
}

function SessionTimeline() {
  const { agent = "", session = "" } = useParams();
  const { can, whyNot } = useSession();
  const timeline = useQuery({
    queryKey: ["timeline", agent, session],
    queryFn: () => api.get<{ count: number; entries: TimelineRow[] }>(`${V1}/audit/timeline/`, { agent, session }),
  });
  const events = useQuery({
    queryKey: ["session-events", agent, session],
    queryFn: () => api.get<Page<AuditEvent>>(`${V1}/audit/events/`, { agent, session, limit: 1000, ordering: "seq" }),
  });
  const links = chainLinks(events.data?.results ?? []);
  const byId = new Map((events.data?.results ?? []).map((event) => [event.id, event]));
  const exportUrl = withQuery(`${V1}/audit/events/export/`, { agent, session });
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Session {session}</Title>
        <Anchor component={Link} to="/audit">All events</Anchor>
      </Group>
      <Text size="sm">Agent <Anchor component={Link} to={`/agents/${agent}`}>{agent}</Anchor>: signed records in chain order, quarantined records and OPA decision logs, by time.</Text>
      <Group>
        {can("export_audit") ? (
          <Button component="a" href={exportUrl} download={`${agent}-${session}.jsonl`} variant="light">Export JSONL (for warden audit verify)</Button>
        ) : <Text size="sm" c="dimmed" data-testid="role-reason">Export: {whyNot("export_audit")}</Text>}
      </Group>
      <Card withBorder>
        <QueryState query={timeline} what="the timeline">
          {(data) => data.count === 0 ? <Empty title="Nothing in this session">Check the agent and session id.</Empty> : (
            <Table.ScrollContainer minWidth={800}>
              <Table data-testid="timeline">
                <Table.Thead><Table.Tr><Table.Th>Time</Table.Th><Table.Th>Seq</Table.Th><Table.Th>Source</Table.Th><Table.Th>Kind</Table.Th><Table.Th>Detail</Table.Th><Table.Th>Signature</Table.Th><Table.Th>Chain</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {data.entries.map((entry) => {
                    const event = entry.source === "event" ? byId.get(entry.id) : undefined;
                    return (
                      <Table.Tr key={`${entry.source}-${entry.id}`}>
                        <Table.Td>{when(entry.time)}</Table.Td>
                        <Table.Td>{entry.seq ?? "—"}</Table.Td>
                        <Table.Td>{entry.source === "opa_decision" ? `OPA (${entry.environment})` : entry.source}</Table.Td>
                        <Table.Td>{entry.kind ?? "—"}</Table.Td>
                        <Table.Td>
                          {entry.tool && <code>{entry.tool}</code>} {entry.effect && <StatusBadge value={entry.effect} />} {(entry.rule_ids ?? []).join(", ")}
                          {entry.message && <Text size="xs">{entry.reason}: {entry.message}</Text>}
                        </Table.Td>
                        <Table.Td>{entry.source === "event" ? <Text size="xs">Ed25519, key <code title={event?.key_id}>{event ? `${event.key_id.slice(0, 12)}…` : "…"}</code>: <StatusBadge value={entry.status} /></Text> : entry.source === "quarantine" ? <StatusBadge value="quarantined" /> : "not signed (OPA log)"}</Table.Td>
                        <Table.Td>{event ? <><StatusBadge value={links.get(event.id) ?? "—"} /> <Text span size="xs" c="dimmed"><code title={event.record_hash}>{event.record_hash.slice(0, 10)}</code></Text></> : "—"}</Table.Td>
                      </Table.Tr>
                    );
                  })}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </QueryState>
      </Card>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">Verify</Title>
        <Verify />
      </Card>
    </Stack>
  );
}
