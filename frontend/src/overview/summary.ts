// Pure summaries behind the Overview cards (unit tested).
import type { Agent, AuditEvent, GapReport, OPAInstance } from "../api/types";

export function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

export function agentSummary(agents: readonly Agent[]) {
  return { byStatus: countBy(agents, (a) => a.status), byRisk: countBy(agents, (a) => a.risk_tier ?? "minimal") };
}

export type InstanceState = "current" | "stale" | "old";

/** An engine is stale when it stopped reporting; old when it runs another revision than its environment. */
export function instanceState(instance: OPAInstance): InstanceState {
  if (instance.is_stale) return "stale";
  return instance.is_current ? "current" : "old";
}

export interface HourBucket {
  hour: string;
  allow: number;
  deny: number;
  require_approval: number;
}

/** Decisions per hour over the 24 hours before `now`, by effect. */
export function decisionsByHour(events: readonly AuditEvent[], now: Date): HourBucket[] {
  const start = new Date(now.getTime() - 23 * 3600_000);
  start.setUTCMinutes(0, 0, 0);
  const buckets: HourBucket[] = [];
  for (let i = 0; i < 24; i++) {
    const hour = new Date(start.getTime() + i * 3600_000);
    buckets.push({ hour: `${String(hour.getUTCHours()).padStart(2, "0")}:00`, allow: 0, deny: 0, require_approval: 0 });
  }
  for (const event of events) {
    if (!event.time) continue;
    const index = Math.floor((new Date(event.time).getTime() - start.getTime()) / 3600_000);
    const bucket = buckets[index];
    if (!bucket) continue;
    const effect = event.effect === "allow" || event.effect === "require_approval" ? event.effect : "deny";
    bucket[effect] += 1;
  }
  return buckets;
}

/** The newest finished report per framework and environment. */
export function latestScores(reports: readonly GapReport[]): GapReport[] {
  const seen = new Map<string, GapReport>();
  for (const report of reports) {
    if (report.status !== "done") continue;
    const key = `${report.framework}/${report.environment}`;
    const kept = seen.get(key);
    if (!kept || kept.created_at < report.created_at) seen.set(key, report);
  }
  return [...seen.values()];
}
