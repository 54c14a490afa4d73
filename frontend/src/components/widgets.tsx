import { Badge, Button, Code, CopyButton, Group, Pagination, Text, Tooltip, type ButtonProps } from "@mantine/core";
import type { ReactNode } from "react";
import { useSession } from "../auth/session";
import type { Capability } from "../auth/roles";
import { pageCount, pagerText } from "./pager";

/** A button the role may not use is shown disabled, with the reason beside it (not only on hover). */
export function RoleButton({
  capability,
  children,
  onClick,
  ...props
}: ButtonProps & { capability: Capability; onClick?: () => void; children: ReactNode; type?: "button" | "submit" }) {
  const session = useSession();
  if (session.can(capability)) return <Button onClick={onClick} {...props}>{children}</Button>;
  const reason = session.whyNot(capability);
  return (
    <Group gap={6} wrap="nowrap">
      <Tooltip label={reason}>
        <Button {...props} disabled aria-disabled data-disabled-reason={reason}>
          {children}
        </Button>
      </Tooltip>
      <Text size="xs" c="dimmed" data-testid="role-reason">{reason}</Text>
    </Group>
  );
}

const STATUS_COLORS: Record<string, string> = {
  active: "green", suspended: "orange", revoked: "red", allow: "green", deny: "red",
  require_approval: "yellow", verified: "green", quarantined: "red", pending: "gray", running: "blue",
  done: "green", failed: "red", met: "green", partial: "yellow", not_met: "red", gap: "red",
  not_applicable: "gray", no_evidence: "orange", current: "green", stale: "orange", old: "red",
  checkpointed: "teal", logged: "blue", linked: "green", start: "blue", broken: "red", gap_in_chain: "orange", manual: "gray",
};

export function StatusBadge({ value }: { value: string | null | undefined }) {
  const text = value || "—";
  // Dark text on light badges keeps a 4.5:1 contrast ratio.
  return (
    <Badge color={STATUS_COLORS[text] ?? "gray"} variant="light" autoContrast style={{ minWidth: "max-content" }}>
      {text.replaceAll("_", " ")}
    </Badge>
  );
}

export function Pager({ count, limit, offset, onOffset, capped = false }: { count: number; limit: number; offset: number; onOffset: (o: number) => void; capped?: boolean }) {
  const pages = pageCount(count, limit, capped);
  return (
    <Group justify="space-between" mt="sm">
      <Text size="sm" c="dimmed">
        {pagerText(count, limit, offset, capped)}
      </Text>
      {pages > 1 && (
        <Pagination
          size="sm"
          total={pages}
          value={Math.floor(offset / limit) + 1}
          onChange={(page) => onOffset((page - 1) * limit)}
          getControlProps={(control) => ({ "aria-label": `${control} page` })}
          getItemProps={(page) => ({ "aria-label": `Page ${page}` })}
        />
      )}
    </Group>
  );
}

export function Secret({ label, value }: { label: string; value: string }) {
  return (
    <div>
      <Text size="sm" fw={600}>{label}</Text>
      <Group gap="xs" wrap="nowrap" align="flex-start">
        <Code block style={{ flex: 1, wordBreak: "break-all", whiteSpace: "pre-wrap" }} data-testid="secret-value">
          {value}
        </Code>
        <CopyButton value={value}>
          {({ copied, copy }) => (
            <Button size="xs" variant="light" onClick={copy}>
              {copied ? "Copied" : "Copy"}
            </Button>
          )}
        </CopyButton>
      </Group>
    </div>
  );
}

export function when(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function shortRevision(revision: string | null | undefined): string {
  return revision ? revision.slice(0, 12) : "none";
}
