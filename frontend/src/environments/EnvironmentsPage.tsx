import { Alert, Anchor, Button, Card, Group, Modal, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useSearchParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Activation, Environment, EnvironmentToken, EnvironmentTokenCreated, OPAInstance, SigningKey } from "../api/types";
import { useSession } from "../auth/session";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton, Secret, shortRevision, StatusBadge, when } from "../components/widgets";
import { instanceState } from "../overview/summary";
import { opaConfig } from "./opaConfig";

export function EnvironmentsPage() {
  const [params, setParams] = useSearchParams();
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  return (
    <Stack>
      <Title order={1} size="h2">Environments and fleet</Title>
      <QueryState query={environments} what="environments">
        {(page) => {
          if (!page.count) return <Empty title="No environments">Create one with POST /api/v1/environments/ (dev, staging, prod), then publish policies to it.</Empty>;
          const name = params.get("name") ?? page.results[0]!.name;
          const selected = page.results.find((env) => env.name === name) ?? page.results[0]!;
          return (
            <>
              <Group gap="xs" role="tablist" aria-label="Environments">
                {page.results.map((env) => (
                  <Button key={env.id} role="tab" aria-selected={env.name === selected.name} variant={env.name === selected.name ? "filled" : "default"} onClick={() => setParams({ name: env.name })}>
                    {env.name}
                  </Button>
                ))}
              </Group>
              <EnvironmentDetail env={selected} key={selected.id} />
            </>
          );
        }}
      </QueryState>
    </Stack>
  );
}

function EnvironmentDetail({ env }: { env: Environment }) {
  const session = useSession();
  const activations = useQuery({ queryKey: ["activations", env.name], queryFn: () => api.get<Page<Activation>>(`${V1}/environments/${env.name}/activations/`, { limit: 20 }) });
  const instances = useQuery({ queryKey: ["instances", env.name], queryFn: () => api.get<Page<OPAInstance>>(`${V1}/opa/instances/`, { environment: env.name, limit: 200 }), refetchInterval: 10_000 });
  return (
    <Stack>
      <Card withBorder>
        <Title order={2} size="h4">{env.name}</Title>
        <Text size="sm">{env.description || "No description."}</Text>
        <Text size="sm">Active bundle: <code>{shortRevision(env.active_bundle?.revision)}</code> built {when(env.active_bundle?.created_at)}{env.active_bundle?.reason ? ` (${env.active_bundle.reason})` : ""}</Text>
      </Card>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">Activation history</Title>
        <QueryState query={activations} what="activations">
          {(page) => page.count === 0 ? <Empty title="Never activated">Publish policies to this environment on the Policies page.</Empty> : (
            <Table.ScrollContainer minWidth={600}>
              <Table>
                <Table.Thead><Table.Tr><Table.Th>When</Table.Th><Table.Th>Revision</Table.Th><Table.Th>Previous</Table.Th><Table.Th>By</Table.Th><Table.Th>Reason</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {page.results.map((activation) => (
                    <Table.Tr key={activation.id}>
                      <Table.Td>{when(activation.activated_at)}</Table.Td>
                      <Table.Td><code>{shortRevision(activation.bundle.revision)}</code></Table.Td>
                      <Table.Td><code>{shortRevision(activation.previous_revision)}</code></Table.Td>
                      <Table.Td>{activation.activated_by || "system"}</Table.Td>
                      <Table.Td>{activation.reason}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </QueryState>
      </Card>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">Engines (OPA and sidecars)</Title>
        <QueryState query={instances} what="engines">
          {(page) => page.count === 0 ? <Empty title="No engine has reported">Run OPA with a token of this environment (below); its status reports appear here.</Empty> : (
            <Table.ScrollContainer minWidth={700}>
              <Table>
                <Table.Thead><Table.Tr><Table.Th>Instance</Table.Th><Table.Th>Version</Table.Th><Table.Th>Runs revision</Table.Th><Table.Th>State</Table.Th><Table.Th>Last report</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {page.results.map((instance) => (
                    <Table.Tr key={instance.id}>
                      <Table.Td>{instance.instance_id}</Table.Td>
                      <Table.Td>{instance.version}</Table.Td>
                      <Table.Td><code>{shortRevision(instance.active_revision)}</code></Table.Td>
                      <Table.Td><StatusBadge value={instanceState(instance)} /></Table.Td>
                      <Table.Td>{when(instance.last_seen)}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </QueryState>
      </Card>
      {session.can("manage_environments") ? <Tokens env={env} /> : (
        <Card withBorder><Title order={2} size="h4">Tokens for OPA</Title><Text size="sm" data-testid="role-reason">{session.whyNot("manage_environments")}</Text></Card>
      )}
    </Stack>
  );
}

function Tokens({ env }: { env: Environment }) {
  const client = useQueryClient();
  const tokens = useQuery({ queryKey: ["env-tokens", env.name], queryFn: () => api.get<Page<EnvironmentToken>>(`${V1}/environments/${env.name}/tokens/`, { limit: 100 }) });
  const keys = useQuery({ queryKey: ["signing-keys"], queryFn: () => api.get<Page<SigningKey>>(`${V1}/signing-keys/`, { is_active: true, limit: 5 }) });
  const [name, setName] = useState("");
  const [created, setCreated] = useState<EnvironmentTokenCreated | null>(null);
  const create = useMutation({
    mutationFn: () => api.post<EnvironmentTokenCreated>(`${V1}/environments/${env.name}/tokens/`, { name }),
    onSuccess: (token) => { setCreated(token); setName(""); void client.invalidateQueries({ queryKey: ["env-tokens", env.name] }); },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => api.del(`${V1}/environments/${env.name}/tokens/${id}/`),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["env-tokens", env.name] }),
  });
  const error = create.error instanceof ApiError ? create.error : null;
  const key = keys.data?.results.find((item) => item.is_active);
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">Tokens for OPA</Title>
      <Group align="flex-end" component="form" onSubmit={(e) => { e.preventDefault(); create.mutate(); }}>
        <TextInput label="New token name" value={name} onChange={(e) => setName(e.currentTarget.value)} error={error?.field("name")} required />
        <RoleButton capability="manage_environments" type="submit" loading={create.isPending}>Create token</RoleButton>
      </Group>
      <NonFieldError error={create.error} />
      <QueryState query={tokens} what="tokens">
        {(page) => page.count === 0 ? <Empty title="No tokens">Create one for each OPA deployment of this environment.</Empty> : (
          <Table mt="sm">
            <Table.Thead><Table.Tr><Table.Th>Name</Table.Th><Table.Th>Prefix</Table.Th><Table.Th>Created</Table.Th><Table.Th>Last used</Table.Th><Table.Th /></Table.Tr></Table.Thead>
            <Table.Tbody>
              {page.results.map((token) => (
                <Table.Tr key={token.id}>
                  <Table.Td>{token.name}</Table.Td><Table.Td><code>{token.prefix}</code></Table.Td>
                  <Table.Td>{when(token.created_at)}</Table.Td><Table.Td>{when(token.last_used_at)}</Table.Td>
                  <Table.Td>{token.revoked_at ? <StatusBadge value="revoked" /> : <Button size="xs" color="red" variant="light" onClick={() => revoke.mutate(token.id)}>Revoke</Button>}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        )}
      </QueryState>
      <Modal opened={created !== null} onClose={() => setCreated(null)} title="Token created: copy it now" size="xl">
        {created && (
          <Stack>
            <Alert color="yellow">This is the only time the token is shown. Warden keeps only its hash.</Alert>
            <Secret label="Token" value={created.token} />
            {key ? (
              <Secret label="OPA configuration (opa run --server --config-file config.yaml)" value={opaConfig({ serviceUrl: window.location.origin, environment: env.name, token: created.token, keyId: key.kid, publicKeyPem: key.public_key_pem })} />
            ) : <Text size="sm">No active signing key yet: publish a bundle first, then see <Anchor href="/api/v1/signing-keys/">the signing keys</Anchor>.</Text>}
            <Button onClick={() => setCreated(null)}>I have copied it</Button>
          </Stack>
        )}
      </Modal>
    </Card>
  );
}
