import { Alert, Anchor, Badge, Button, Card, Group, Progress, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, Route, Routes, useNavigate, useParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { ControlResult, Environment, Framework, GapReport, GapReportDetail } from "../api/types";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { RoleButton, StatusBadge, when } from "../components/widgets";
import { AttestationsPage } from "./AttestationsPage";
import { ScopePage } from "./ScopePage";
import { SignOffCard } from "./SignOffCard";

export function CompliancePage() {
  return (
    <Routes>
      <Route index element={<Reports />} />
      <Route path="scope" element={<ScopePage />} />
      <Route path="attestations" element={<AttestationsPage />} />
      <Route path=":id" element={<ReportDetail />} />
    </Routes>
  );
}

const finished = (status: string) => status === "done" || status === "failed";

function Reports() {
  const navigate = useNavigate();
  const client = useQueryClient();
  const frameworks = useQuery({ queryKey: ["frameworks"], queryFn: () => api.get<Framework[] | Page<Framework>>(`${V1}/compliance/frameworks/`) });
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const [framework, setFramework] = useState<string | null>(null);
  const [environment, setEnvironment] = useState<string | null>(null);
  const [periodStart, setPeriodStart] = useState("");
  const [periodEnd, setPeriodEnd] = useState("");
  const reports = useQuery({
    queryKey: ["reports", framework, environment],
    queryFn: () => api.get<Page<GapReport>>(`${V1}/compliance/reports/`, { framework, environment, limit: 50, ordering: "-created_at" }),
    refetchInterval: (query) => (query.state.data?.results.some((report) => !finished(String(report.status))) ? 2000 : false),
  });
  const request = useMutation({
    mutationFn: () => api.post<GapReport>(`${V1}/compliance/reports/`, { framework, environment, period_start: periodStart || undefined, period_end: periodEnd || undefined }),
    onSuccess: (report) => { void client.invalidateQueries({ queryKey: ["reports"] }); navigate(`/compliance/${report.id}`); },
  });
  const error = request.error instanceof ApiError ? request.error : null;
  const frameworkList = Array.isArray(frameworks.data) ? frameworks.data : frameworks.data?.results ?? [];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Compliance</Title>
        <Group><Anchor component={Link} to="/compliance/scope">Scope and classifications</Anchor><Anchor component={Link} to="/compliance/attestations">Attestations and exceptions</Anchor></Group>
      </Group>
      <Card withBorder component="form" onSubmit={(e) => { e.preventDefault(); request.mutate(); }}>
        <Title order={2} size="h4" mb="xs">Gap reports</Title>
        <Text size="sm" c="dimmed" mb="xs">Choose a framework and environment to filter the list, or request a new report for them.</Text>
        <SimpleGrid cols={{ base: 1, sm: 2, lg: 4 }}>
          <Select label="Framework" data={frameworkList.map((item) => ({ value: item.id, label: item.name }))} value={framework} onChange={setFramework} clearable error={error?.field("framework")} />
          <Select label="Environment" data={(environments.data?.results ?? []).map((env) => env.name)} value={environment} onChange={setEnvironment} clearable error={error?.field("environment")} />
          <TextInput label="Period start (optional)" type="date" value={periodStart} onChange={(e) => setPeriodStart(e.currentTarget.value)} error={error?.field("period_start")} />
          <TextInput label="Period end (optional)" type="date" value={periodEnd} onChange={(e) => setPeriodEnd(e.currentTarget.value)} error={error?.field("period_end")} />
        </SimpleGrid>
        <NonFieldError error={request.error} />
        <Group mt="sm"><RoleButton capability="request_reports" type="submit" loading={request.isPending}>Request report</RoleButton></Group>
      </Card>
      <QueryState query={reports} what="reports">
        {(page) => page.count === 0 ? <Empty title="No report yet">Request one above: the report collects evidence from policies, bundles and the audit log.</Empty> : (
          <Table.ScrollContainer minWidth={700}>
            <Table striped>
              <Table.Thead><Table.Tr><Table.Th>Requested</Table.Th><Table.Th>Framework</Table.Th><Table.Th>Environment</Table.Th><Table.Th>Status</Table.Th><Table.Th>Score</Table.Th><Table.Th>By</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {page.results.map((report) => (
                  <Table.Tr key={report.id}>
                    <Table.Td><Anchor component={Link} to={`/compliance/${report.id}`}>{when(report.created_at)}</Anchor></Table.Td>
                    <Table.Td>{String(report.framework)}</Table.Td><Table.Td>{report.environment}</Table.Td>
                    <Table.Td><StatusBadge value={String(report.status)} /></Table.Td>
                    <Table.Td>{report.score === null || report.score === undefined ? "—" : `${report.score}%`}</Table.Td>
                    <Table.Td>{report.requested_by || "schedule"}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        )}
      </QueryState>
    </Stack>
  );
}

interface DiffEntry { control_id: string; from: string; to: string }
interface Notice { kind: string; control_id: string; message: string }
interface ReportDiff { notices?: Notice[]; previous_report?: string | null; score_change?: number | null; improved?: DiffEntry[]; regressed?: DiffEntry[]; changed?: DiffEntry[]; unchanged?: number; added?: string[]; removed?: string[] }

function ReportDetail() {
  const { id = "" } = useParams();
  const report = useQuery({
    queryKey: ["report", id],
    queryFn: () => api.get<GapReportDetail>(`${V1}/compliance/reports/${id}/`),
    refetchInterval: (query) => (query.state.data && finished(String(query.state.data.status)) ? false : 1000),
  });
  return (
    <QueryState query={report} what="the report">
      {(data) => {
        const status = String(data.status);
        const diff = (data.diff ?? null) as ReportDiff | null;
        const summary = (data.summary ?? {}) as Record<string, number>;
        return (
          <Stack>
            <Group justify="space-between">
              <Title order={1} size="h2">{String(data.framework)} gap report: {data.environment}</Title>
              <Anchor component={Link} to="/compliance">All reports</Anchor>
            </Group>
            <Group>
              <StatusBadge value={status} />
              <Text size="sm">requested {when(data.created_at)} by {data.requested_by || "schedule"}; period {data.period_start ?? "—"} to {data.period_end ?? "—"}</Text>
            </Group>
            {!finished(status) && (
              <Card withBorder data-testid="report-progress">
                <Text size="sm" mb={4}>{data.stage || "waiting for a worker"} ({data.progress}%)</Text>
                <Progress value={data.progress} aria-label="Report progress" animated />
              </Card>
            )}
            {status === "failed" && <Alert color="red" title="The report failed">{data.error}</Alert>}
            {status === "done" && (
              <>
                <Group>
                  <Card withBorder><Text size="sm">Score</Text><Text fw={700} size="xl" data-testid="report-score">{data.score === null ? "—" : `${data.score}%`}</Text></Card>
                  {Object.entries(summary).filter(([key]) => !["score", "total", "scored"].includes(key)).map(([key, value]) => (
                    <Card withBorder key={key}><Text size="sm">{key.replaceAll("_", " ")}</Text><Text fw={700} size="xl">{value}</Text></Card>
                  ))}
                  {data.pdf_url && <Button component="a" href={data.pdf_url} download data-testid="pdf-download">Download PDF</Button>}
                  {data.package_url && <Button component="a" variant="default" href={data.package_url} download>Evidence package (zip)</Button>}
                  <Button component="a" variant="default" href={`${V1}/compliance/reports/${data.id}/oscal/`} download>OSCAL results (JSON)</Button>
                </Group>
                {diff?.notices && diff.notices.length > 0 && (
                  <Alert color="orange" title="Monitoring notices" data-testid="notices">
                    {diff.notices.map((notice, i) => <Text size="sm" key={i}>{notice.kind === "regression" ? "Regression: " : "Expiring: "}{notice.message}</Text>)}
                  </Alert>
                )}
                {diff && <DiffCard diff={diff} />}
                <SignOffCard report={data} />
                <ControlTable results={data.results} />
              </>
            )}
          </Stack>
        );
      }}
    </QueryState>
  );
}

function DiffCard({ diff }: { diff: ReportDiff }) {
  if (!diff.previous_report) return <Card withBorder><Text size="sm">The first report for this framework and environment: nothing to compare with.</Text></Card>;
  const rows = [...(diff.improved ?? []).map((e) => ({ ...e, how: "improved" })), ...(diff.regressed ?? []).map((e) => ({ ...e, how: "regressed" })), ...(diff.changed ?? []).map((e) => ({ ...e, how: "changed" }))];
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">Against the <Anchor component={Link} to={`/compliance/${diff.previous_report}`}>previous report</Anchor></Title>
      <Text size="sm">Score change: {diff.score_change ?? 0} points; {diff.unchanged ?? 0} controls unchanged{diff.added?.length ? `; added ${diff.added.join(", ")}` : ""}{diff.removed?.length ? `; removed ${diff.removed.join(", ")}` : ""}.</Text>
      {rows.length > 0 && (
        <Table mt="xs">
          <Table.Thead><Table.Tr><Table.Th>Control</Table.Th><Table.Th>Change</Table.Th><Table.Th>From</Table.Th><Table.Th>To</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>{rows.map((row) => <Table.Tr key={row.control_id}><Table.Td>{row.control_id}</Table.Td><Table.Td><Badge variant="light" color={row.how === "regressed" ? "red" : "green"} autoContrast>{row.how}</Badge></Table.Td><Table.Td>{row.from}</Table.Td><Table.Td>{row.to}</Table.Td></Table.Tr>)}</Table.Tbody>
        </Table>
      )}
    </Card>
  );
}

function ControlTable({ results }: { results: ControlResult[] }) {
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">Controls</Title>
      <Table.ScrollContainer minWidth={800}>
        <Table data-testid="controls">
          <Table.Thead><Table.Tr><Table.Th>Control</Table.Th><Table.Th>Status</Table.Th><Table.Th>Evidence</Table.Th><Table.Th>Remediation</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>
            {results.map((result) => (
              <Table.Tr key={result.control_id}>
                <Table.Td><Text size="sm" fw={600}>{result.control_id}</Text><Text size="xs">{result.title}</Text></Table.Td>
                <Table.Td><StatusBadge value={String(result.status)} /></Table.Td>
                <Table.Td><Text size="xs">{describe(result.evidence)}</Text>{Array.isArray(result.missing) && result.missing.length > 0 && <Text size="xs" c="red.8">missing: {(result.missing as unknown[]).map(String).join(", ")}</Text>}</Table.Td>
                <Table.Td><Text size="xs">{result.remediation || "—"}</Text></Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
    </Card>
  );
}

function describe(evidence: unknown): string {
  if (!evidence) return "—";
  if (Array.isArray(evidence)) return evidence.map((item) => (typeof item === "object" && item !== null ? String((item as Record<string, unknown>).summary ?? (item as Record<string, unknown>).kind ?? JSON.stringify(item)) : String(item))).join("; ");
  if (typeof evidence === "object") return Object.entries(evidence as Record<string, unknown>).map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : String(value)}`).join("; ");
  return String(evidence);
}
