import { Anchor, Group, Stack, Table, Tabs, Text, Title } from "@mantine/core";
import { useMutation, useQuery } from "@tanstack/react-query";
import { Link, Route, Routes, useNavigate, useSearchParams } from "react-router";
import { api, V1, type Page } from "../api/client";
import type { PolicyModule, PolicyTestReport } from "../api/types";
import { Empty, Failure, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";
import { ModuleEditorPage } from "./ModuleEditorPage";
import { ReleasePanel } from "./ReleasePanel";

export function PoliciesPage() {
  return (
    <Routes>
      <Route index element={<PolicyHome />} />
      <Route path="new" element={<ModuleEditorPage />} />
      <Route path="modules/:id" element={<ModuleEditorPage />} />
    </Routes>
  );
}

function PolicyHome() {
  const [params, setParams] = useSearchParams();
  const tab = params.get("tab") ?? "modules";
  return (
    <Stack>
      <Title order={1} size="h2">Policies</Title>
      <Tabs value={tab} onChange={(value) => setParams(value ? { tab: value } : {}, { replace: true })}>
        <Tabs.List>
          <Tabs.Tab value="modules">Modules</Tabs.Tab>
          <Tabs.Tab value="tests">Tests</Tabs.Tab>
          <Tabs.Tab value="release">Publish, promote, roll back</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="modules" pt="md"><Modules /></Tabs.Panel>
        <Tabs.Panel value="tests" pt="md"><PolicyTests /></Tabs.Panel>
        <Tabs.Panel value="release" pt="md"><ReleasePanel /></Tabs.Panel>
      </Tabs>
    </Stack>
  );
}

function Modules() {
  const navigate = useNavigate();
  const modules = useQuery({ queryKey: ["policies"], queryFn: () => api.get<Page<PolicyModule>>(`${V1}/policies/`, { limit: 500, is_deleted: false }) });
  return (
    <Stack>
      <Group justify="space-between">
        <Text size="sm" c="dimmed">Your organisation's Rego modules. The Warden library's policies are always in every bundle.</Text>
        <RoleButton capability="write_policies" onClick={() => navigate("/policies/new")}>New module</RoleButton>
      </Group>
      <QueryState query={modules} what="policy modules">
        {(page) =>
          page.count === 0 ? (
            <Empty title="No organisation modules yet">Bundles carry the Warden library only. Write a module (New module) to add your own rules.</Empty>
          ) : (
            <Table striped>
              <Table.Thead><Table.Tr><Table.Th>Path</Table.Th><Table.Th>Package</Table.Th><Table.Th>Revision</Table.Th><Table.Th>Author</Table.Th><Table.Th>Updated</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {page.results.map((module) => (
                  <Table.Tr key={module.id}>
                    <Table.Td><Anchor component={Link} to={`/policies/modules/${module.id}`}>{module.path}</Anchor></Table.Td>
                    <Table.Td><code>{module.package}</code></Table.Td>
                    <Table.Td>{module.revision}</Table.Td>
                    <Table.Td>{module.author}</Table.Td>
                    <Table.Td>{when(module.updated_at)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )
        }
      </QueryState>
    </Stack>
  );
}

function PolicyTests() {
  const run = useMutation({ mutationFn: () => api.post<PolicyTestReport>(`${V1}/policies/test/`) });
  const failures = run.data?.results.filter((result) => !result.passed) ?? [];
  return (
    <Stack>
      <Group>
        <RoleButton capability="write_policies" onClick={() => run.mutate()} loading={run.isPending}>Run policy tests</RoleButton>
        <Text size="sm" c="dimmed">The library's and your modules' test_ rules (files ending in _test.rego).</Text>
      </Group>
      {run.error ? <Failure error={run.error} /> : null}
      {run.data && (
        <Stack gap="xs" data-testid="test-report">
          <Text fw={700}>{run.data.passed} passed, {run.data.failed} failed</Text>
          {failures.length === 0 ? (
            <Text c="green.9">Every test passed.</Text>
          ) : (
            <Table>
              <Table.Thead><Table.Tr><Table.Th>Test</Table.Th><Table.Th>Result</Table.Th><Table.Th>Message</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {failures.map((result) => (
                  <Table.Tr key={result.test}><Table.Td><code>{result.test}</code></Table.Td><Table.Td><StatusBadge value="failed" /></Table.Td><Table.Td>{result.message}</Table.Td></Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )}
        </Stack>
      )}
    </Stack>
  );
}
