// Rules for the people who own them: pick a template, answer its questions, check the plain
// sentence and the examples, save; see log-only rules on live traffic and enforce in one click.
import { Alert, Badge, Button, Card, Code, Group, NativeSelect, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, Route, Routes, useNavigate, useParams } from "react-router";
import { api, V1, type Page } from "../api/client";
import type { Environment } from "../api/types";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton } from "../components/widgets";
import { PublishDialog } from "./PublishDialog";
import { RuleForm } from "./RuleForm";
import type { AuthoredRule, LogOnlyEffects, Template } from "./types";

const useTemplates = () => useQuery({ queryKey: ["authoring-templates"], queryFn: () => api.get<Template[]>(`${V1}/authoring/templates/`) });

export function AuthoringPage() {
  return (
    <Routes>
      <Route index element={<Overview />} />
      <Route path="new/:key" element={<NewRule />} />
    </Routes>
  );
}

function Overview() {
  const templates = useTemplates();
  const rules = useQuery({ queryKey: ["authoring-rules"], queryFn: () => api.get<Page<AuthoredRule>>(`${V1}/authoring/rules/`, { limit: 200 }) });
  const [publishing, setPublishing] = useState(false);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Rule authoring</Title>
        <RoleButton capability="release_bundles" onClick={() => setPublishing(true)}>Publish with impact preview</RoleButton>
      </Group>
      <Text size="sm" c="dimmed">Choose what the rule should do; the console writes the Rego and its tests, which an engineer can still edit.</Text>
      <QueryState query={templates} what="templates">
        {(list) => (
          <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }}>
            {list.map((t) => (
              <Card key={t.key} withBorder>
                <Text fw={600}>{t.title}</Text>
                <Text size="sm" c="dimmed">{t.description}</Text>
                <Button component={Link} to={`new/${t.key}`} mt="sm" variant="light" aria-label={`New rule: ${t.title}`}>Use template</Button>
              </Card>
            ))}
          </SimpleGrid>
        )}
      </QueryState>
      <Title order={3}>Authored rules</Title>
      <QueryState query={rules} what="rules">
        {(page) => (page.results.length ? <RulesTable rules={page.results} /> : <Empty title="No authored rules yet">Pick a template above.</Empty>)}
      </QueryState>
      <LiveEffects />
      {publishing && <PublishDialog onClose={() => setPublishing(false)} />}
    </Stack>
  );
}

function RulesTable({ rules }: { rules: AuthoredRule[] }) {
  const client = useQueryClient();
  const toggle = useMutation({
    mutationFn: (rule: AuthoredRule) => api.post<AuthoredRule>(`${V1}/authoring/rules/${rule.id}/log-only/`, { log_only: !rule.log_only }),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["authoring-rules"] }),
  });
  return (
    <>
      <NonFieldError error={toggle.error} />
      <Table data-testid="authored-rules">
        <Table.Thead><Table.Tr><Table.Th>Rule</Table.Th><Table.Th>In plain words</Table.Th><Table.Th>Mode</Table.Th><Table.Th /></Table.Tr></Table.Thead>
        <Table.Tbody>
          {rules.map((rule) => (
            <Table.Tr key={rule.id}>
              <Table.Td><Code>{rule.name}</Code>{rule.edited_as_rego && <Badge ml="xs" variant="outline">edited as Rego</Badge>}</Table.Td>
              <Table.Td>{rule.sentence}</Table.Td>
              <Table.Td>{rule.log_only ? <Badge color="yellow">log only</Badge> : <Badge color="green">enforced</Badge>}</Table.Td>
              <Table.Td>
                <RoleButton capability="write_policies" size="xs" variant="light" onClick={() => toggle.mutate(rule)} aria-label={`${rule.log_only ? "Enforce" : "Log only"} ${rule.name}`}>
                  {rule.log_only ? "Enforce" : "Log only"}
                </RoleButton>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </>
  );
}

function LiveEffects() {
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const [env, setEnv] = useState("");
  const effects = useQuery({
    queryKey: ["log-only-effects", env],
    queryFn: () => api.get<LogOnlyEffects>(`${V1}/authoring/previews/log-only-effects/`, { environment: env, hours: 24 }),
    enabled: env !== "",
  });
  return (
    <Stack gap="xs">
      <Title order={3}>Log-only rules on live traffic (24 h)</Title>
      <NativeSelect label="Live traffic of" data={["", ...(environments.data?.results.map((e) => e.name) ?? [])]} value={env} onChange={(e) => setEnv(e.currentTarget.value)} />
      {effects.data && (effects.data.rules.length ? (
        <Table data-testid="log-only-effects">
          <Table.Thead><Table.Tr><Table.Th>Rule</Table.Th><Table.Th>Matched</Table.Th><Table.Th>Would change</Table.Th><Table.Th>How</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>
            {effects.data.rules.map((r) => (
              <Table.Tr key={r.rule}><Table.Td>{r.rule}</Table.Td><Table.Td>{r.matched}</Table.Td><Table.Td>{r.would_change}</Table.Td>
                <Table.Td>{Object.entries(r.transitions).map(([k, n]) => `${k}: ${n}`).join(", ")}</Table.Td></Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      ) : <Alert color="gray">No log-only rule matched a decision in {env} in the last 24 hours ({effects.data.decisions} decisions looked at).</Alert>)}
    </Stack>
  );
}

function NewRule() {
  const { key } = useParams();
  const templates = useTemplates();
  const navigate = useNavigate();
  return (
    <QueryState query={templates} what="templates">
      {(list) => {
        const template = list.find((t) => t.key === key);
        if (!template) return <Empty title="No such template">Choose one on the authoring page.</Empty>;
        return <RuleForm key={template.key} template={template} onSaved={() => navigate("/authoring")} />;
      }}
    </QueryState>
  );
}
