// The header's live alert counter (polled inbox counts), linking to the inbox. Kept tiny:
// it is part of the console's initial JavaScript.
import { Badge } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router";
import { api, V1 } from "../api/client";
import type { AlertInbox } from "../api/types";
import { inboxLabel } from "./inbox";

export function AlertCount() {
  const inbox = useQuery({
    queryKey: ["detection-alerts", "inbox"],
    queryFn: () => api.get<AlertInbox>(`${V1}/detection/alerts/inbox/`),
    refetchInterval: 10000,
    retry: false,
  });
  const label = inbox.data ? inboxLabel(inbox.data) : null;
  if (!label) return null;
  const critical = (inbox.data?.by_severity.critical ?? 0) > 0;
  return (
    <Badge component={Link} to="/alerts" color={critical ? "red.9" : "dark"} variant="filled" style={{ cursor: "pointer" }}
      aria-label={label} data-testid="alert-count">
      {inbox.data ? inbox.data.open + inbox.data.acknowledged : 0}
    </Badge>
  );
}
