import { describe, expect, it } from "vitest";
import { attestationPayload, expiresWithin, nextSignOff, toBase64, validateAttestation, type AttestationForm } from "./governance";

describe("nextSignOff", () => {
  it("asks for preparer, reviewer and approver in order, by three different people", () => {
    expect(nextSignOff([], "ann", "done")).toEqual({ role: "preparer", blocked: null });
    const prepared = [{ role: "preparer", user: "ann" }];
    expect(nextSignOff(prepared, "bob", "done")).toEqual({ role: "reviewer", blocked: null });
    expect(nextSignOff(prepared, "ann", "done").blocked).toMatch(/three different people/);
    const reviewed = [...prepared, { role: "reviewer", user: "bob" }];
    expect(nextSignOff(reviewed, "cy", "done")).toEqual({ role: "approver", blocked: null });
    expect(nextSignOff([...reviewed, { role: "approver", user: "cy" }], "dee", "done")).toEqual({ role: null, blocked: "The report is fully signed off." });
  });
  it("refuses an unfinished report", () => {
    expect(nextSignOff([], "ann", "running").blocked).toMatch(/only a finished report/);
  });
});

const form = (overrides: Partial<AttestationForm> = {}): AttestationForm => ({
  kind: "attestation", framework: "hipaa", control_id: "164.308(a)(1)(ii)(A)", environment: "prod",
  period_start: "2026-09-01", period_end: "2026-11-30", expires_at: "2027-03-01", statement: "Risk analysis approved.",
  owner: "ann", reason: "", compensating_measure: "", ...overrides,
});

describe("validateAttestation", () => {
  it("accepts a complete attestation", () => {
    expect(validateAttestation(form(), "2026-11-30")).toEqual({});
  });
  it("names each field the API would refuse", () => {
    const errors = validateAttestation(form({ statement: " ", period_start: "2026-12-01", expires_at: "2026-11-30", owner: "" }), "2026-11-30");
    expect(Object.keys(errors).sort()).toEqual(["expires_at", "owner", "period_start", "statement"]);
    expect(validateAttestation(form({ period_end: "30/11/2026" }), "2026-11-30").period_end).toBe("A date is required.");
  });
  it("asks an exception for a reason and a compensating measure", () => {
    expect(Object.keys(validateAttestation(form({ kind: "exception" }), "2026-11-30")).sort()).toEqual(["compensating_measure", "reason"]);
    expect(validateAttestation(form({ kind: "exception", reason: "vendor", compensating_measure: "weekly review" }), "2026-11-30")).toEqual({});
  });
});

describe("attestationPayload", () => {
  it("turns days into UTC instants covering the whole period and sends exception fields only for exceptions", () => {
    const body = attestationPayload(form({ reason: "ignored" }), { name: "ra.pdf", base64: "JVBERg==" });
    expect(body).toMatchObject({ period_start: "2026-09-01T00:00:00Z", period_end: "2026-11-30T23:59:59Z", expires_at: "2027-03-01T00:00:00Z", document_base64: "JVBERg==", document_name: "ra.pdf" });
    expect(body).not.toHaveProperty("reason");
    expect(attestationPayload(form({ kind: "exception", reason: "r", compensating_measure: "c" }))).toMatchObject({ reason: "r", compensating_measure: "c" });
  });
});

describe("toBase64", () => {
  it("encodes bytes larger than one chunk exactly", () => {
    const bytes = new Uint8Array(70_000).map((_, i) => i % 251);
    expect(Buffer.from(toBase64(bytes), "base64").equals(Buffer.from(bytes))).toBe(true);
  });
});

describe("expiresWithin", () => {
  const now = new Date("2026-11-30T09:00:00Z");
  it("warns about current items expiring within 30 days only", () => {
    expect(expiresWithin({ state: "current", expires_at: "2026-12-10T09:00:00Z" }, now)).toBe(10);
    expect(expiresWithin({ state: "current", expires_at: "2027-02-10T09:00:00Z" }, now)).toBeNull();
    expect(expiresWithin({ state: "expired", expires_at: "2026-11-29T09:00:00Z" }, now)).toBeNull();
    expect(expiresWithin({ state: "revoked", expires_at: "2026-12-10T09:00:00Z" }, now)).toBeNull();
  });
});
