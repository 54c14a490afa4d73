import { Anchor, Card, Group, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { lazy, Suspense } from "react";
import { Link } from "react-router";
import { api, V1, type Page } from "../api/client";
import type { Agent, AuditEvent, Environment, GapReport, OPAInstance, QuarantinedRecord } from "../api/types";
import { Empty, Loading, QueryState } from "../components/states";
import { shortRevision, StatusBadge } from "../components/widgets";
import { agentSummary, countBy, decisionsByHour, instanceState, latestScores } from "./summary";

const DecisionsChart = lazy(async () => ({ default: (await import("./DecisionsChart")).DecisionsChart }));

function Counts({ counts, link }: { counts: Record<string, number>; link: (key: string) => string }) {
  const entries = Object.entries(counts);
  if (!entries.length) return <Text c="dimmed" size="sm">none</Text>;
  return (
    <Group gap="md">
      {entries.map(([key, count]) => (
        <Anchor component={Link} to={link(key)} key={key} size="sm">
          <Group gap={4}><StatusBadge value={key} /> <Text span fw={700}>{count}</Text></Group>
        </Anchor>
      ))}
    </Group>
  );
}

export function OverviewPage() {
  const since = new Date(Date.now() - 24 * 3600_000).toISOString();
  const agents = useQuery({ queryKey: ["agents", "all"], queryFn: () => api.get<Page<Agent>>(`${V1}/agents/`, { limit: 1000 }) });
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100 }) });
  const instances = useQuery({ queryKey: ["instances"], queryFn: () => api.get<Page<OPAInstance>>(`${V1}/opa/instances/`, { limit: 1000 }) });
  const decisions = useQuery({
    queryKey: ["decisions-24h"],
    queryFn: () => api.get<Page<AuditEvent>>(`${V1}/audit/events/`, { kind: "decision", time_after: since, limit: 1000 }),
  });
  const quarantine = useQuery({ queryKey: ["quarantine-count"], queryFn: () => api.get<Page<QuarantinedRecord>>(`${V1}/audit/quarantine/`, { limit: 1 }) });
  const reports = useQuery({ queryKey: ["reports", "done"], queryFn: () => api.get<Page<GapReport>>(`${V1}/compliance/reports/`, { status: "done", limit: 200 }) });

  return (
    <Stack>
      <Title order={1} size="h2">Overview</Title>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Agents</Title>
          <QueryState query={agents} what="agents">
            {(page) => {
              const summary = agentSummary(page.results);
              return page.count === 0 ? (
                <Empty title="No agents registered">Register an agent with the API or the SDK, then come back.</Empty>
              ) : (
                <Stack gap="xs">
                  <Text size="sm">By status</Text>
                  <Counts counts={summary.byStatus} link={(status) => `/agents?status=${status}`} />
                  <Text size="sm">By risk tier</Text>
                  <Counts counts={summary.byRisk} link={(tier) => `/agents?risk_tier=${tier}`} />
                </Stack>
              );
            }}
          </QueryState>
        </Card>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Environments</Title>
          <QueryState query={environments} what="environments">
            {(page) =>
              page.count === 0 ? (
                <Empty title="No environments">Create one under Environments and publish policies to it.</Empty>
              ) : (
                <Table>
                  <Table.Thead><Table.Tr><Table.Th>Environment</Table.Th><Table.Th>Active revision</Table.Th></Table.Tr></Table.Thead>
                  <Table.Tbody>
                    {page.results.map((env) => (
                      <Table.Tr key={env.id}>
                        <Table.Td><Anchor component={Link} to={`/environments?name=${env.name}`}>{env.name}</Anchor></Table.Td>
                        <Table.Td><code>{shortRevision(env.active_bundle?.revision)}</code></Table.Td>
                      </Table.Tr>
                    ))}
                  </Table.Tbody>
                </Table>
              )
            }
          </QueryState>
        </Card>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Policy engines (OPA and sidecars)</Title>
          <QueryState query={instances} what="engines">
            {(page) =>
              page.count === 0 ? (
                <Empty title="No engine has reported yet">Configure OPA with an environment token (Environments page); it reports its status here.</Empty>
              ) : (
                <Counts counts={countBy(page.results, instanceState)} link={() => "/environments"} />
              )
            }
          </QueryState>
        </Card>
        <Card withBorder>
          <Title order={2} size="h4" mb="xs">Quarantined records</Title>
          <QueryState query={quarantine} what="quarantine">
            {(page) => (
              <Anchor component={Link} to="/audit?tab=quarantine" fw={700} data-testid="quarantine-count">
                {page.count} record{page.count === 1 ? "" : "s"} failed verification
              </Anchor>
            )}
          </QueryState>
        </Card>
      </SimpleGrid>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">Decisions in the last 24 hours</Title>
        <QueryState query={decisions} what="decisions">
          {(page) => {
            const byEffect = countBy(page.results, (event) => event.effect || "deny");
            return (
              <Stack gap="xs">
                <Counts counts={byEffect} link={(effect) => `/audit?effect=${effect}`} />
                {page.count === 0 ? (
                  <Empty title="No decisions in the last 24 hours">Agents' signed decision records appear here once their shippers send them.</Empty>
                ) : (
                  <Suspense fallback={<Loading what="the chart" />}>
                    <DecisionsChart data={decisionsByHour(page.results, new Date())} />
                  </Suspense>
                )}
              </Stack>
            );
          }}
        </QueryState>
      </Card>
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">Latest compliance scores</Title>
        <QueryState query={reports} what="reports">
          {(page) => {
            const latest = latestScores(page.results);
            return latest.length === 0 ? (
              <Empty title="No finished gap report">Request one on the <Anchor component={Link} to="/compliance">Compliance</Anchor> page.</Empty>
            ) : (
              <Table>
                <Table.Thead><Table.Tr><Table.Th>Framework</Table.Th><Table.Th>Environment</Table.Th><Table.Th>Score</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {latest.map((report) => (
                    <Table.Tr key={report.id}>
                      <Table.Td><Anchor component={Link} to={`/compliance/${report.id}`}>{String(report.framework)}</Anchor></Table.Td>
                      <Table.Td>{report.environment}</Table.Td>
                      <Table.Td>{report.score === null || report.score === undefined ? "—" : `${Math.round(report.score)}%`}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            );
          }}
        </QueryState>
      </Card>
    </Stack>
  );
}
