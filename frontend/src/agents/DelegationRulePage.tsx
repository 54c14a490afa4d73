// The agent's delegation rule (docs/delegation.md): which agents it may delegate to, how
// deep a chain below it may go, how long its grants may live, and the people whose grants
// it accepts (may_act_for). Saved with PUT /delegation/rules/{agent}/ (admins only); every
// engine verifies chains against it from the next bundle on.
import { Alert, Anchor, Card, Group, NumberInput, SimpleGrid, Stack, TagsInput, Text, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Agent, DelegationRule } from "../api/types";
import { useSession } from "../auth/session";
import { NonFieldError, QueryState } from "../components/states";
import { RoleButton } from "../components/widgets";
import { formFromRule, formProblems, MAX_DEPTH, MAX_LIFETIME_SECONDS, ruleFromForm, ruleSentence, type DelegationRuleForm } from "./delegationRule";

/** The agent's rule, or null when it has none yet (the API answers 404: it may not delegate). */
async function ruleOf(name: string): Promise<DelegationRule | null> {
  try {
    return await api.get<DelegationRule>(`${V1}/delegation/rules/${name}/`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export function DelegationRulePage() {
  const { name = "" } = useParams();
  const rule = useQuery({ queryKey: ["delegation-rule", name], queryFn: async () => ({ rule: await ruleOf(name) }) });
  return (
    <QueryState query={rule} what={`the delegation rule of ${name}`}>
      {(data) => <RuleEditor key={data.rule?.updated_at ?? "none"} name={name} rule={data.rule} />}
    </QueryState>
  );
}

function RuleEditor({ name, rule }: { name: string; rule: DelegationRule | null }) {
  const session = useSession();
  const client = useQueryClient();
  const editable = session.can("edit_agents");  // admins, as the API enforces
  const [form, setForm] = useState<DelegationRuleForm>(() => formFromRule(rule));
  const agents = useQuery({ queryKey: ["agents", "names"], queryFn: () => api.get<Page<Agent>>(`${V1}/agents/`, { limit: 500 }) });
  const save = useMutation({
    mutationFn: () => api.put<DelegationRule>(`${V1}/delegation/rules/${name}/`, ruleFromForm(form)),
    onSuccess: (updated) => {
      client.setQueryData(["delegation-rule", name], { rule: updated });
      notifications.show({ color: "green", message: `Saved the delegation rule of ${name}; engines verify chains against it from the next bundle.` });
    },
  });
  const hints = formProblems(name, form);
  const failed = save.error instanceof ApiError ? save.error : null;
  const serverError = failed && ["may_delegate_to", "may_act_for", "max_depth", "max_lifetime_seconds"]
    .map((field) => failed.field(field) && `${field}: ${failed.field(field)}`).find(Boolean);
  const names = (agents.data?.results ?? []).map((agent) => agent.name).filter((other) => other !== name);
  return (
    <Stack component="form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
      <Group justify="space-between">
        <Title order={1} size="h2">Delegation rule of {name}</Title>
        <Anchor component={Link} to={`/agents/${name}`}>Back to the agent</Anchor>
      </Group>
      <Text size="sm">
        Every link of a delegation chain is signed and checked by the engines: a sub-agent never gets more than the agent
        that instructed it. This rule says which agents {name} may instruct, and on whose behalf it may act.
        {rule === null && " It has no rule yet, so it may not delegate and no person may start a chain at it."}
      </Text>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Grants {name} issues</Title>
          <Stack gap="xs">
            <TagsInput label="May delegate to" description="agent names, or * for any agent" data={names} value={form.may_delegate_to}
              disabled={!editable} clearable onChange={(value) => setForm({ ...form, may_delegate_to: value })} splitChars={[",", " "]} />
            <NumberInput label="Deepest chain below it (links)" placeholder="registry default (3)" min={1} max={MAX_DEPTH} disabled={!editable}
              value={form.max_depth} allowDecimal={false} onChange={(value) => setForm({ ...form, max_depth: typeof value === "number" ? value : "" })} />
            <NumberInput label="Longest grant (seconds)" placeholder="registry default (3600)" min={1} max={MAX_LIFETIME_SECONDS} disabled={!editable}
              value={form.max_lifetime_seconds} allowDecimal={false}
              onChange={(value) => setForm({ ...form, max_lifetime_seconds: typeof value === "number" ? value : "" })} />
          </Stack>
        </Card>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">People {name} may act for</Title>
          <TagsInput label="May act for" description="e-mail addresses, @domain for everyone at a domain, or *; empty: nobody"
            value={form.may_act_for} disabled={!editable} clearable onChange={(value) => setForm({ ...form, may_act_for: value })} splitChars={[",", " "]} />
        </Card>
      </SimpleGrid>
      <Text size="sm" data-testid="delegation-sentence">{ruleSentence(name, form)}</Text>
      {rule?.updated_by && <Text size="xs" c="dimmed">Last changed by {rule.updated_by} on {new Date(rule.updated_at).toLocaleString()}.</Text>}
      {hints.length > 0 && <Alert color="yellow" data-testid="delegation-hints">{hints.map((h) => <div key={h}>{h}</div>)}</Alert>}
      {serverError && <Alert color="red" role="alert">{serverError}</Alert>}
      <NonFieldError error={save.error} />
      <Group><RoleButton capability="edit_agents" type="submit" loading={save.isPending} disabled={hints.length > 0}>Save delegation rule</RoleButton></Group>
    </Stack>
  );
}
