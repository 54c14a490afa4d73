// The approval queue: pending requests with their age and SLA, the action with masked
// fields, the policy's reasons and the agent's recent history; approve or deny with a
// comment. The API enforces who may decide (role, team, four eyes); this page only asks.
import { Alert, Badge, Button, Card, Code, Group, SegmentedControl, Stack, Table, Text, Textarea, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, V1, type Page } from "../api/client";
import type { ApprovalRequest } from "../api/types";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { StatusBadge, when } from "../components/widgets";
import { age } from "./age";

const KEY = ["approvals"] as const;

export function ApprovalsPage() {
  const [state, setState] = useState("pending");
  const requests = useQuery({
    queryKey: [...KEY, state],
    queryFn: () => api.get<Page<ApprovalRequest>>(`${V1}/approvals/`, { state, limit: 50 }),
    // A held agent is waiting: the queue refreshes itself.
    refetchInterval: state === "pending" ? 2000 : false,
  });
  return (
    <Stack>
      <Title order={1} size="h2">Approvals</Title>
      <SegmentedControl
        aria-label="State"
        value={state}
        onChange={setState}
        data={["pending", "approved", "denied", "expired", "cancelled"]}
        w="fit-content"
      />
      <QueryState query={requests} what="approval requests">
        {(page) =>
          page.count === 0 ? (
            <Empty title={`No ${state} request`}>Held tool calls and four-eyes releases appear here.</Empty>
          ) : (
            <Stack>
              {page.results.map((request) => <RequestCard key={request.id} request={request} />)}
            </Stack>
          )
        }
      </QueryState>
    </Stack>
  );
}

function RequestCard({ request }: { request: ApprovalRequest }) {
  const client = useQueryClient();
  const [comment, setComment] = useState("");
  const late = request.state === "pending" && Date.parse(request.sla_due_at) < Date.now();
  const decide = useMutation({
    mutationFn: (verdict: "approve" | "deny") => api.post<ApprovalRequest>(`${V1}/approvals/${request.id}/${verdict}/`, { comment }),
    onSuccess: () => void client.invalidateQueries({ queryKey: KEY }),
  });
  const subject = request.agent ? `agent ${request.agent}` : `release by ${request.requested_by}`;
  return (
    <Card withBorder padding="md" data-testid="approval-request" aria-label={`Approval request ${request.id}`}>
      <Stack gap="xs">
        <Group justify="space-between">
          <Text fw={600}>{subject} → {request.tool} in {request.environment}</Text>
          <Group gap="xs">
            <StatusBadge value={request.state} />
            <Badge variant="outline" color="dark">waiting {age(request.created_at)}</Badge>
            {request.state === "pending" && (
              <Badge color={late ? "red" : "dark"} variant={late ? "filled" : "outline"}>
                {late ? "SLA missed" : `SLA ${when(request.sla_due_at)}`}
              </Badge>
            )}
          </Group>
        </Group>
        <Text size="xs" c="dimmed">Request {request.id} · expires {when(request.expires_at)} · quorum {request.quorum}</Text>
        <Code block data-testid="masked-args">{JSON.stringify(request.masked_args, null, 2)}</Code>
        <Stack gap={2}>
          {(request.reasons as { rule: string; message: string }[]).map((reason) => (
            <Text size="sm" key={reason.rule}><b>{reason.rule}</b>: {reason.message}</Text>
          ))}
        </Stack>
        {request.agent && <History id={request.id} />}
        {request.votes.length > 0 && (
          <Text size="sm">Decided so far: {request.votes.map((v) => `${v.verdict} by ${v.user}${v.comment ? ` (${v.comment})` : ""}`).join("; ")}</Text>
        )}
        {request.state === "pending" && (
          <>
            <Textarea label="Comment" value={comment} onChange={(e) => setComment(e.currentTarget.value)} maxLength={2000} autosize minRows={1} />
            <Group>
              <Button color="green" loading={decide.isPending} onClick={() => decide.mutate("approve")}>Approve</Button>
              <Button color="red" variant="light" loading={decide.isPending} onClick={() => decide.mutate("deny")}>Deny</Button>
            </Group>
            <NonFieldError error={decide.error} />
          </>
        )}
        {decide.isSuccess && <Alert color="green" role="status">Decision recorded: {decide.data.state}.</Alert>}
      </Stack>
    </Card>
  );
}

function History({ id }: { id: string }) {
  const history = useQuery({
    queryKey: [...KEY, id, "history"],
    queryFn: () => api.get<{ events: { time: string; kind: string; tool: string; effect: string }[] }>(`${V1}/approvals/${id}/history/`),
  });
  return (
    <QueryState query={history} what="the agent's recent history">
      {(data) =>
        data.events.length === 0 ? (
          <Text size="sm" c="dimmed">No recorded action of this agent yet.</Text>
        ) : (
          <Table withTableBorder aria-label="Agent's recent history" fz="xs">
            <Table.Thead><Table.Tr><Table.Th>Time</Table.Th><Table.Th>Record</Table.Th><Table.Th>Tool</Table.Th><Table.Th>Effect</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {data.events.map((event, index) => (
                <Table.Tr key={index}><Table.Td>{when(event.time)}</Table.Td><Table.Td>{event.kind}</Table.Td><Table.Td>{event.tool}</Table.Td><Table.Td>{event.effect}</Table.Td></Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        )
      }
    </QueryState>
  );
}
