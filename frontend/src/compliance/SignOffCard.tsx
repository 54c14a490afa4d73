import { Card, Code, Group, Stack, Table, Text, Textarea, Title } from "@mantine/core";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, V1 } from "../api/client";
import type { GapReportDetail, SignOff } from "../api/types";
import { useSession } from "../auth/session";
import { NonFieldError } from "../components/states";
import { RoleButton, when } from "../components/widgets";
import { nextSignOff, SIGN_OFF_ORDER } from "./governance";

/** Preparer, reviewer and approver of a finished report (three people, in that order). A
 * sign-off re-renders and re-signs the PDF, so its SHA-256 is shown next to the block. */
export function SignOffCard({ report }: { report: GapReportDetail }) {
  const session = useSession();
  const client = useQueryClient();
  const [comment, setComment] = useState("");
  const next = nextSignOff(report.sign_offs, session.user.username, String(report.status));
  const sign = useMutation({
    mutationFn: () => api.post<SignOff>(`${V1}/compliance/reports/${report.id}/sign-off/`, { role: next.role, comment }),
    onSuccess: () => { setComment(""); void client.invalidateQueries({ queryKey: ["report", report.id] }); },
  });
  const byRole = new Map(report.sign_offs.map((item) => [String(item.role), item]));
  return (
    <Card withBorder data-testid="sign-off">
      <Title order={2} size="h4" mb="xs">Sign-off</Title>
      <Table>
        <Table.Thead><Table.Tr><Table.Th>Role</Table.Th><Table.Th>By</Table.Th><Table.Th>When</Table.Th><Table.Th>Comment</Table.Th></Table.Tr></Table.Thead>
        <Table.Tbody>
          {SIGN_OFF_ORDER.map((role) => {
            const item = byRole.get(role);
            return <Table.Tr key={role}><Table.Td>{role}</Table.Td><Table.Td>{item?.user ?? "—"}</Table.Td><Table.Td>{item ? when(item.signed_at) : "—"}</Table.Td><Table.Td><Text size="xs">{item?.comment || ""}</Text></Table.Td></Table.Tr>;
          })}
        </Table.Tbody>
      </Table>
      {report.pdf_sha256 && <Text size="xs" mt="xs">PDF SHA-256 <Code>{report.pdf_sha256}</Code></Text>}
      {next.role && (
        <Stack gap="xs" mt="sm">
          <Textarea label={`Comment (signing as ${next.role})`} autosize value={comment} onChange={(e) => setComment(e.currentTarget.value)} disabled={next.blocked !== null} />
          <NonFieldError error={sign.error} />
          <Group>
            <RoleButton capability="sign_off_reports" loading={sign.isPending} disabled={next.blocked !== null} onClick={() => sign.mutate()}>Sign off as {next.role}</RoleButton>
            {next.blocked && <Text size="xs" c="dimmed">{next.blocked}</Text>}
          </Group>
        </Stack>
      )}
    </Card>
  );
}
