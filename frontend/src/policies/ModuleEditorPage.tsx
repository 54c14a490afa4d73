import { Alert, Anchor, Button, Card, Group, List, Select, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { PolicyModule, PolicyRevision } from "../api/types";
import { useSession } from "../auth/session";
import { NonFieldError, QueryState } from "../components/states";
import { RoleButton, when } from "../components/widgets";
import { DiffView } from "./DiffView";
import { compileProblems, isSameModule, type CompileProblem } from "./rego";
import { RegoEditor } from "./RegoEditor";

const TEMPLATE = `package warden.org.example

import rego.v1

# Deny refunds over 1000 (an example rule: rename the package and write your own).
deny contains {"rule": "big-refunds", "message": "Refunds over 1000 need a person", "controls": []} if {
\tinput.action.tool == "refund"
\tinput.action.args.amount > 1000
}
`;

export function ModuleEditorPage() {
  const { id } = useParams();
  const module = useQuery({
    queryKey: ["policy", id],
    queryFn: () => api.get<PolicyModule>(`${V1}/policies/${id}/`),
    enabled: !!id,
  });
  if (!id) return <Editor module={null} />;
  return <QueryState query={module} what="the module">{(data) => <Editor module={data} key={data.id} />}</QueryState>;
}

function Editor({ module }: { module: PolicyModule | null }) {
  const session = useSession();
  const client = useQueryClient();
  const navigate = useNavigate();
  const [path, setPath] = useState(module?.path ?? "");
  const [source, setSource] = useState(module?.source ?? TEMPLATE);
  const [message, setMessage] = useState("");
  const save = useMutation({
    mutationFn: () =>
      module
        ? api.patch<PolicyModule>(`${V1}/policies/${module.id}/`, { source, message })
        : api.post<PolicyModule>(`${V1}/policies/`, { path, source, message }),
    onSuccess: (saved) => {
      notifications.show({ color: "green", message: `Saved ${saved.path} as revision ${saved.revision}.` });
      void client.invalidateQueries({ queryKey: ["policies"] });
      void client.invalidateQueries({ queryKey: ["revisions", saved.id] });
      client.setQueryData(["policy", saved.id], saved);
      setMessage("");
      if (!module) navigate(`/policies/modules/${saved.id}`, { replace: true });
    },
  });
  const error = save.error instanceof ApiError ? save.error : null;
  const problems: CompileProblem[] = error ? compileProblems(error.details) : [];
  const here = problems.filter((problem) => isSameModule(problem.file, module?.path ?? path));
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">{module ? module.path : "New policy module"}</Title>
        <Anchor component={Link} to="/policies">All modules</Anchor>
      </Group>
      {!session.can("write_policies") && <Alert color="gray">{session.whyNot("write_policies")} The editor is read-only.</Alert>}
      <Card withBorder component="form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
        <Stack>
          {!module && (
            <TextInput label="Path" description="e.g. finance/refunds.rego" value={path} onChange={(e) => setPath(e.currentTarget.value)} error={error?.field("path")} required />
          )}
          <RegoEditor value={source} onChange={setSource} problems={here} readOnly={!session.can("write_policies")} label={`Rego source of ${module?.path ?? "the new module"}`} />
          {problems.length > 0 ? (
            <Alert color="red" title="The module does not compile" role="alert" data-testid="compile-errors">
              <List size="sm">
                {problems.map((problem, index) => (
                  <List.Item key={index}><code>{problem.file}:{problem.line}:{problem.column}</code>: {problem.message}</List.Item>
                ))}
              </List>
            </Alert>
          ) : (
            error?.field("source") && <Text c="red.8" size="sm" role="alert">{error.field("source")}</Text>
          )}
          <TextInput label="Revision message" placeholder="what changed and why" value={message} onChange={(e) => setMessage(e.currentTarget.value)} error={error?.field("message")} />
          <NonFieldError error={save.error} />
          <Group><RoleButton capability="write_policies" type="submit" loading={save.isPending}>Save (compile and keep a revision)</RoleButton></Group>
        </Stack>
      </Card>
      {module && <Revisions module={module} />}
    </Stack>
  );
}

function Revisions({ module }: { module: PolicyModule }) {
  const revisions = useQuery({
    queryKey: ["revisions", module.id],
    queryFn: () => api.get<Page<PolicyRevision>>(`${V1}/policies/${module.id}/revisions/`, { limit: 100 }),
  });
  const [selected, setSelected] = useState<string | null>(null);
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">Revision history</Title>
      <QueryState query={revisions} what="revisions">
        {(page) => <RevisionTable revisions={page.results} selected={selected} onSelect={setSelected} />}
      </QueryState>
    </Card>
  );
}

function RevisionTable({ revisions, selected, onSelect }: { revisions: PolicyRevision[]; selected: string | null; onSelect: (id: string | null) => void }) {
  const options = revisions.map((revision) => ({ value: revision.id, label: `#${revision.number} ${revision.message || "(no message)"}` }));
  const chosen = revisions.find((revision) => revision.id === selected) ?? revisions[0];
  const previous = useMemo(() => (chosen ? revisions.find((revision) => revision.number === chosen.number - 1) : undefined), [chosen, revisions]);
  return (
    <Stack>
      <Table>
        <Table.Thead><Table.Tr><Table.Th>#</Table.Th><Table.Th>Author</Table.Th><Table.Th>Message</Table.Th><Table.Th>When</Table.Th><Table.Th /></Table.Tr></Table.Thead>
        <Table.Tbody>
          {revisions.map((revision) => (
            <Table.Tr key={revision.id}>
              <Table.Td>{revision.number}</Table.Td>
              <Table.Td>{revision.author}</Table.Td>
              <Table.Td>{revision.message || "—"}</Table.Td>
              <Table.Td>{when(revision.created_at)}</Table.Td>
              <Table.Td><Button size="xs" variant="subtle" onClick={() => onSelect(revision.id)} aria-label={`Show the diff of revision ${revision.number}`}>Diff</Button></Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {chosen && (
        <Stack gap="xs">
          <Select label="Diff of revision" data={options} value={chosen.id} onChange={onSelect} allowDeselect={false} />
          <Text size="sm" c="dimmed">Revision {chosen.number} against {previous ? `revision ${previous.number}` : "nothing (first revision)"}</Text>
          <DiffView before={previous?.source ?? ""} after={chosen.source} />
        </Stack>
      )}
    </Stack>
  );
}
