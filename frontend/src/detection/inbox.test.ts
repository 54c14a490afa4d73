import { describe, expect, it } from "vitest";
import { allowedTransitions, inboxLabel, incidentOpenedLabel, triageOrder } from "./inbox";

describe("allowedTransitions", () => {
  it("follows the API's state machine", () => {
    expect(allowedTransitions("open")).toEqual(["acknowledge", "resolve", "false-positive"]);
    expect(allowedTransitions("acknowledged")).toEqual(["resolve", "false-positive"]);
    expect(allowedTransitions("resolved")).toEqual([]);
    expect(allowedTransitions("false_positive")).toEqual([]);
    expect(allowedTransitions("bogus")).toEqual([]);
  });
});

describe("triageOrder", () => {
  const a = (id: number, severity: string, state: string, raised_at: string) => ({ id, severity, state, raised_at });
  it("puts the most severe first, open before acknowledged, then newest", () => {
    const sorted = triageOrder([
      a(1, "low", "open", "2026-01-01T10:00:00Z"),
      a(2, "critical", "acknowledged", "2026-01-01T11:00:00Z"),
      a(3, "critical", "open", "2026-01-01T09:00:00Z"),
      a(4, "high", "open", "2026-01-01T12:00:00Z"),
      a(5, "high", "open", "2026-01-01T13:00:00Z"),
      a(6, "weird", "open", "2026-01-01T13:00:00Z"),
    ]);
    expect(sorted.map((x) => x.id)).toEqual([3, 2, 5, 4, 1, 6]);
  });
  it("does not reorder its input", () => {
    const input = [a(1, "low", "open", "2026-01-01T10:00:00Z"), a(2, "critical", "open", "2026-01-01T10:00:00Z")];
    triageOrder(input);
    expect(input.map((x) => x.id)).toEqual([1, 2]);
  });
});

describe("inboxLabel", () => {
  it("counts open and acknowledged alerts and names the critical ones", () => {
    expect(inboxLabel({ open: 0, acknowledged: 0, by_severity: {} })).toBeNull();
    expect(inboxLabel({ open: 1, acknowledged: 0, by_severity: { low: 1 } })).toBe("1 alert to handle");
    expect(inboxLabel({ open: 0, acknowledged: 1, by_severity: { high: 1 } })).toBe("1 alert to handle");
    expect(inboxLabel({ open: 2, acknowledged: 1, by_severity: { critical: 2, low: 1 } })).toBe("3 alerts to handle, 2 critical");
  });
});

describe("incidentOpenedLabel", () => {
  const clock = (regime: string, remaining: number | null, met_at: string | null = null) => ({
    regime, due_at: "2026-12-15T08:00:00Z", met_at, remaining_seconds: remaining,
  });
  it("names the running clocks, soonest first, and leaves met ones out", () => {
    const incident = { id: 4, clocks: [clock("hipaa_164_404", 60 * 86400), clock("eu_ai_act_art73", 2 * 86400 + 5), clock("x", null, "2026-12-01T00:00:00Z")] };
    expect(incidentOpenedLabel(incident)).toBe(
      "Incident 4 opened · EU AI Act Art. 73 due in 2 days (2026-12-15) · HIPAA 164.404 due in 60 days (2026-12-15)",
    );
  });
  it("says hours under a day and overdue past the deadline", () => {
    expect(incidentOpenedLabel({ id: 1, clocks: [clock("hipaa_164_410", 7200), clock("eu_ai_act_art73", -5)] })).toBe(
      "Incident 1 opened · EU AI Act Art. 73 overdue (2026-12-15) · HIPAA 164.410 due in 2 h (2026-12-15)",
    );
    expect(incidentOpenedLabel({ id: 2, clocks: [] })).toBe("Incident 2 opened");
  });
});
