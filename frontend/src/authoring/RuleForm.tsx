// One template's form: answers, examples ("this should be held", "this should pass"), the
// plain-language preview, and the generated Rego and tests with their results, live.
import { Alert, Badge, Button, Code, Group, NativeSelect, Paper, Stack, Text, Textarea, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, ApiError, V1 } from "../api/client";
import { NonFieldError } from "../components/states";
import { cleaned, SchemaForm } from "./SchemaForm";
import type { AuthoredRule, Draft, Example, Template } from "./types";

type ExampleRow = { description: string; expect: Example["expect"]; input: string; team: string };

const EXPECTATIONS: { value: Example["expect"]; label: string }[] = [
  { value: "deny", label: "should be blocked" }, { value: "hold", label: "should be held" },
  { value: "mask", label: "should be masked" }, { value: "pass", label: "should pass" },
];

function toExamples(rows: ExampleRow[]): Example[] | string {
  const out: Example[] = [];
  for (const [i, row] of rows.entries()) {
    try {
      const input = JSON.parse(row.input) as Record<string, unknown>;
      out.push({ description: row.description, expect: row.expect, input, ...(row.team ? { agent: { team: row.team } } : {}) });
    } catch {
      return `Example ${i + 1}: the input is not valid JSON`;
    }
  }
  return out;
}

const EMPTY_INPUT = '{"agent": {"id": "finance-bot"}, "action": {"tool": "pay_invoice", "args": {"amount": 12000, "currency": "EUR"}}, "context": {"environment": "prod"}}';

export function RuleForm({ template, onSaved }: { template: Template; onSaved: (rule: AuthoredRule) => void }) {
  const client = useQueryClient();
  const [params, setParams] = useState<Record<string, unknown>>({});
  const [rows, setRows] = useState<ExampleRow[]>([]);
  const [debounced, setDebounced] = useState<string>("");
  const examples = toExamples(rows);
  const body = typeof examples === "string" ? null : { template: template.key, params: cleaned(params), examples };
  const key = JSON.stringify(body);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(key), 300);
    return () => clearTimeout(timer);
  }, [key]);
  const draft = useQuery({
    queryKey: ["authoring-draft", debounced],
    queryFn: () => api.post<Draft>(`${V1}/authoring/rules/draft/`, JSON.parse(debounced)),
    enabled: debounced !== "" && debounced !== "null",
    retry: false,
  });
  const save = useMutation({
    mutationFn: () => api.post<AuthoredRule>(`${V1}/authoring/rules/`, { ...body, message: "" }),
    onSuccess: (rule) => { void client.invalidateQueries({ queryKey: ["authoring-rules"] }); onSaved(rule); },
  });
  const problem = draft.error instanceof ApiError ? draft.error.message : null;
  return (
    <Stack data-testid={`form-${template.key}`}>
      <Title order={3}>{template.title}</Title>
      <Text size="sm" c="dimmed">{template.description}</Text>
      <SchemaForm schema={template.schema} value={params} onChange={setParams} />
      <Title order={4}>Examples</Title>
      <Text size="sm" c="dimmed">Each example becomes a test of the rule: saving is refused while one does not hold.</Text>
      {rows.map((row, i) => (
        <Paper key={i} withBorder p="xs" data-testid={`example-${i + 1}`}>
          <Group align="end" grow>
            <TextInput label={`Example ${i + 1}`} value={row.description} onChange={(e) => setRows(rows.map((r, j) => (j === i ? { ...r, description: e.currentTarget.value } : r)))} />
            <NativeSelect label={`Example ${i + 1} outcome`} data={EXPECTATIONS} value={row.expect} onChange={(e) => setRows(rows.map((r, j) => (j === i ? { ...r, expect: e.currentTarget.value as Example["expect"] } : r)))} />
            <TextInput label={`Example ${i + 1} agent team`} value={row.team} onChange={(e) => setRows(rows.map((r, j) => (j === i ? { ...r, team: e.currentTarget.value } : r)))} />
          </Group>
          <Textarea label={`Example ${i + 1} input (JSON)`} autosize minRows={2} value={row.input} onChange={(e) => setRows(rows.map((r, j) => (j === i ? { ...r, input: e.currentTarget.value } : r)))} />
        </Paper>
      ))}
      <Group><Button variant="light" onClick={() => setRows([...rows, { description: "", expect: "deny", input: EMPTY_INPUT, team: "" }])}>Add example</Button></Group>
      {typeof examples === "string" && <Alert color="red">{examples}</Alert>}
      <Paper withBorder p="sm">
        <Text fw={600}>In plain words</Text>
        <Text data-testid="sentence">{draft.data?.sentence ?? (problem ? "—" : "Answer the questions above.")}</Text>
        {problem && <Text c="red" size="sm" data-testid="draft-problem">{problem}</Text>}
      </Paper>
      {draft.data && (
        <>
          <Group gap="xs" data-testid="test-results">
            {draft.data.test_results.map((r) => (
              <Badge key={r.test} color={r.passed ? "green" : "red"}>{r.test.split(".").pop()}: {r.passed ? "passes" : "fails"}</Badge>
            ))}
          </Group>
          <Text fw={600}>Generated Rego</Text>
          <Code block tabIndex={0} data-testid="generated-rego">{draft.data.module}</Code>
          <Text fw={600}>Generated tests</Text>
          <Code block tabIndex={0} data-testid="generated-tests">{draft.data.tests}</Code>
        </>
      )}
      <NonFieldError error={save.error} />
      <Group><Button onClick={() => save.mutate()} disabled={!body} loading={save.isPending}>Save rule</Button></Group>
    </Stack>
  );
}
