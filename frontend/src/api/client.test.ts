import { describe, expect, it } from "vitest";
import { ApiError, csrfToken, errorSummary, fieldErrors, withQuery } from "./client";

describe("fieldErrors", () => {
  it("keeps DRF's per-field lists and flattens nested fields with dots", () => {
    expect(fieldErrors({ name: ["required"], policy_settings: { rate_limits: { calls_per_minute: ["too big"] } } })).toEqual({
      name: ["required"],
      "policy_settings.rate_limits.calls_per_minute": ["too big"],
    });
  });
  it("reads a detail string and ignores the structured errors list", () => {
    expect(fieldErrors({ detail: "not found", errors: [{ file: "a.rego" }] })).toEqual({ detail: ["not found"] });
  });
  it("turns a plain text body into a detail and ignores null", () => {
    expect(fieldErrors("Bad gateway")).toEqual({ detail: ["Bad gateway"] });
    expect(fieldErrors(null)).toEqual({});
  });
});

describe("ApiError", () => {
  it("gives a field's messages, including its items'", () => {
    const error = new ApiError(400, { egress_allow_hosts: { "0": ["'http://x' is not a host name"] }, name: ["taken"] });
    expect(error.field("egress_allow_hosts")).toBe("0: 'http://x' is not a host name");
    expect(error.field("name")).toBe("taken");
    expect(error.field("other")).toBeUndefined();
  });
  it("keeps the compile problems of a 400", () => {
    const error = new ApiError(400, { source: ["a.rego:1:2: bad"], errors: [{ file: "a.rego", line: 1, column: 2, message: "bad" }] });
    expect(error.details).toHaveLength(1);
    expect(error.message).toBe("source: a.rego:1:2: bad");
  });
});

describe("errorSummary", () => {
  it("says what to do for an expired session and an unreachable server", () => {
    expect(errorSummary(401, {})).toMatch(/Log in again/);
    expect(errorSummary(0, {})).toMatch(/cannot be reached/);
    expect(errorSummary(500, {})).toBe("The control plane answered 500.");
  });
});

describe("csrfToken", () => {
  it("reads the csrftoken cookie among others", () => {
    expect(csrfToken("sessionid=abc; csrftoken=t%2Bk; theme=dark")).toBe("t+k");
    expect(csrfToken("sessionid=abc")).toBe("");
  });
});

describe("withQuery", () => {
  it("leaves out empty values and encodes the rest", () => {
    expect(withQuery("/api/v1/agents/", { search: "a b", status: "", limit: 20, x: undefined, y: null })).toBe("/api/v1/agents/?search=a+b&limit=20");
    expect(withQuery("/p", {})).toBe("/p");
  });
});
