import { describe, expect, it } from "vitest";
import { formFromRule, formProblems, personProblem, ruleFromForm, ruleSentence } from "./delegationRule";

describe("rule ⇄ form", () => {
  it("round-trips a rule; no rule yet is an empty form", () => {
    const rule = { may_delegate_to: ["researcher"], may_act_for: ["@example.com"], max_depth: 2, max_lifetime_seconds: 900 };
    expect(ruleFromForm(formFromRule(rule))).toEqual(rule);
    expect(formFromRule(null)).toEqual({ may_delegate_to: [], may_act_for: [], max_depth: "", max_lifetime_seconds: "" });
    expect(ruleFromForm(formFromRule(undefined))).toEqual({ may_delegate_to: [], may_act_for: [], max_depth: null, max_lifetime_seconds: null });
  });
  it("sorts, de-duplicates and lowercases addresses as the API stores them", () => {
    const form = { may_delegate_to: ["b", "a", "b"], may_act_for: ["Alice@Example.com", "alice@example.com"], max_depth: "" as const, max_lifetime_seconds: 60 };
    expect(ruleFromForm(form)).toEqual({ may_delegate_to: ["a", "b"], may_act_for: ["alice@example.com"], max_depth: null, max_lifetime_seconds: 60 });
  });
});

describe("hints", () => {
  it("accepts an address, an @domain and *", () => {
    expect(personProblem("alice@example.com")).toBeNull();
    expect(personProblem("@example.com")).toBeNull();
    expect(personProblem("*")).toBeNull();
    expect(personProblem("not an address")).toMatch(/not an e-mail address/);
    expect(personProblem("a@b@c")).not.toBeNull();
    expect(personProblem("@")).not.toBeNull();
  });
  it("names the field like the API does", () => {
    const form = { may_delegate_to: ["orchestrator", "Not A Name"], may_act_for: ["x"], max_depth: 9, max_lifetime_seconds: 0 };
    expect(formProblems("orchestrator", form)).toEqual([
      "may_delegate_to: an agent cannot delegate to itself",
      "may_delegate_to: 'Not A Name' is not an agent name or '*'",
      "may_act_for: 'x' is not an e-mail address, '@domain' or '*'",
      "max_depth: must be from 1 to 8",
      "max_lifetime_seconds: must be from 1 to 604800 seconds",
    ]);
    expect(formProblems("orchestrator", formFromRule({ may_delegate_to: ["*"], may_act_for: ["*"] }))).toEqual([]);
  });
});

describe("sentence", () => {
  it("says what the rule allows in plain words", () => {
    expect(ruleSentence("orchestrator", formFromRule({ may_delegate_to: ["researcher"], may_act_for: ["@example.com"], max_depth: 2, max_lifetime_seconds: 900 })))
      .toBe("orchestrator may delegate to researcher, at most 2 link(s) deep, with grants valid for at most 900 s; it accepts grants from everyone at example.com.");
    expect(ruleSentence("bot", formFromRule(null))).toBe("bot may not delegate to other agents; no person may start a chain at it.");
  });
});
