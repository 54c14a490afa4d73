import { Alert, Button, Card, Checkbox, Group, MultiSelect, Select, SimpleGrid, Stack, Table, Text, Textarea, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Agent, AgentClassification, ComplianceScope, Environment } from "../api/types";
import { NonFieldError, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";

// The assumptions every report of an environment prints: EU role, SOC 2 categories, HIPAA
// status and what is out of scope; and each agent's EU AI Act classification.
const EU_ROLES = [{ value: "", label: "Not declared (assumed: both)" }, { value: "provider", label: "Provider" }, { value: "deployer", label: "Deployer" }, { value: "both", label: "Provider and deployer" }];
const HIPAA = [{ value: "", label: "Not declared" }, { value: "covered_entity", label: "Covered entity" }, { value: "business_associate", label: "Business associate" }, { value: "both", label: "Covered entity and business associate" }, { value: "not_subject", label: "Not subject to HIPAA" }];
const CATEGORIES = [{ value: "availability", label: "Availability" }, { value: "confidentiality", label: "Confidentiality" }, { value: "processing_integrity", label: "Processing integrity" }, { value: "privacy", label: "Privacy" }];
const ROUTES = [{ value: "none", label: "Not high-risk" }, { value: "annex_iii", label: "Annex III (Art. 6(2))" }, { value: "annex_i", label: "Annex I (Art. 6(1))" }];
const TRIGGERS = [{ value: "interacts_with_persons", label: "Interacts with people (50(1))" }, { value: "generates_synthetic_content", label: "Generates synthetic content (50(2))" }, { value: "emotion_recognition", label: "Emotion recognition (50(3))" }, { value: "deep_fake", label: "Deep fake (50(4))" }];

export function ScopePage() {
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const [environment, setEnvironment] = useState<string | null>(null);
  const names = (environments.data?.results ?? []).map((env) => env.name);
  const chosen = environment ?? names[0] ?? null;
  return (
    <Stack>
      <Title order={1} size="h2">Compliance scope</Title>
      <Text size="sm" c="dimmed">What every report of an environment assumes. A report prints this scope; an agent without a reviewed classification is a gap, not "minimal risk".</Text>
      <Select label="Environment" data={names} value={chosen} onChange={setEnvironment} w={280} allowDeselect={false} />
      {chosen && <ScopeForm key={chosen} environment={chosen} />}
      {chosen && <Classifications environment={chosen} />}
    </Stack>
  );
}

function ScopeForm({ environment }: { environment: string }) {
  const client = useQueryClient();
  const scope = useQuery({ queryKey: ["compliance-scope", environment], queryFn: () => api.get<ComplianceScope>(`${V1}/compliance/scopes/${environment}/`) });
  const [draft, setDraft] = useState<Partial<ComplianceScope>>({});
  useEffect(() => setDraft({}), [scope.data]);
  const save = useMutation({
    mutationFn: () => api.put<ComplianceScope>(`${V1}/compliance/scopes/${environment}/`, draft),
    onSuccess: (data) => client.setQueryData(["compliance-scope", environment], data),
  });
  const error = save.error instanceof ApiError ? save.error : null;
  return (
    <QueryState query={scope} what="the scope">
      {(data) => {
        const value = { ...data, ...draft };
        return (
          <Card withBorder component="form" data-testid="scope-form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
            <Title order={2} size="h4" mb="xs">Scope of {environment}</Title>
            <SimpleGrid cols={{ base: 1, md: 3 }}>
              <Select label="EU AI Act role" data={EU_ROLES} value={String(value.eu_role ?? "")} onChange={(v) => setDraft({ ...draft, eu_role: (v ?? "") as ComplianceScope["eu_role"] })} error={error?.field("eu_role")} />
              <Select label="HIPAA status" data={HIPAA} value={String(value.hipaa_entity ?? "")} onChange={(v) => setDraft({ ...draft, hipaa_entity: (v ?? "") as ComplianceScope["hipaa_entity"] })} error={error?.field("hipaa_entity")} />
              <MultiSelect label="SOC 2 categories (security is always in scope)" data={CATEGORIES} value={(value.soc2_categories ?? []).map(String)} onChange={(v) => setDraft({ ...draft, soc2_categories: v as ComplianceScope["soc2_categories"] })} error={error?.field("soc2_categories")} />
            </SimpleGrid>
            <Checkbox mt="sm" label="Places a general-purpose AI model on the market" checked={Boolean(value.gpai_model_provider)} onChange={(e) => setDraft({ ...draft, gpai_model_provider: e.currentTarget.checked })} />
            <Textarea mt="sm" label="Out of scope" description="Printed on every report of this environment." autosize minRows={2} value={value.out_of_scope ?? ""} onChange={(e) => setDraft({ ...draft, out_of_scope: e.currentTarget.value })} error={error?.field("out_of_scope")} />
            <NonFieldError error={save.error} />
            <Group mt="sm">
              <RoleButton capability="manage_compliance" type="submit" loading={save.isPending} disabled={Object.keys(draft).length === 0}>Save scope</RoleButton>
              <Text size="xs" c="dimmed">{data.updated_by ? `last changed ${when(data.updated_at)} by ${data.updated_by}` : "never declared: reports assume the widest scope"}</Text>
            </Group>
          </Card>
        );
      }}
    </QueryState>
  );
}

function Classifications({ environment }: { environment: string }) {
  const agents = useQuery({ queryKey: ["agents", environment], queryFn: () => api.get<Page<Agent>>(`${V1}/agents/`, { environment, limit: 200 }) });
  const [agent, setAgent] = useState<string | null>(null);
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">EU AI Act classification per agent</Title>
      <QueryState query={agents} what="agents">
        {(page) => {
          const inEnvironment = page.results.filter((item) => !item.environments || item.environments.includes(environment));
          return inEnvironment.length === 0 ? <Text size="sm">No agent in {environment}.</Text> : (
            <Stack>
              <Select label="Agent" data={inEnvironment.map((item) => item.name)} value={agent} onChange={setAgent} w={280} placeholder="Choose an agent" />
              {agent && <ClassificationForm key={agent} agent={agent} />}
            </Stack>
          );
        }}
      </QueryState>
    </Card>
  );
}

interface ModelRow { provider: string; model: string; version: string }

function ClassificationForm({ agent }: { agent: string }) {
  const client = useQueryClient();
  const current = useQuery({ queryKey: ["classification", agent], queryFn: () => api.get<AgentClassification>(`${V1}/compliance/classifications/${agent}/`) });
  const [draft, setDraft] = useState<Partial<AgentClassification>>({});
  const save = useMutation({
    mutationFn: (body: Partial<AgentClassification>) => api.put<AgentClassification>(`${V1}/compliance/classifications/${agent}/`, body),
    onSuccess: (data) => { setDraft({}); client.setQueryData(["classification", agent], data); },
  });
  const error = save.error instanceof ApiError ? save.error : null;
  return (
    <QueryState query={current} what="the classification">
      {(data) => {
        const value = { ...data, ...draft };
        const models = (value.models_used ?? []) as ModelRow[];
        const setModel = (i: number, key: keyof ModelRow, text: string) => setDraft({ ...draft, models_used: models.map((row, j) => (j === i ? { ...row, [key]: text } : row)) });
        return (
          <Stack gap="xs" data-testid="classification-form">
            <Group><Text size="sm">Status</Text><StatusBadge value={String(data.status)} /><Text size="xs" c="dimmed">{data.assessed_by ? `assessed ${when(data.assessed_at)} by ${data.assessed_by}` : "never assessed: a gap on every EU AI Act report"}</Text></Group>
            {data.status !== "assessed" && <Alert color="orange" variant="light">Saving records you as the assessor, with the rationale below.</Alert>}
            <SimpleGrid cols={{ base: 1, md: 3 }}>
              <Select label="High-risk route" data={ROUTES} value={String(value.high_risk_route ?? "none")} onChange={(v) => setDraft({ ...draft, high_risk_route: (v ?? "none") as AgentClassification["high_risk_route"] })} error={error?.field("high_risk_route")} />
              <TextInput label="Annex reference" placeholder="e.g. Annex III point 4(a)" value={value.annex_reference ?? ""} onChange={(e) => setDraft({ ...draft, annex_reference: e.currentTarget.value })} error={error?.field("annex_reference")} />
              <Select label="EU role for this agent" data={EU_ROLES} value={String(value.eu_role ?? "")} onChange={(v) => setDraft({ ...draft, eu_role: (v ?? "") as AgentClassification["eu_role"] })} />
            </SimpleGrid>
            <MultiSelect label="Art. 50 transparency triggers" data={TRIGGERS} value={(value.art50_triggers ?? []).map(String)} onChange={(v) => setDraft({ ...draft, art50_triggers: v as AgentClassification["art50_triggers"] })} error={error?.field("art50_triggers")} />
            <Checkbox label="Handles ePHI (HIPAA)" checked={Boolean(value.handles_ephi)} onChange={(e) => setDraft({ ...draft, handles_ephi: e.currentTarget.checked })} />
            <Textarea label="Rationale" autosize minRows={2} value={value.rationale ?? ""} onChange={(e) => setDraft({ ...draft, rationale: e.currentTarget.value })} error={error?.field("rationale")} />
            <Text size="sm" fw={600}>Models used</Text>
            <Table>
              <Table.Thead><Table.Tr><Table.Th>Provider</Table.Th><Table.Th>Model</Table.Th><Table.Th>Version</Table.Th><Table.Th /></Table.Tr></Table.Thead>
              <Table.Tbody>
                {models.map((row, i) => (
                  <Table.Tr key={i}>
                    {(["provider", "model", "version"] as const).map((key) => <Table.Td key={key}><TextInput aria-label={`Model ${i + 1} ${key}`} value={row[key]} onChange={(e) => setModel(i, key, e.currentTarget.value)} /></Table.Td>)}
                    <Table.Td><Button variant="subtle" color="red" size="xs" onClick={() => setDraft({ ...draft, models_used: models.filter((_, j) => j !== i) })}>Remove</Button></Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
            {error?.field("models_used") && <Text size="xs" c="red.8">{error.field("models_used")}</Text>}
            <Group>
              <Button variant="default" size="xs" onClick={() => setDraft({ ...draft, models_used: [...models, { provider: "", model: "", version: "" }] })}>Add a model</Button>
            </Group>
            <NonFieldError error={save.error} />
            <Group><RoleButton capability="manage_compliance" loading={save.isPending} onClick={() => save.mutate({ ...draft, status: "assessed" })}>Record assessment</RoleButton></Group>
          </Stack>
        );
      }}
    </QueryState>
  );
}
