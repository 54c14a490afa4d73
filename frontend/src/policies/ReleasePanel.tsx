import { Alert, Anchor, Button, Group, List, Modal, Stack, Table, Text, TextInput } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Activation, Bundle, Environment, PolicyModule } from "../api/types";
import { Empty, Loading, NonFieldError, QueryState } from "../components/states";
import { RoleButton, shortRevision, when } from "../components/widgets";
import { bundleFileChanges, isEmpty, type FileChanges } from "./bundleDiff";

type Release = { kind: "publish" | "rollback"; env: Environment } | { kind: "promote"; env: Environment; to: Environment };

export function ReleasePanel() {
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const [release, setRelease] = useState<Release | null>(null);
  const [result, setResult] = useState<string | null>(null);
  return (
    <Stack>
      <Text size="sm" c="dimmed">Publish builds the current policies into a signed bundle for an environment; promote sends an environment's active policies to the next; roll back returns to the previous policies. Every engine polling the environment picks the bundle up.</Text>
      {result && <Alert color="green" data-testid="release-result" withCloseButton onClose={() => setResult(null)}>{result}</Alert>}
      <QueryState query={environments} what="environments">
        {(page) => {
          const envs = [...page.results].sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
          if (!envs.length) return <Empty title="No environments">Create one on the Environments page first.</Empty>;
          return (
            <Table.ScrollContainer minWidth={700}>
              <Table>
                <Table.Thead><Table.Tr><Table.Th>Environment</Table.Th><Table.Th>Active revision</Table.Th><Table.Th>Built</Table.Th><Table.Th>Actions</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {envs.map((env, index) => {
                    const next = envs[index + 1];
                    return (
                      <Table.Tr key={env.id}>
                        <Table.Td>{env.name}</Table.Td>
                        <Table.Td><code data-testid={`revision-${env.name}`}>{shortRevision(env.active_bundle?.revision)}</code></Table.Td>
                        <Table.Td>{when(env.active_bundle?.created_at)}</Table.Td>
                        <Table.Td>
                          <Group gap="xs">
                            <RoleButton capability="release_bundles" size="xs" onClick={() => setRelease({ kind: "publish", env })} aria-label={`Publish to ${env.name}`}>Publish</RoleButton>
                            {next && env.active_bundle && (
                              <RoleButton capability="release_bundles" size="xs" variant="light" onClick={() => setRelease({ kind: "promote", env, to: next })} aria-label={`Promote ${env.name} to ${next.name}`}>Promote to {next.name}</RoleButton>
                            )}
                            {env.active_bundle && (
                              <RoleButton capability="release_bundles" size="xs" variant="light" color="orange" onClick={() => setRelease({ kind: "rollback", env })} aria-label={`Roll back ${env.name}`}>Roll back</RoleButton>
                            )}
                          </Group>
                        </Table.Td>
                      </Table.Tr>
                    );
                  })}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          );
        }}
      </QueryState>
      {release && <ConfirmRelease release={release} onClose={() => setRelease(null)} onDone={(text) => { setRelease(null); setResult(text); }} />}
    </Stack>
  );
}

function title(release: Release): string {
  if (release.kind === "promote") return `Promote ${release.env.name} to ${release.to.name}`;
  return release.kind === "publish" ? `Publish the current policies to ${release.env.name}` : `Roll back ${release.env.name}`;
}

function ConfirmRelease({ release, onClose, onDone }: { release: Release; onClose: () => void; onDone: (text: string) => void }) {
  const client = useQueryClient();
  const [message, setMessage] = useState("");
  // The plain publish needs an impact preview or a reason to go without one (docs/authoring.md).
  const [overrideReason, setOverrideReason] = useState("");
  const changes = useQuery({ queryKey: ["release-changes", release.kind, release.env.name, release.kind === "promote" ? release.to.name : ""], queryFn: () => whatChanges(release) });
  const run = useMutation({
    mutationFn: () =>
      api.post<Bundle>(`${V1}/environments/${release.env.name}/${release.kind}/`, release.kind === "promote" ? { to: release.to.name, message }
        : release.kind === "publish" ? { message, override_reason: overrideReason } : { message }),
    onSuccess: (bundle) => {
      void client.invalidateQueries({ queryKey: ["environments"] });
      void client.invalidateQueries({ queryKey: ["activations"] });
      const target = release.kind === "promote" ? release.to.name : release.env.name;
      onDone(`${title(release)}: done. ${target} now runs revision ${shortRevision(bundle.revision)} (${bundle.tests_passed} policy tests passed).`);
    },
  });
  const error = run.error instanceof ApiError ? run.error : null;
  return (
    <Modal opened onClose={onClose} title={title(release)} size="lg">
      <Stack>
        <Text fw={600} size="sm">What changes</Text>
        {changes.isPending ? <Loading what="the changes" /> : changes.error ? <NonFieldError error={changes.error} /> : <ChangeList changes={changes.data!} />}
        <TextInput label="Message (kept in the change log)" value={message} onChange={(e) => setMessage(e.currentTarget.value)} error={error?.field("message")} />
        {release.kind === "publish" && (
          <>
            <Text size="sm">To see first what these policies would change on recorded traffic, use <Anchor component={Link} to="/authoring">Publish with impact preview</Anchor> on the Authoring page.</Text>
            <TextInput label="Why publish without an impact preview? (kept in the change log)" required value={overrideReason}
              onChange={(e) => setOverrideReason(e.currentTarget.value)} error={error?.field("override_reason") ?? error?.field("impact_preview")} />
          </>
        )}
        {error?.details.length ? (
          <Alert color="red" title="Policy tests failed; nothing was released" role="alert">
            <List size="sm">{error.details.map((detail, index) => <List.Item key={index}>{JSON.stringify(detail)}</List.Item>)}</List>
          </Alert>
        ) : null}
        <NonFieldError error={run.error} />
        {error && !error.details.length && Object.keys(error.fields).filter((f) => f !== "message").length > 0 && (
          <Text c="red.8" size="sm" role="alert">{error.message}</Text>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>Cancel</Button>
          <Button onClick={() => run.mutate()} loading={run.isPending} color={release.kind === "rollback" ? "orange" : undefined}
            disabled={release.kind === "publish" && !overrideReason.trim()}>Confirm {release.kind}</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

type Changes = { files: FileChanges | null; modules: string[]; note: string };

async function whatChanges(release: Release): Promise<Changes> {
  const current = release.env.active_bundle;
  if (release.kind === "publish") {
    const modules = await api.get<Page<PolicyModule>>(`${V1}/policies/`, { limit: 500 });
    const changed = modules.results.filter((module) => !current || module.updated_at > current.created_at).map((module) => module.path);
    return { files: null, modules: changed, note: current ? `Modules saved since revision ${shortRevision(current.revision)} was built; the registry data is rebuilt too.` : "The first bundle of this environment: the library and every module." };
  }
  const bundle = (id: string) => api.get<Bundle>(`${V1}/bundles/${id}/`);
  if (release.kind === "promote") {
    const source = await bundle(release.env.active_bundle!.id);
    const target = release.to.active_bundle ? await bundle(release.to.active_bundle.id) : null;
    return { files: bundleFileChanges((target?.files ?? {}) as Record<string, string>, source.files as Record<string, string>), modules: [], note: `${release.to.name} gets the policies of ${release.env.name} revision ${shortRevision(source.revision)}, with its own registry data.` };
  }
  const activations = await api.get<Page<Activation>>(`${V1}/environments/${release.env.name}/activations/`, { limit: 1 });
  const previous = activations.results[0]?.previous_revision;
  if (!previous) return { files: null, modules: [], note: "There is no earlier revision; the API will refuse the rollback." };
  const found = await api.get<Page<Bundle>>(`${V1}/bundles/`, { environment__name: release.env.name, revision: previous, limit: 1 });
  const before = current ? await bundle(current.id) : null;
  const after = found.results[0];
  return {
    files: after ? bundleFileChanges((before?.files ?? {}) as Record<string, string>, after.files as Record<string, string>) : null,
    modules: [],
    note: `Back to the policies of revision ${shortRevision(previous)}; the registry data stays current.`,
  };
}

function ChangeList({ changes }: { changes: Changes }) {
  return (
    <Stack gap={4} data-testid="release-changes">
      <Text size="sm">{changes.note}</Text>
      {changes.modules.length > 0 && <List size="sm">{changes.modules.map((path) => <List.Item key={path}>changed module: <code>{path}</code></List.Item>)}</List>}
      {changes.files && (isEmpty(changes.files) ? <Text size="sm">No policy file differs.</Text> : (
        <List size="sm">
          {changes.files.added.map((path) => <List.Item key={`a${path}`}>added: <code>{path}</code></List.Item>)}
          {changes.files.changed.map((path) => <List.Item key={`c${path}`}>changed: <code>{path}</code></List.Item>)}
          {changes.files.removed.map((path) => <List.Item key={`r${path}`}>removed: <code>{path}</code></List.Item>)}
        </List>
      ))}
    </Stack>
  );
}
