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

const REGIMES: Record<string, string> = {
  eu_ai_act_art73: "EU AI Act Art. 73",
  hipaa_164_404: "HIPAA 164.404",
  hipaa_164_410: "HIPAA 164.410",
};

/** "Incident 4 opened · EU AI Act Art. 73 due in 2 days (15 Dec)": the clocks the API
 * started when the incident was opened from an alert, soonest first; met clocks left out. */
export function incidentOpenedLabel(
  incident: { id: number; clocks: readonly { regime: string; due_at: string; met_at: string | null; remaining_seconds: number | null }[] },
): string {
  const running = incident.clocks
    .filter((c) => c.met_at === null && c.remaining_seconds !== null)
    .sort((a, b) => (a.remaining_seconds ?? 0) - (b.remaining_seconds ?? 0));
  const parts = running.map((c) => {
    const seconds = c.remaining_seconds ?? 0;
    const days = Math.floor(seconds / 86400);
    const left = seconds < 0 ? "overdue" : days >= 1 ? `due in ${days} day${days === 1 ? "" : "s"}` : `due in ${Math.max(1, Math.floor(seconds / 3600))} h`;
    return `${REGIMES[c.regime] ?? c.regime} ${left} (${c.due_at.slice(0, 10)})`;
  });
  return [`Incident ${incident.id} opened`, ...parts].join(" · ");
}
