// The alert inbox: what broke an agent's baseline, most severe first, each with its
// one-sentence explanation and the numbers; acknowledge, resolve or mark a false positive
// with a comment, or open an incident from it (its regulatory clocks start then). The API
// enforces who may triage and the state machine; this page asks.
import { Alert, Anchor, Badge, Card, Code, Group, SegmentedControl, Select, Stack, Text, Textarea, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { api, V1, type Page } from "../api/client";
import type { AlertInbox, DetectionAlert, IncidentDetail } from "../api/types";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";
import { allowedTransitions, inboxLabel, incidentOpenedLabel, SEVERITY_COLORS, TRANSITIONS, triageOrder, type Transition } from "./inbox";

const ALERTS_KEY = ["detection-alerts"] as const;
const VIEWS: Record<string, string[]> = {
  "to handle": ["open", "acknowledged"],
  resolved: ["resolved"],
  "false positive": ["false_positive"],
};

export function AlertsPage() {
  const [view, setView] = useState("to handle");
  const inbox = useQuery({
    queryKey: [...ALERTS_KEY, "inbox"],
    queryFn: () => api.get<AlertInbox>(`${V1}/detection/alerts/inbox/`),
    refetchInterval: 5000,
  });
  const alerts = useQuery({
    // latest_id changes when the detector raises a new alert: the list refetches.
    queryKey: [...ALERTS_KEY, view, inbox.data?.latest_id ?? null],
    // The state filter takes repeated parameters, which the client's query object cannot say.
    queryFn: () => api.get<Page<DetectionAlert>>(`${V1}/detection/alerts/?${(VIEWS[view] ?? []).map((s) => `state=${s}`).join("&")}&limit=100`),
  });
  const label = inbox.data ? inboxLabel(inbox.data) : null;
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Alerts</Title>
        <Text aria-live="polite" data-testid="alert-inbox-count">{label ?? "Nothing to handle"}</Text>
      </Group>
      <SegmentedControl aria-label="Alert state" value={view} onChange={setView} data={Object.keys(VIEWS)} w="fit-content" />
      <QueryState query={alerts} what="alerts">
        {(page) =>
          page.count === 0 ? (
            <Empty title={`No alert ${view === "to handle" ? "to handle" : view}`}>
              Alerts appear here when an agent behaves unlike its baseline.
            </Empty>
          ) : (
            <Stack>
              {triageOrder(page.results).map((alert) => <AlertCard key={alert.id} alert={alert} />)}
            </Stack>
          )
        }
      </QueryState>
    </Stack>
  );
}

function AlertCard({ alert }: { alert: DetectionAlert }) {
  const client = useQueryClient();
  const [note, setNote] = useState("");
  const move = useMutation({
    mutationFn: (transition: Transition) => api.post<DetectionAlert>(`${V1}/detection/alerts/${alert.id}/${transition}/`, { note }),
    onSuccess: () => {
      setNote("");
      void client.invalidateQueries({ queryKey: ALERTS_KEY });
    },
  });
  const transitions = allowedTransitions(alert.state);
  return (
    <Card withBorder padding="md" data-testid="detection-alert" aria-label={`Alert ${alert.id}`}>
      <Stack gap="xs">
        <Group justify="space-between">
          <Text fw={600}>{alert.agent} · {alert.subject}</Text>
          <Group gap="xs">
            <Badge color={SEVERITY_COLORS[alert.severity] ?? "gray"} variant="light" autoContrast data-testid="alert-severity">{alert.severity}</Badge>
            <StatusBadge value={alert.state} />
          </Group>
        </Group>
        <Text data-testid="alert-summary">{alert.summary}</Text>
        <Text size="xs" c="dimmed">
          Alert {alert.id} · {alert.detector.replaceAll("_", " ")} · raised {when(alert.raised_at)} · seen {alert.occurrences}×
          {alert.acknowledged_by ? ` · acknowledged by ${alert.acknowledged_by}` : ""}
          {alert.closed_by ? ` · closed by ${alert.closed_by} ${when(alert.closed_at)}` : ""}
        </Text>
        <Group gap="md" align="flex-start" grow>
          <Stack gap={2}><Text size="xs" fw={600}>Baseline</Text><Code block>{JSON.stringify(alert.baseline, null, 2)}</Code></Stack>
          <Stack gap={2}><Text size="xs" fw={600}>Observed</Text><Code block>{JSON.stringify(alert.observed, null, 2)}</Code></Stack>
        </Group>
        {Array.isArray(alert.session_ids) && alert.session_ids.length > 0 && (
          <Text size="sm">Sessions: {(alert.session_ids as string[]).map((s, i) => (
            <span key={s}>{i > 0 && ", "}<Anchor component={Link} to={`/audit/sessions/${alert.agent}/${encodeURIComponent(s)}`}>{s}</Anchor></span>
          ))}</Text>
        )}
        {alert.note && <Text size="sm">Comment: {alert.note}</Text>}
        {transitions.length > 0 && (
          <>
            <Textarea label="Comment" value={note} onChange={(e) => setNote(e.currentTarget.value)} maxLength={5000} autosize minRows={1} />
            <Group>
              {transitions.map((t) => (
                <RoleButton key={t} capability="triage_alerts" variant={t === "acknowledge" ? "filled" : "light"}
                  color={t === "false-positive" ? "gray" : t === "resolve" ? "green" : "blue"}
                  loading={move.isPending} onClick={() => move.mutate(t)}>
                  {TRANSITIONS[t].label}
                </RoleButton>
              ))}
            </Group>
            <NonFieldError error={move.error} />
          </>
        )}
        {move.isSuccess && <Alert color="green" role="status">Alert {move.data.state.replaceAll("_", " ")}.</Alert>}
        <OpenIncident alert={alert} />
      </Stack>
    </Card>
  );
}

const HIPAA_ROLES = [
  { value: "none", label: "No HIPAA clock" },
  { value: "covered_entity", label: "HIPAA covered entity (164.404)" },
  { value: "business_associate", label: "HIPAA business associate (164.410)" },
];

/** Opens an incident from the alert (or returns the open one that already holds it); the
 * API starts the regulatory clocks from the alert's awareness time. */
function OpenIncident({ alert }: { alert: DetectionAlert }) {
  const [hipaaRole, setHipaaRole] = useState("none");
  const open = useMutation({
    mutationFn: () => api.post<IncidentDetail>(`${V1}/detection/alerts/${alert.id}/incident/`, { hipaa_role: hipaaRole }),
  });
  // response is the detector's record ({"action", "incident", ...}); typed unknown by the schema.
  const response = alert.response as { incident?: unknown } | null;
  const existing = typeof response?.incident === "number" ? response.incident : null;
  return (
    <Group gap="xs" align="flex-end">
      <Select label="HIPAA clock" data={HIPAA_ROLES} value={hipaaRole} allowDeselect={false}
        onChange={(value) => setHipaaRole(value ?? "none")} w={280} size="xs" />
      <RoleButton capability="triage_alerts" variant="outline" color="red" size="xs" loading={open.isPending}
        onClick={() => open.mutate()}>
        {existing === null ? "Open incident" : `Incident ${existing}: show clocks`}
      </RoleButton>
      <NonFieldError error={open.error} />
      {open.isSuccess && <Text role="status" size="sm" data-testid="incident-opened">{incidentOpenedLabel(open.data)}</Text>}
    </Group>
  );
}
