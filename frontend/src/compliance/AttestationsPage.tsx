import { Anchor, Badge, Card, Code, FileInput, Group, SegmentedControl, Select, SimpleGrid, Stack, Table, Text, Textarea, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Attestation, Environment, Framework } from "../api/types";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";
import { attestationPayload, expiresWithin, toBase64, validateAttestation, type AttestationForm, type FormErrors } from "./governance";

// Attestations (a person states a control operates) and exceptions (a gap accepted by a second
// person), with their documents' SHA-256, expiry and state; both count only while current.
export function AttestationsPage() {
  const [framework, setFramework] = useState<string | null>(null);
  const [environment, setEnvironment] = useState<string | null>(null);
  const frameworks = useQuery({ queryKey: ["frameworks"], queryFn: () => api.get<Framework[] | Page<Framework>>(`${V1}/compliance/frameworks/`) });
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const frameworkList = Array.isArray(frameworks.data) ? frameworks.data : frameworks.data?.results ?? [];
  const envNames = (environments.data?.results ?? []).map((env) => env.name);
  return (
    <Stack>
      <Title order={1} size="h2">Attestations and exceptions</Title>
      <Group>
        <Select label="Framework" data={frameworkList.map((f) => ({ value: f.id, label: f.name }))} value={framework} onChange={setFramework} clearable />
        <Select label="Environment" data={envNames} value={environment} onChange={setEnvironment} clearable />
      </Group>
      <AttestationList framework={framework} environment={environment} />
      <NewAttestation frameworks={frameworkList} environments={envNames} />
    </Stack>
  );
}

function AttestationList({ framework, environment }: { framework: string | null; environment: string | null }) {
  const client = useQueryClient();
  const list = useQuery({ queryKey: ["attestations", framework, environment], queryFn: () => api.get<Page<Attestation>>(`${V1}/compliance/attestations/`, { framework, environment, limit: 200 }) });
  const act = useMutation({
    mutationFn: ({ id, verb }: { id: string; verb: "approve" | "revoke" }) => api.post<Attestation>(`${V1}/compliance/attestations/${id}/${verb}/`),
    onSuccess: () => client.invalidateQueries({ queryKey: ["attestations"] }),
  });
  const now = new Date();
  return (
    <QueryState query={list} what="attestations">
      {(page) => page.count === 0 ? <Empty title="No attestation yet">Controls whose text asks a person to review, assign, identify or evaluate are "met" only with one.</Empty> : (
        <Card withBorder>
          <NonFieldError error={act.error} />
          <Table.ScrollContainer minWidth={900}>
            <Table striped data-testid="attestations">
              <Table.Thead><Table.Tr><Table.Th>Control</Table.Th><Table.Th>Kind</Table.Th><Table.Th>Statement</Table.Th><Table.Th>Owner</Table.Th><Table.Th>Expires</Table.Th><Table.Th>State</Table.Th><Table.Th /></Table.Tr></Table.Thead>
              <Table.Tbody>
                {page.results.map((item) => {
                  const days = expiresWithin(item, now);
                  return (
                    <Table.Tr key={item.id}>
                      <Table.Td><Text size="sm" fw={600}>{String(item.framework)} {item.control_id}</Text><Text size="xs">{item.environment}</Text></Table.Td>
                      <Table.Td>{String(item.kind)}</Table.Td>
                      <Table.Td>
                        <Text size="xs">{item.statement}</Text>
                        {item.kind === "exception" && <Text size="xs" c="dimmed">reason: {item.reason}; compensating: {item.compensating_measure}{item.approved_by ? `; approved by ${item.approved_by}` : ""}</Text>}
                        {item.document_url && <Text size="xs"><Anchor href={item.document_url}>{item.document_name || "document"}</Anchor> <Code>sha256 {item.document_sha256.slice(0, 16)}…</Code></Text>}
                      </Table.Td>
                      <Table.Td>{item.owner}</Table.Td>
                      <Table.Td><Text size="xs">{when(item.expires_at)}</Text>{days !== null && <Badge color="orange" variant="light" autoContrast data-testid="expiring">expires in {days} d</Badge>}</Table.Td>
                      <Table.Td><StatusBadge value={item.state} /></Table.Td>
                      <Table.Td>
                        <Group gap={4} wrap="nowrap">
                          {item.state === "awaiting_approval" && <RoleButton capability="approve_exceptions" size="xs" onClick={() => act.mutate({ id: item.id, verb: "approve" })}>Approve</RoleButton>}
                          {(item.state === "current" || item.state === "awaiting_approval") && <RoleButton capability="manage_compliance" size="xs" variant="light" color="red" onClick={() => act.mutate({ id: item.id, verb: "revoke" })}>Revoke</RoleButton>}
                        </Group>
                      </Table.Td>
                    </Table.Tr>
                  );
                })}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </Card>
      )}
    </QueryState>
  );
}

const EMPTY: AttestationForm = { kind: "attestation", framework: "", control_id: "", environment: "", period_start: "", period_end: "", expires_at: "", statement: "", owner: "", reason: "", compensating_measure: "" };

function NewAttestation({ frameworks, environments }: { frameworks: Framework[]; environments: string[] }) {
  const client = useQueryClient();
  const [form, setForm] = useState<AttestationForm>(EMPTY);
  const [file, setFile] = useState<File | null>(null);
  const [errors, setErrors] = useState<FormErrors>({});
  const create = useMutation({
    mutationFn: async () => {
      const document = file ? { name: file.name, base64: toBase64(new Uint8Array(await file.arrayBuffer())) } : undefined;
      return api.post<Attestation>(`${V1}/compliance/attestations/`, attestationPayload(form, document));
    },
    onSuccess: () => { setForm(EMPTY); setFile(null); void client.invalidateQueries({ queryKey: ["attestations"] }); },
  });
  const apiError = create.error instanceof ApiError ? create.error : null;
  const err = (field: keyof AttestationForm) => errors[field] ?? apiError?.field(field);
  const set = (field: keyof AttestationForm) => (value: string | null) => setForm({ ...form, [field]: value ?? "" });
  const controls = frameworks.find((f) => f.id === form.framework)?.controls ?? [];
  const submit = () => {
    const found = validateAttestation(form, new Date().toISOString().slice(0, 10));
    setErrors(found);
    if (Object.keys(found).length === 0) create.mutate();
  };
  return (
    <Card withBorder component="form" data-testid="attestation-form" onSubmit={(e) => { e.preventDefault(); submit(); }}>
      <Title order={2} size="h4" mb="xs">Record an attestation or exception</Title>
      <SegmentedControl mb="sm" value={form.kind} onChange={(v) => setForm({ ...form, kind: v as AttestationForm["kind"] })} data={[{ value: "attestation", label: "Attestation" }, { value: "exception", label: "Exception (risk acceptance)" }]} />
      <SimpleGrid cols={{ base: 1, md: 3 }}>
        <Select label="Framework" data={frameworks.map((f) => ({ value: f.id, label: f.name }))} value={form.framework || null} onChange={(v) => setForm({ ...form, framework: v ?? "", control_id: "" })} error={err("framework")} />
        <Select label="Control" searchable data={controls.map((c) => ({ value: c.id, label: `${c.id} ${c.title}` }))} value={form.control_id || null} onChange={set("control_id")} error={err("control_id")} />
        <Select label="Environment" data={environments} value={form.environment || null} onChange={set("environment")} error={err("environment")} />
        <TextInput label="Period start" type="date" value={form.period_start} onChange={(e) => set("period_start")(e.currentTarget.value)} error={err("period_start")} />
        <TextInput label="Period end" type="date" value={form.period_end} onChange={(e) => set("period_end")(e.currentTarget.value)} error={err("period_end")} />
        <TextInput label="Expires" type="date" value={form.expires_at} onChange={(e) => set("expires_at")(e.currentTarget.value)} error={err("expires_at")} />
        <TextInput label="Owner (username)" value={form.owner} onChange={(e) => set("owner")(e.currentTarget.value)} error={err("owner")} />
        <FileInput label="Supporting document (stored with its SHA-256)" value={file} onChange={setFile} clearable error={apiError?.field("document") ?? apiError?.field("document_base64")} />
      </SimpleGrid>
      <Textarea mt="sm" label="Statement" autosize minRows={2} value={form.statement} onChange={(e) => set("statement")(e.currentTarget.value)} error={err("statement")} />
      {form.kind === "exception" && (
        <SimpleGrid cols={{ base: 1, md: 2 }} mt="sm">
          <Textarea label="Reason the gap is accepted" autosize value={form.reason} onChange={(e) => set("reason")(e.currentTarget.value)} error={err("reason")} />
          <Textarea label="Compensating measure" autosize value={form.compensating_measure} onChange={(e) => set("compensating_measure")(e.currentTarget.value)} error={err("compensating_measure")} />
        </SimpleGrid>
      )}
      {form.kind === "exception" && <Text size="xs" c="dimmed" mt={4}>An exception counts once someone other than its requester and owner approves it.</Text>}
      <NonFieldError error={create.error} />
      <Group mt="sm"><RoleButton capability="manage_compliance" type="submit" loading={create.isPending}>Record</RoleButton></Group>
    </Card>
  );
}
