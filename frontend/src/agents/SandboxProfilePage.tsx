// The agent's sandbox profile (docs/sandbox.md): which host paths its code and shell tools
// may read and write and the limits of each run. Hosts and commands come from the agent's
// egress and shell allowlists, shown here read-only. Saved with PATCH /agents/{name}/; the
// API validates it with the SDK's own rule, and engines get it with the next bundle.
import { Alert, Anchor, Card, Group, List, NumberInput, SimpleGrid, Stack, Switch, TagsInput, Text, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Agent, Tool } from "../api/types";
import { useSession } from "../auth/session";
import { NonFieldError, QueryState } from "../components/states";
import { RoleButton } from "../components/widgets";
import { formFromProfile, formProblems, LIMITS, profileFromForm, type SandboxForm } from "./sandboxProfile";

export function SandboxProfilePage() {
  const { name = "" } = useParams();
  const agent = useQuery({ queryKey: ["agent", name], queryFn: () => api.get<Agent>(`${V1}/agents/${name}/`) });
  return (
    <QueryState query={agent} what={`agent ${name}`}>
      {(data) => <SandboxEditor key={data.updated_at} agent={data} />}
    </QueryState>
  );
}

function SandboxEditor({ agent }: { agent: Agent }) {
  const session = useSession();
  const client = useQueryClient();
  const editable = session.can("edit_agents");
  const [form, setForm] = useState<SandboxForm>(() => formFromProfile(agent.sandbox_profile));
  const tools = useQuery({ queryKey: ["tools"], queryFn: () => api.get<Page<Tool>>(`${V1}/tools/`, { limit: 500 }) });
  const save = useMutation({
    mutationFn: () => api.patch<Agent>(`${V1}/agents/${agent.name}/`, { sandbox_profile: profileFromForm(form) }),
    onSuccess: (updated) => {
      client.setQueryData(["agent", agent.name], updated);
      notifications.show({ color: "green", message: `Saved the sandbox of ${agent.name}; engines get it with the next bundle.` });
    },
  });
  const serverError = save.error instanceof ApiError ? save.error.field("sandbox_profile") : undefined;
  const hints = formProblems(form);
  const paths = (key: "file_read" | "file_write", label: string, hint: string) => (
    <TagsInput label={label} description={hint} value={form[key]} disabled={!editable || !form.enabled} clearable
      onChange={(value) => setForm({ ...form, [key]: value })} splitChars={[",", " "]} />
  );
  const hosts = (agent.egress_allow_hosts as string[] | undefined) ?? [];
  const commands = (agent.shell_allow_commands as string[] | undefined) ?? [];
  return (
    <Stack component="form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
      <Group justify="space-between">
        <Title order={1} size="h2">Sandbox of {agent.name}</Title>
        <Anchor component={Link} to={`/agents/${agent.name}`}>Back to the agent</Anchor>
      </Group>
      <Text size="sm">
        Code and shell tools run under bubblewrap with only these paths, no network except the egress allowlist
        (through Warden's proxy), only the shell allowlist's commands, and these limits.
      </Text>
      <Switch label="Sandboxed tools may run (off: every sandboxed tool of this agent is refused, never run unsandboxed)"
        checked={form.enabled} disabled={!editable} onChange={(e) => setForm({ ...form, enabled: e.currentTarget.checked })} />
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Files</Title>
          <Stack gap="xs">
            {paths("file_read", "Read-only paths", "absolute host paths, e.g. /srv/data")}
            {paths("file_write", "Writable paths", "absolute host paths, e.g. /srv/out; a write anywhere else is a violation")}
          </Stack>
        </Card>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Limits per run</Title>
          <SimpleGrid cols={2} spacing="xs">
            {LIMITS.map((limit) => (
              <NumberInput key={limit.name} label={`${limit.label}${limit.unit ? ` (${limit.unit})` : ""}`} size="xs"
                placeholder={`default ${limit.default}`} min={limit.min} max={limit.max} disabled={!editable || !form.enabled}
                value={form.limits[limit.name] ?? ""} allowDecimal={limit.name === "wall_seconds"}
                onChange={(value) => setForm({ ...form, limits: { ...form.limits, [limit.name]: typeof value === "number" ? value : undefined } })} />
            ))}
          </SimpleGrid>
        </Card>
      </SimpleGrid>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">From the agent's allowlists</Title>
        <Text size="sm">Network: {hosts.length ? hosts.join(", ") : "none (no network at all)"}</Text>
        <Text size="sm">Commands: {commands.length ? commands.join(", ") : "none (nothing may start)"}</Text>
        <QueryState query={tools} what="tools">
          {(page) => {
            const sandboxed = page.results.filter((tool) => tool.sandbox_required);
            return sandboxed.length === 0 ? <Text size="sm" c="dimmed">No tool in the catalog must run sandboxed.</Text> : (
              <>
                <Text size="sm" mt="xs">Tools the catalog runs only in the sandbox:</Text>
                <List size="sm" data-testid="sandboxed-tools">
                  {sandboxed.map((tool) => (
                    <List.Item key={tool.name}>
                      {tool.name} ({tool.sandbox_profile && Object.keys(tool.sandbox_profile as object).length ? "its own files and limits" : "this profile"})
                    </List.Item>
                  ))}
                </List>
              </>
            );
          }}
        </QueryState>
      </Card>
      {hints.length > 0 && <Alert color="yellow" data-testid="sandbox-hints">{hints.map((h) => <div key={h}>{h}</div>)}</Alert>}
      {serverError && <Alert color="red" role="alert">{serverError}</Alert>}
      <NonFieldError error={save.error} />
      <Group><RoleButton capability="edit_agents" type="submit" loading={save.isPending} disabled={hints.length > 0}>Save sandbox</RoleButton></Group>
    </Stack>
  );
}
