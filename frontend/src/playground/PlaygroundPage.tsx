import { Alert, Button, Card, Group, JsonInput, SegmentedControl, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, ApiError, V1, type Page } from "../api/client";
import type { Agent, Environment, PlaygroundResult, Tool } from "../api/types";
import { NonFieldError } from "../components/states";
import { StatusBadge } from "../components/widgets";
import { argsFromFields, argumentFields, parseArgsJson } from "./argsForm";

export function PlaygroundPage() {
  const environments = useQuery({ queryKey: ["environments"], queryFn: () => api.get<Page<Environment>>(`${V1}/environments/`, { limit: 100, ordering: "position" }) });
  const agents = useQuery({ queryKey: ["agents", "all"], queryFn: () => api.get<Page<Agent>>(`${V1}/agents/`, { limit: 1000 }) });
  const tools = useQuery({ queryKey: ["tools"], queryFn: () => api.get<Page<Tool>>(`${V1}/tools/`, { limit: 1000 }) });
  const [environment, setEnvironment] = useState<string | null>(null);
  const [agent, setAgent] = useState<string | null>(null);
  const [tool, setTool] = useState<string | null>(null);
  const [mode, setMode] = useState<"form" | "json">("form");
  const [fields, setFields] = useState<Record<string, string>>({});
  const [json, setJson] = useState("{}");
  const [jsonError, setJsonError] = useState<string | null>(null);
  const selectedTool = tools.data?.results.find((item) => item.name === tool);
  const run = useMutation({
    mutationFn: (args: Record<string, unknown>) =>
      api.post<PlaygroundResult>(`${V1}/console/playground/`, { environment: environment ?? "", agent: agent ?? "", tool: tool ?? "", args }),
  });
  const error = run.error instanceof ApiError ? run.error : null;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    let args: Record<string, unknown>;
    if (mode === "json") {
      const parsed = parseArgsJson(json);
      if (!parsed.ok) return setJsonError(parsed.error);
      args = parsed.value;
    } else args = argsFromFields(fields);
    setJsonError(null);
    run.mutate(args);
  };
  return (
    <Stack>
      <Title order={1} size="h2">Decision playground</Title>
      <Text size="sm" c="dimmed">What would the active bundle of an environment decide for this call? A dry run: nothing is recorded in the audit log.</Text>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder component="form" onSubmit={submit}>
          <Stack>
            <Select label="Environment" data={(environments.data?.results ?? []).map((env) => env.name)} value={environment} onChange={setEnvironment} error={error?.field("environment")} searchable required />
            <Select label="Agent" data={(agents.data?.results ?? []).map((item) => ({ value: item.name, label: `${item.name} (${item.status})` }))} value={agent} onChange={setAgent} error={error?.field("agent")} searchable required />
            <Select label="Tool" data={(tools.data?.results ?? []).map((item) => item.name)} value={tool} onChange={(value) => { setTool(value); setFields({}); }} error={error?.field("tool")} searchable required />
            {selectedTool && <Text size="xs" c="dimmed">category {String(selectedTool.category)}; needs scopes {(selectedTool.scopes ?? []).join(", ") || "none"}{selectedTool.irreversible ? "; irreversible" : ""}</Text>}
            <SegmentedControl value={mode} onChange={(value) => setMode(value as "form" | "json")} data={[{ value: "form", label: "Form" }, { value: "json", label: "Raw JSON" }]} aria-label="How to enter the arguments" />
            {mode === "form" ? (
              argumentFields(selectedTool).length ? argumentFields(selectedTool).map((name) => (
                <TextInput key={name} label={name} value={fields[name] ?? ""} onChange={(e) => setFields({ ...fields, [name]: e.currentTarget.value })} />
              )) : <Text size="sm" c="dimmed">This tool takes no usual arguments; use Raw JSON for others.</Text>
            ) : (
              <JsonInput label="Arguments (JSON object)" value={json} onChange={setJson} autosize minRows={4} validationError="Not valid JSON: write a JSON object" error={jsonError ?? error?.field("args")} />
            )}
            <NonFieldError error={run.error} />
            <Group><Button type="submit" loading={run.isPending}>Decide</Button></Group>
          </Stack>
        </Card>
        <Card withBorder aria-live="polite">
          <Title order={2} size="h4" mb="xs">Decision</Title>
          {!run.data ? <Text c="dimmed" size="sm">Choose an environment, an agent and a tool, then Decide.</Text> : <DecisionView result={run.data} />}
        </Card>
      </SimpleGrid>
    </Stack>
  );
}

function DecisionView({ result }: { result: PlaygroundResult }) {
  const { decision } = result;
  return (
    <Stack data-testid="decision">
      <Group>
        <Text fw={700}>Effect</Text>
        <StatusBadge value={decision.effect} />
        <Text size="sm" c="dimmed">{result.environment} at revision <code>{result.revision.slice(0, 12)}</code></Text>
      </Group>
      {decision.reasons.length === 0 ? <Alert color="green">No rule objected.</Alert> : (
        <Table>
          <Table.Thead><Table.Tr><Table.Th>Rule</Table.Th><Table.Th>Message</Table.Th><Table.Th>Controls</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>
            {decision.reasons.map((reason) => (
              <Table.Tr key={reason.rule + reason.message}>
                <Table.Td><code>{reason.rule}</code></Table.Td>
                <Table.Td>{reason.message}</Table.Td>
                <Table.Td>{(reason.controls ?? []).join(", ")}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <Text fw={600} size="sm">Obligations</Text>
      <pre style={{ fontSize: 12, margin: 0 }}>{JSON.stringify(decision.obligations ?? {}, null, 2)}</pre>
      <details>
        <summary>Input that was evaluated</summary>
        <pre style={{ fontSize: 12 }}>{JSON.stringify(result.input, null, 2)}</pre>
      </details>
    </Stack>
  );
}
