import { Anchor, Button, Card, Group, Modal, SimpleGrid, Stack, Table, TagsInput, Text, Textarea, TextInput, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Agent, AgentKey, AuditEvent } from "../api/types";
import { useSession } from "../auth/session";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";
import { KillSwitch } from "./KillSwitch";
import { formFromProfile } from "./sandboxProfile";

function sandboxSummary(profile: unknown): string {
  const form = formFromProfile(profile);
  if (!form.enabled) return "No sandbox: the agent's code and shell tools are refused.";
  const limits = Object.entries(form.limits).map(([name, value]) => `${name} ${value}`).join(", ");
  return `Reads ${form.file_read.join(", ") || "nothing"}; writes ${form.file_write.join(", ") || "nothing"}; limits ${limits || "defaults"}.`;
}

export function AgentDetailPage() {
  const { name = "" } = useParams();
  const agent = useQuery({ queryKey: ["agent", name], queryFn: () => api.get<Agent>(`${V1}/agents/${name}/`) });
  return (
    <QueryState query={agent} what={`agent ${name}`}>
      {(data) => (
        <Stack>
          <Group justify="space-between">
            <Title order={1} size="h2">{data.display_name || data.name} <Text span c="dimmed" size="md">({data.name})</Text></Title>
            <StatusBadge value={data.status} />
          </Group>
          {data.status_reason && <Text size="sm">Status reason: {data.status_reason} ({when(data.status_changed_at)})</Text>}
          <Card withBorder>
            <Title order={2} size="h4" mb="xs">Kill switch</Title>
            <KillSwitch agent={data} />
          </Card>
          <SimpleGrid cols={{ base: 1, md: 2 }}>
            <Card withBorder>
              <Title order={2} size="h4" mb="xs">Identity</Title>
              <Table variant="vertical">
                <Table.Tbody>
                  <Table.Tr><Table.Th>Owner</Table.Th><Table.Td>{data.owner_email}</Table.Td></Table.Tr>
                  <Table.Tr><Table.Th>Team</Table.Th><Table.Td>{data.team || "—"}</Table.Td></Table.Tr>
                  <Table.Tr><Table.Th>Risk tier</Table.Th><Table.Td>{data.risk_tier}</Table.Td></Table.Tr>
                  <Table.Tr><Table.Th>Description</Table.Th><Table.Td>{data.description || "—"}</Table.Td></Table.Tr>
                </Table.Tbody>
              </Table>
            </Card>
            <AllowlistForm agent={data} />
          </SimpleGrid>
          <Card withBorder>
            <Group justify="space-between">
              <Title order={2} size="h4">Sandbox</Title>
              <Anchor component={Link} to={`/agents/${data.name}/sandbox`}>Edit the sandbox profile</Anchor>
            </Group>
            <Text size="sm" data-testid="sandbox-summary">{sandboxSummary(data.sandbox_profile)}</Text>
          </Card>
          <Card withBorder>
            <Group justify="space-between">
              <Title order={2} size="h4">Delegation</Title>
              <Anchor component={Link} to={`/agents/${data.name}/delegation`}>Edit the delegation rule</Anchor>
            </Group>
            <Text size="sm">Which agents it may instruct through signed grants, and the people it may act for.</Text>
          </Card>
          <Keys agent={data} />
          <RecentActivity agent={data} />
        </Stack>
      )}
    </QueryState>
  );
}

function AllowlistForm({ agent }: { agent: Agent }) {
  const session = useSession();
  const client = useQueryClient();
  const editable = session.can("edit_agents");
  const [form, setForm] = useState({
    scopes: agent.scopes ?? [],
    environments: agent.environments ?? [],
    egress_allow_hosts: (agent.egress_allow_hosts as string[] | undefined) ?? [],
    shell_allow_commands: (agent.shell_allow_commands as string[] | undefined) ?? [],
  });
  const save = useMutation({
    mutationFn: () => api.patch<Agent>(`${V1}/agents/${agent.name}/`, form),
    onSuccess: (updated) => {
      client.setQueryData(["agent", agent.name], updated);
      notifications.show({ color: "green", message: `Saved ${agent.name}; engines get it with the next bundle.` });
    },
  });
  const error = save.error instanceof ApiError ? save.error : null;
  const field = (key: keyof typeof form, label: string, hint: string) => (
    <TagsInput label={label} description={hint} value={form[key]} disabled={!editable} clearable
      onChange={(value) => setForm({ ...form, [key]: value })} error={error?.field(key)} splitChars={[",", " "]} />
  );
  return (
    <Card withBorder component="form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
      <Title order={2} size="h4" mb="xs">Scopes, environments and allowlists</Title>
      <Stack gap="xs">
        {field("scopes", "Scopes", "verb:resource, e.g. read:tickets")}
        {field("environments", "Environments", "where the agent may run")}
        {field("egress_allow_hosts", "Egress allowlist", "hosts or globs, e.g. *.github.com")}
        {field("shell_allow_commands", "Shell allowlist", "commands, e.g. pytest")}
        <NonFieldError error={save.error} />
        <Group><RoleButton capability="edit_agents" type="submit" loading={save.isPending}>Save</RoleButton></Group>
      </Stack>
    </Card>
  );
}

function Keys({ agent }: { agent: Agent }) {
  const client = useQueryClient();
  const keys = useQuery({ queryKey: ["keys", agent.name], queryFn: () => api.get<Page<AgentKey>>(`${V1}/agents/${agent.name}/keys/`, { limit: 100 }) });
  const [mode, setMode] = useState<"add" | "rotate" | null>(null);
  const [publicKey, setPublicKey] = useState("");
  const [label, setLabel] = useState("");
  const [revoking, setRevoking] = useState<AgentKey | null>(null);
  const [reason, setReason] = useState("");
  const refresh = () => void client.invalidateQueries({ queryKey: ["keys", agent.name] });
  const add = useMutation({
    mutationFn: () =>
      api.post(mode === "rotate" ? `${V1}/agents/${agent.name}/rotate-key/` : `${V1}/agents/${agent.name}/keys/`, { public_key: publicKey, label }),
    onSuccess: () => { refresh(); setMode(null); setPublicKey(""); setLabel(""); },
  });
  const revoke = useMutation({
    mutationFn: (key: AgentKey) => api.post(`${V1}/agents/${agent.name}/keys/${key.key_id}/revoke/`, { reason }),
    onSuccess: () => { refresh(); setRevoking(null); setReason(""); },
  });
  const addError = add.error instanceof ApiError ? add.error : null;
  return (
    <Card withBorder>
      <Group justify="space-between" mb="xs">
        <Title order={2} size="h4">Keys</Title>
        <Group>
          <RoleButton capability="edit_agents" variant="light" onClick={() => { add.reset(); setMode("add"); }}>Add key</RoleButton>
          <RoleButton capability="edit_agents" variant="light" onClick={() => { add.reset(); setMode("rotate"); }}>Rotate</RoleButton>
        </Group>
      </Group>
      <QueryState query={keys} what="keys">
        {(page) =>
          page.count === 0 ? (
            <Empty title="No keys">Add the agent's Ed25519 public key (warden keygen prints it) so its records can be verified.</Empty>
          ) : (
            <Table.ScrollContainer minWidth={600}>
              <Table>
                <Table.Thead><Table.Tr><Table.Th>Key id</Table.Th><Table.Th>Label</Table.Th><Table.Th>Created</Table.Th><Table.Th>State</Table.Th><Table.Th /></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {page.results.map((key) => (
                    <Table.Tr key={key.key_id}>
                      <Table.Td><code>{key.key_id}</code></Table.Td>
                      <Table.Td>{key.label}</Table.Td>
                      <Table.Td>{when(key.created_at)}</Table.Td>
                      <Table.Td>{key.is_active ? <StatusBadge value="active" /> : <Text size="xs">revoked {when(key.revoked_at)} {key.revoked_reason}</Text>}</Table.Td>
                      <Table.Td>{key.is_active && <RoleButton capability="edit_agents" size="xs" color="red" variant="light" onClick={() => setRevoking(key)}>Revoke</RoleButton>}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )
        }
      </QueryState>
      <Modal opened={mode !== null} onClose={() => setMode(null)} title={mode === "rotate" ? "Rotate: add a new key and revoke the others" : "Add a key"}>
        <Stack>
          <Textarea label="Public key (base64 Ed25519)" value={publicKey} onChange={(e) => setPublicKey(e.currentTarget.value)} error={addError?.field("public_key")} autosize minRows={2} />
          <TextInput label="Label" value={label} onChange={(e) => setLabel(e.currentTarget.value)} error={addError?.field("label")} />
          <NonFieldError error={add.error} />
          <Button onClick={() => add.mutate()} loading={add.isPending}>{mode === "rotate" ? "Rotate" : "Add key"}</Button>
        </Stack>
      </Modal>
      <Modal opened={revoking !== null} onClose={() => setRevoking(null)} title={`Revoke key ${revoking?.key_id ?? ""}`}>
        <Stack>
          <Text size="sm">Records signed with this key after now are quarantined.</Text>
          <Textarea label="Reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)} />
          <NonFieldError error={revoke.error} />
          <Button color="red" onClick={() => revoking && revoke.mutate(revoking)} loading={revoke.isPending}>Revoke key</Button>
        </Stack>
      </Modal>
    </Card>
  );
}

function RecentActivity({ agent }: { agent: Agent }) {
  const events = useQuery({
    queryKey: ["agent-events", agent.name],
    queryFn: () => api.get<Page<AuditEvent>>(`${V1}/audit/events/`, { agent: agent.name, limit: 200, ordering: "-time" }),
  });
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">Recent decisions and sessions</Title>
      <QueryState query={events} what="activity">
        {(page) => {
          const decisions = page.results.filter((event) => event.kind === "decision").slice(0, 10);
          const sessions = [...new Set(page.results.map((event) => event.session_id))];
          if (page.count === 0) return <Empty title="No signed records yet">Once the agent's shipper sends records, its decisions and sessions appear here.</Empty>;
          return (
            <Stack gap="xs">
              <Text size="sm" fw={600}>Sessions</Text>
              <Group gap="xs">
                {sessions.map((session) => (
                  <Anchor key={session} component={Link} to={`/audit/sessions/${agent.name}/${encodeURIComponent(session)}`}>{session}</Anchor>
                ))}
              </Group>
              <Table>
                <Table.Thead><Table.Tr><Table.Th>Time</Table.Th><Table.Th>Tool</Table.Th><Table.Th>Effect</Table.Th><Table.Th>Rules</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {decisions.map((event) => (
                    <Table.Tr key={event.id}>
                      <Table.Td>{when(event.time)}</Table.Td>
                      <Table.Td>{event.tool}</Table.Td>
                      <Table.Td><StatusBadge value={event.effect} /></Table.Td>
                      <Table.Td>{((event.rule_ids as string[] | undefined) ?? []).join(", ")}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Stack>
          );
        }}
      </QueryState>
    </Card>
  );
}
