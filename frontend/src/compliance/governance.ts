// The rules the console applies before it calls the compliance governance API (sign-off order,
// attestation forms, expiry warnings). The API enforces the same rules; these only let the page
// say in advance what it will refuse.

export const SIGN_OFF_ORDER = ["preparer", "reviewer", "approver"] as const;
export type SignOffRole = (typeof SIGN_OFF_ORDER)[number];

export interface SignOffLike {
  role: string;
  user: string;
}

export interface NextSignOff {
  role: SignOffRole | null;
  /** Why the current user cannot sign the next role; null when they can. */
  blocked: string | null;
}

/** The next role to sign, and whether `username` may sign it (three different people, in order). */
export function nextSignOff(signOffs: readonly SignOffLike[], username: string, status: string): NextSignOff {
  const signed = new Set(signOffs.map((item) => item.role));
  const role = SIGN_OFF_ORDER.find((r) => !signed.has(r)) ?? null;
  if (role === null) return { role, blocked: "The report is fully signed off." };
  if (status !== "done") return { role, blocked: `The report is ${status}; only a finished report can be signed off.` };
  const earlier = signOffs.find((item) => item.user === username);
  if (earlier) return { role, blocked: `You signed as ${earlier.role}; preparer, reviewer and approver must be three different people.` };
  return { role, blocked: null };
}

export interface AttestationForm {
  kind: "attestation" | "exception";
  framework: string;
  control_id: string;
  environment: string;
  period_start: string; // yyyy-mm-dd
  period_end: string;
  expires_at: string;
  statement: string;
  owner: string;
  reason: string;
  compensating_measure: string;
}

export type FormErrors = Partial<Record<keyof AttestationForm, string>>;

const isDate = (value: string) => /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(`${value}T00:00:00Z`));

/** The checks the API makes that the form can make first; an empty object when none fails. */
export function validateAttestation(form: AttestationForm, today: string): FormErrors {
  const errors: FormErrors = {};
  for (const field of ["framework", "control_id", "environment", "statement", "owner"] as const) {
    if (!form[field].trim()) errors[field] = "Required.";
  }
  for (const field of ["period_start", "period_end", "expires_at"] as const) {
    if (!isDate(form[field])) errors[field] = "A date is required.";
  }
  if (!errors.period_start && !errors.period_end && form.period_start >= form.period_end) errors.period_start = "Must be before the period's end.";
  if (!errors.expires_at && form.expires_at <= today) errors.expires_at = "Must be in the future: an expired attestation counts for nothing.";
  if (form.kind === "exception") {
    if (!form.reason.trim()) errors.reason = "An exception needs the reason the gap is accepted.";
    if (!form.compensating_measure.trim()) errors.compensating_measure = "An exception needs a compensating measure.";
  }
  return errors;
}

/** The request body: dates become UTC instants (a period ends at the end of its last day). */
export function attestationPayload(form: AttestationForm, document?: { name: string; base64: string }) {
  return {
    kind: form.kind,
    framework: form.framework,
    control_id: form.control_id.trim(),
    environment: form.environment,
    period_start: `${form.period_start}T00:00:00Z`,
    period_end: `${form.period_end}T23:59:59Z`,
    expires_at: `${form.expires_at}T00:00:00Z`,
    statement: form.statement,
    owner: form.owner.trim(),
    ...(form.kind === "exception" ? { reason: form.reason, compensating_measure: form.compensating_measure } : {}),
    ...(document ? { document_base64: document.base64, document_name: document.name } : {}),
  };
}

/** Base64 of a file's bytes, in chunks so a large document does not overflow the call stack. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export interface ExpiringLike {
  state: string;
  expires_at: string;
}

/** Days until a current item expires, or null when it is not current or not within `within` days. */
export function expiresWithin(item: ExpiringLike, now: Date, within = 30): number | null {
  if (item.state !== "current" && item.state !== "awaiting_approval") return null;
  const days = Math.ceil((Date.parse(item.expires_at) - now.getTime()) / 86_400_000);
  return days >= 0 && days <= within ? days : null;
}
