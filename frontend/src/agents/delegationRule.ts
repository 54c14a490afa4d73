// Pure rules of the delegation rule editor (docs/delegation.md): the agent's rule to and
// from the form, and the hints the form shows while typing. The API (and every engine, on
// the next bundle) stays the authority; these hints only say early what it will say.

export interface DelegationRuleBody {
  may_delegate_to: string[];
  may_act_for: string[];
  max_depth: number | null;
  max_lifetime_seconds: number | null;
}

export interface DelegationRuleForm {
  may_delegate_to: string[];
  may_act_for: string[];
  /** Empty: the registry's default (3 links, 3600 s). */
  max_depth: number | "";
  max_lifetime_seconds: number | "";
}

export const MAX_DEPTH = 8;
export const MAX_LIFETIME_SECONDS = 7 * 24 * 3600;
const NAME = /^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$/;
const ADDRESS = /^[^@\s]{1,64}@[^@\s]{1,190}$/;

/** A rule as the API answers it (or none yet: 404) to the form. */
export function formFromRule(rule: Partial<DelegationRuleBody> | null | undefined): DelegationRuleForm {
  const strings = (value: unknown) => (Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : []);
  return {
    may_delegate_to: strings(rule?.may_delegate_to),
    may_act_for: strings(rule?.may_act_for),
    max_depth: typeof rule?.max_depth === "number" ? rule.max_depth : "",
    max_lifetime_seconds: typeof rule?.max_lifetime_seconds === "number" ? rule.max_lifetime_seconds : "",
  };
}

/** The PUT body: the whole rule, e-mail addresses lowercased as the API stores them. */
export function ruleFromForm(form: DelegationRuleForm): DelegationRuleBody {
  return {
    may_delegate_to: [...new Set(form.may_delegate_to)].sort(),
    may_act_for: [...new Set(form.may_act_for.map((entry) => entry.toLowerCase()))].sort(),
    max_depth: form.max_depth === "" ? null : form.max_depth,
    max_lifetime_seconds: form.max_lifetime_seconds === "" ? null : form.max_lifetime_seconds,
  };
}

/** Why `entry` of may_act_for would be refused, or null: an address, "@domain" or "*". */
export function personProblem(entry: string): string | null {
  if (entry === "*") return null;
  const address = entry.startsWith("@") ? `someone${entry}` : entry;
  return ADDRESS.test(address) ? null : `'${entry}' is not an e-mail address, '@domain' or '*'`;
}

/** The problems the API would name, field first, for the agent `self`. */
export function formProblems(self: string, form: DelegationRuleForm): string[] {
  const problems: string[] = [];
  for (const name of form.may_delegate_to) {
    if (name !== "*" && !NAME.test(name)) problems.push(`may_delegate_to: '${name}' is not an agent name or '*'`);
    if (name === self) problems.push("may_delegate_to: an agent cannot delegate to itself");
  }
  for (const entry of form.may_act_for) {
    const problem = personProblem(entry);
    if (problem) problems.push(`may_act_for: ${problem}`);
  }
  if (form.max_depth !== "" && !(Number.isInteger(form.max_depth) && form.max_depth >= 1 && form.max_depth <= MAX_DEPTH)) {
    problems.push(`max_depth: must be from 1 to ${MAX_DEPTH}`);
  }
  const lifetime = form.max_lifetime_seconds;
  if (lifetime !== "" && !(Number.isInteger(lifetime) && lifetime >= 1 && lifetime <= MAX_LIFETIME_SECONDS)) {
    problems.push(`max_lifetime_seconds: must be from 1 to ${MAX_LIFETIME_SECONDS} seconds`);
  }
  return problems;
}

/** One plain sentence of what the rule allows, for the agent page and the form's preview. */
export function ruleSentence(self: string, form: DelegationRuleForm): string {
  const to = form.may_delegate_to.includes("*") ? "any agent" : form.may_delegate_to.join(", ");
  const delegates = form.may_delegate_to.length === 0
    ? `${self} may not delegate to other agents`
    : `${self} may delegate to ${to}, ${form.max_depth === "" ? "up to the registry's default depth" : `at most ${form.max_depth} link(s) deep`}, ` +
      `with grants valid for ${form.max_lifetime_seconds === "" ? "the registry's default lifetime" : `at most ${form.max_lifetime_seconds} s`}`;
  const people = form.may_act_for.includes("*") ? "anyone with access to the control plane"
    : form.may_act_for.map((entry) => (entry.startsWith("@") ? `everyone at ${entry.slice(1)}` : entry)).join(", ");
  const acts = form.may_act_for.length === 0 ? "no person may start a chain at it" : `it accepts grants from ${people}`;
  return `${delegates}; ${acts}.`;
}
