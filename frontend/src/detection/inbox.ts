// Pure rules of the alert inbox: which transitions an alert's state allows (the API's
// state machine), the order the on-call reads them in, and the counter's text.
export type AlertState = "open" | "acknowledged" | "resolved" | "false_positive";
export type Severity = "low" | "medium" | "high" | "critical";
export type Transition = "acknowledge" | "resolve" | "false-positive";

const RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2, critical: 3 };

export const TRANSITIONS: Record<Transition, { label: string; from: readonly AlertState[] }> = {
  acknowledge: { label: "Acknowledge", from: ["open"] },
  resolve: { label: "Resolve", from: ["open", "acknowledged"] },
  "false-positive": { label: "Mark false positive", from: ["open", "acknowledged"] },
};

export function allowedTransitions(state: string): Transition[] {
  return (Object.keys(TRANSITIONS) as Transition[]).filter((t) => (TRANSITIONS[t].from as readonly string[]).includes(state));
}

/** Most severe first, then open before acknowledged, then the newest. */
export function triageOrder<T extends { severity: string; state: string; raised_at: string; id: number }>(alerts: readonly T[]): T[] {
  const rank = (s: string) => RANK[s as Severity] ?? -1;
  return [...alerts].sort(
    (a, b) =>
      rank(b.severity) - rank(a.severity) ||
      Number(a.state !== "open") - Number(b.state !== "open") ||
      Date.parse(b.raised_at) - Date.parse(a.raised_at) ||
      b.id - a.id,
  );
}

export const SEVERITY_COLORS: Record<string, string> = { low: "gray", medium: "yellow", high: "orange", critical: "red" };

/** "3 alerts to handle, 1 critical" for the header counter: open and acknowledged alerts
 * (the API's by_severity counts both); null when there is nothing to handle. */
export function inboxLabel(inbox: { open: number; acknowledged: number; by_severity: Record<string, number> }): string | null {
  const total = inbox.open + inbox.acknowledged;
  if (total <= 0) return null;
  const critical = inbox.by_severity.critical ?? 0;
  const noun = total === 1 ? "alert to handle" : "alerts to handle";
  return critical > 0 ? `${total} ${noun}, ${critical} critical` : `${total} ${noun}`;
}
