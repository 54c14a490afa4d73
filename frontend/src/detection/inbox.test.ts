import { describe, expect, it } from "vitest";
import { allowedTransitions, inboxLabel, triageOrder } from "./inbox";

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
