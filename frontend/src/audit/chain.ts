// Chain status of a session's events as the console shows it: each record must name the
// previous record's hash (the first names the genesis value the SDK uses, never checked here).
import type { AuditEvent } from "../api/types";

export type Link = "start" | "linked" | "broken" | "gap";

export function chainLinks(events: readonly AuditEvent[]): Map<number, Link> {
  const ordered = [...events].sort((a, b) => a.seq - b.seq);
  const links = new Map<number, Link>();
  ordered.forEach((event, index) => {
    const before = ordered[index - 1];
    if (!before) links.set(event.id, event.seq === 0 || event.seq === 1 ? "start" : "gap");
    else if (event.seq !== before.seq + 1) links.set(event.id, "gap");
    else links.set(event.id, event.prev_hash === before.record_hash ? "linked" : "broken");
  });
  return links;
}
