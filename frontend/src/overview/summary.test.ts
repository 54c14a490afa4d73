import { describe, expect, it } from "vitest";
import type { AuditEvent, GapReport, OPAInstance } from "../api/types";
import { decisionsByHour, instanceState, latestScores } from "./summary";

describe("overview summaries", () => {
  it("buckets decisions per hour over 24 hours by effect, dropping older ones", () => {
    const now = new Date("2026-01-02T12:30:00Z");
    const events = [
      { time: "2026-01-02T12:10:00Z", effect: "allow" },
      { time: "2026-01-02T12:20:00Z", effect: "deny" },
      { time: "2026-01-02T11:59:00Z", effect: "require_approval" },
      { time: "2026-01-01T10:00:00Z", effect: "allow" },
      { time: "2026-01-02T12:25:00Z", effect: "" },
    ] as AuditEvent[];
    const buckets = decisionsByHour(events, now);
    expect(buckets).toHaveLength(24);
    expect(buckets[23]).toEqual({ hour: "12:00", allow: 1, deny: 2, require_approval: 0 });
    expect(buckets[22]).toEqual({ hour: "11:00", allow: 0, deny: 0, require_approval: 1 });
    expect(buckets.reduce((sum, b) => sum + b.allow + b.deny + b.require_approval, 0)).toBe(4);
  });
  it("calls an engine stale, old or current", () => {
    expect(instanceState({ is_stale: true, is_current: true } as OPAInstance)).toBe("stale");
    expect(instanceState({ is_stale: false, is_current: false } as OPAInstance)).toBe("old");
    expect(instanceState({ is_stale: false, is_current: true } as OPAInstance)).toBe("current");
  });
  it("keeps the newest finished report per framework and environment", () => {
    const reports = [
      { id: "1", framework: "hipaa", environment: "prod", status: "done", created_at: "2026-01-01" },
      { id: "2", framework: "hipaa", environment: "prod", status: "done", created_at: "2026-01-03" },
      { id: "3", framework: "hipaa", environment: "prod", status: "running", created_at: "2026-01-04" },
      { id: "4", framework: "hipaa", environment: "dev", status: "done", created_at: "2026-01-02" },
    ] as unknown as GapReport[];
    expect(latestScores(reports).map((r) => r.id).sort()).toEqual(["2", "4"]);
  });
});
