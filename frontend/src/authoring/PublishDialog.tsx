// The publish dialog with the impact preview: replay recorded traffic against the policies
// that would be published, show what changes, and ask a second person for relaxations.
import { Alert, Badge, Button, Checkbox, Code, Group, Modal, NativeSelect, Progress, Stack, Table, Text } from "@mantine/core";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api, V1, type Page } from "../api/client";
import type { Environment } from "../api/types";
import { NonFieldError } from "../components/states";
import type { ImpactPreview } from "./types";

function Counts({ title, counts }: { title: string; counts?: Record<string, number> }) {
  const entries = Object.entries(counts ?? {});
  if (!entries.length) return null;
  return (
    <Table data-testid={`counts-${title}`}>
      <Table.Thead><Table.Tr><Table.Th>{title}</Table.Th><Table.Th>Decisions</Table.Th></Table.Tr></Table.Thead>
      <Table.Tbody>{entries.map(([k, n]) => <Table.Tr key={k}><Table.Td>{k}</Table.Td><Table.Td>{n.toLocaleString("en")}</Table.Td></Table.Tr>)}</Table.Tbody>
    </Table>
  );
}

export function ImpactPreviewView({ preview }: { preview: ImpactPreview }) {
  if (preview.status !== "done") {
    return preview.status === "failed"
      ? <Alert color="red">{preview.error}</Alert>
      : <Stack gap={4}><Text size="sm">Replaying recorded decisions… {preview.progress}%</Text><Progress value={preview.progress} aria-label="Impact preview progress" /></Stack>;
  }
  return (
    <Stack gap="xs" data-testid="impact-preview">
      <Text size="sm">Replayed {preview.total.toLocaleString("en")} decisions ({Object.entries(preview.sources).map(([k, n]) => `${n.toLocaleString("en")} ${k.replace("_", " ")}`).join(", ")}) in {((preview.duration_ms ?? 0) / 1000).toFixed(1)} s.</Text>
      {preview.relaxations > 0 ? (
        <Alert color="orange" title="This change relaxes decisions" data-testid="relaxations">
          {preview.relaxations.toLocaleString("en")} recorded decision(s) would become less strict.
          {preview.needs_second_person ? " A second person must release them before publishing." : preview.second_person ? ` Released by ${preview.second_person}.` : ""}
        </Alert>
      ) : <Badge color="green">No decision becomes less strict</Badge>}
      <Counts title="Change" counts={preview.changes.transitions} />
      <Counts title="Rule" counts={preview.changes.by_rule} />
      <Counts title="Agent" counts={preview.changes.by_agent} />
      <Counts title="Tool" counts={preview.changes.by_tool} />
      {preview.samples.map((s, i) => (
        <details key={i} data-testid="impact-sample">
          <summary>{s.relaxation ? "⚠ " : ""}{s.transition} — {s.records} record(s) from {s.source.replace("_", " ")} {s.ref}</summary>
          <Code block tabIndex={0}>{JSON.stringify(s.input, null, 2)}</Code>
        </details>
      ))}
    </Stack>
  );
}

export function PublishDialog({ onClose }: { onClose: () => void }) {
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const [env, setEnv] = useState("");
  const [previewId, setPreviewId] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [logOnly, setLogOnly] = useState(false);
  const start = useMutation({ mutationFn: () => api.post<ImpactPreview>(`${V1}/authoring/previews/`, { environment: env }), onSuccess: (p) => setPreviewId(p.id) });
  const preview = useQuery({
    queryKey: ["impact-preview", previewId],
    queryFn: () => api.get<ImpactPreview>(`${V1}/authoring/previews/${previewId}/`),
    enabled: previewId !== null,
    refetchInterval: (q) => (q.state.data && ["done", "failed"].includes(q.state.data.status) ? false : 500),
  });
  const release = useMutation({ mutationFn: () => api.post<ImpactPreview>(`${V1}/authoring/previews/${previewId}/release/`), onSuccess: () => void preview.refetch() });
  const publish = useMutation({
    mutationFn: () => api.post<{ revision?: string; id?: string; state?: string }>(`${V1}/authoring/previews/${previewId}/publish/`, { log_only: logOnly }),
    onSuccess: (answer) => setDone(answer.revision
      ? `Published${logOnly ? " log-only (new rules are logged, not enforced)" : ""}: ${env} now runs revision ${answer.revision.slice(0, 12)}.`
      : `Publishing to ${env} waits for an approver (four eyes).`),
  });
  const data = preview.data;
  return (
    <Modal opened onClose={onClose} title="Publish with impact preview" size="xl">
      <Stack>
        <NativeSelect label="Environment" data={["", ...(environments.data?.results.map((e) => e.name) ?? [])]} value={env} onChange={(e) => { setEnv(e.currentTarget.value); setPreviewId(null); }} />
        <Group><Button onClick={() => start.mutate()} disabled={!env} loading={start.isPending}>Preview impact</Button></Group>
        <NonFieldError error={start.error} />
        {data && <ImpactPreviewView preview={data} />}
        {data?.needs_second_person && <Button color="orange" variant="light" onClick={() => release.mutate()}>Release relaxations (second person)</Button>}
        <NonFieldError error={release.error} />
        {done ? <Alert color="green" data-testid="publish-result">{done}</Alert> : (
          <Group>
            <Checkbox label="Log-only rollout: new rules are evaluated and logged, not enforced (publish again without it to enforce)"
              checked={logOnly} onChange={(e) => setLogOnly(e.currentTarget.checked)} />
            <Button onClick={() => publish.mutate()} disabled={data?.status !== "done" || data.needs_second_person} loading={publish.isPending}>Publish</Button>
          </Group>
        )}
        <NonFieldError error={publish.error} />
      </Stack>
    </Modal>
  );
}
