import { Alert, Button, Group, List, Modal, Stack, Text, Textarea, ThemeIcon, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Activation, Agent, OPAInstance } from "../api/types";
import { NonFieldError } from "../components/states";
import { RoleButton, shortRevision } from "../components/widgets";
import { propagation } from "./propagation";

type Action = "suspend" | "resume" | "revoke";

const ACTIONS: Record<Action, { label: string; color: string; explain: string }> = {
  suspend: { label: "Suspend", color: "orange", explain: "Every engine denies this agent's actions once it has the next bundle. Resume undoes it." },
  resume: { label: "Resume", color: "green", explain: "The agent may act again under its policies once engines have the next bundle." },
  revoke: { label: "Revoke", color: "red", explain: "Permanent: the agent can never act again and cannot be resumed." },
};

export function KillSwitch({ agent }: { agent: Agent }) {
  const client = useQueryClient();
  const [action, setAction] = useState<Action | null>(null);
  const [reason, setReason] = useState("");
  const [changedAt, setChangedAt] = useState<string | null>(null);
  const change = useMutation({
    mutationFn: (which: Action) => api.post<Agent>(`${V1}/agents/${agent.name}/${which}/`, { reason }),
    onSuccess: (updated) => {
      client.setQueryData(["agent", agent.name], updated);
      void client.invalidateQueries({ queryKey: ["agents"] });
      setChangedAt(updated.status_changed_at ?? new Date().toISOString());
      setAction(null);
      setReason("");
    },
  });
  const available: Action[] =
    agent.status === "active" ? ["suspend", "revoke"] : agent.status === "suspended" ? ["resume", "revoke"] : [];
  const fieldError = change.error instanceof ApiError ? change.error.field("reason") : undefined;
  return (
    <Stack gap="sm">
      <Group>
        {available.map((which) => (
          <RoleButton key={which} capability="kill_switch" color={ACTIONS[which].color} onClick={() => { change.reset(); setAction(which); }}>
            {ACTIONS[which].label}
          </RoleButton>
        ))}
        {available.length === 0 && <Text c="dimmed" size="sm">A revoked agent stays revoked.</Text>}
      </Group>
      <Modal opened={action !== null} onClose={() => setAction(null)} title={action ? `${ACTIONS[action].label} ${agent.name}` : ""}>
        {action && (
          <Stack>
            <Text size="sm">{ACTIONS[action].explain}</Text>
            <Textarea label="Reason (kept in the change log and shown with the status)" value={reason} autoFocus
              onChange={(e) => setReason(e.currentTarget.value)} error={fieldError} maxLength={500} data-autofocus />
            <NonFieldError error={change.error} />
            <Group justify="flex-end">
              <Button variant="default" onClick={() => setAction(null)}>Cancel</Button>
              <Button color={ACTIONS[action].color} loading={change.isPending} onClick={() => change.mutate(action)}>
                {ACTIONS[action].label} agent
              </Button>
            </Group>
          </Stack>
        )}
      </Modal>
      {changedAt && <Propagation agent={agent} changedAt={changedAt} />}
    </Stack>
  );
}

function Propagation({ agent, changedAt }: { agent: Agent; changedAt: string }) {
  const environments = agent.environments ?? [];
  const [done, setDone] = useState(false);
  const interval = done ? false : 1500;
  const activations = useQuery({
    queryKey: ["propagation-activations", agent.name, changedAt],
    queryFn: async () =>
      Object.fromEntries(
        await Promise.all(
          environments.map(async (env) => [env, (await api.get<Page<Activation>>(`${V1}/environments/${env}/activations/`, { limit: 20 })).results] as const),
        ),
      ),
    refetchInterval: interval,
  });
  const instances = useQuery({
    queryKey: ["propagation-instances", agent.name, changedAt],
    queryFn: () => api.get<Page<OPAInstance>>(`${V1}/opa/instances/`, { limit: 1000 }),
    refetchInterval: interval,
  });
  if (!activations.data || !instances.data) return <Text size="sm" c="dimmed">Waiting for the first bundle rebuild…</Text>;
  const rows = environments.map((env) =>
    propagation(env, activations.data[env] ?? [], instances.data.results, changedAt, null),
  );
  const complete = rows.every((row) => row.complete);
  if (complete && !done) setDone(true);
  return (
    <Alert color={complete ? "green" : "blue"} title={complete ? "Propagation complete" : "Propagating…"} data-testid="propagation" aria-live="polite">
      <Stack gap="xs">
        {rows.map((row) => (
          <div key={row.environment}>
            <Title order={3} size="h6">
              {row.environment}: {row.revision ? <>carried by revision <code>{shortRevision(row.revision)}</code></> : "waiting for the rebuilt bundle"}
            </Title>
            {row.engines.length === 0 ? (
              <Text size="sm">No engine reports status in {row.environment}; embedded SDK engines pick the bundle up on their next poll.</Text>
            ) : (
              <List size="sm" spacing={2}>
                {row.engines.map((engine) => (
                  <List.Item key={engine.instance_id} icon={<ThemeIcon size={14} radius="xl" color={engine.picked_up ? "green" : engine.stale ? "gray" : "orange"} aria-hidden><span /></ThemeIcon>}>
                    {engine.instance_id}: {engine.picked_up ? "has it" : engine.stale ? "stale (not reporting)" : "not yet"} (runs <code>{shortRevision(engine.active_revision)}</code>)
                  </List.Item>
                ))}
              </List>
            )}
          </div>
        ))}
      </Stack>
    </Alert>
  );
}
