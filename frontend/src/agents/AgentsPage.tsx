import { Anchor, Group, Select, Stack, Table, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useSearchParams } from "react-router";
import { api, V1, type Page } from "../api/client";
import type { Agent } from "../api/types";
import { Empty, QueryState } from "../components/states";
import { Pager, StatusBadge } from "../components/widgets";

const LIMIT = 20;

export function AgentsPage() {
  const [params, setParams] = useSearchParams();
  const [search, setSearch] = useState(params.get("search") ?? "");
  const [debounced] = useDebouncedValue(search, 250);
  const status = params.get("status");
  const riskTier = params.get("risk_tier");
  const offset = Number(params.get("offset") ?? 0);
  const set = (key: string, value: string | null) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    if (key !== "offset") next.delete("offset");
    setParams(next, { replace: true });
  };
  const agents = useQuery({
    queryKey: ["agents", { search: debounced, status, riskTier, offset }],
    queryFn: () => api.get<Page<Agent>>(`${V1}/agents/`, { search: debounced, status, risk_tier: riskTier, limit: LIMIT, offset }),
    placeholderData: keepPreviousData,
  });
  return (
    <Stack>
      <Title order={1} size="h2">Agents</Title>
      <Group align="flex-end">
        <TextInput label="Search" placeholder="name, owner, team" value={search} onChange={(e) => { setSearch(e.currentTarget.value); set("offset", null); }} />
        <Select label="Status" clearable data={["active", "suspended", "revoked"]} value={status} onChange={(v) => set("status", v)} />
        <Select label="Risk tier" clearable data={["minimal", "limited", "high", "unacceptable"]} value={riskTier} onChange={(v) => set("risk_tier", v)} />
      </Group>
      <QueryState query={agents} what="agents">
        {(page) =>
          page.count === 0 ? (
            <Empty title="No agent matches">Clear the filters, or register an agent with POST /api/v1/agents/ or the SDK's `warden register`.</Empty>
          ) : (
            <>
              <Table.ScrollContainer minWidth={640}>
                <Table striped highlightOnHover>
                  <Table.Thead>
                    <Table.Tr><Table.Th>Name</Table.Th><Table.Th>Owner</Table.Th><Table.Th>Team</Table.Th><Table.Th>Risk tier</Table.Th><Table.Th>Status</Table.Th><Table.Th>Environments</Table.Th></Table.Tr>
                  </Table.Thead>
                  <Table.Tbody>
                    {page.results.map((agent) => (
                      <Table.Tr key={agent.id}>
                        <Table.Td><Anchor component={Link} to={`/agents/${agent.name}`}>{agent.name}</Anchor></Table.Td>
                        <Table.Td>{agent.owner_email}</Table.Td>
                        <Table.Td>{agent.team}</Table.Td>
                        <Table.Td>{agent.risk_tier}</Table.Td>
                        <Table.Td><StatusBadge value={agent.status} /></Table.Td>
                        <Table.Td>{(agent.environments ?? []).join(", ")}</Table.Td>
                      </Table.Tr>
                    ))}
                  </Table.Tbody>
                </Table>
              </Table.ScrollContainer>
              <Pager count={page.count} limit={LIMIT} offset={offset} onOffset={(o) => set("offset", String(o))} />
            </>
          )
        }
      </QueryState>
    </Stack>
  );
}
