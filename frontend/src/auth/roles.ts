// What each role may do, as the API enforces it (the permission classes of each viewset);
// the UI only hides or disables controls and says why. The server stays the authority.
import type { Role } from "../api/types";

export type Capability =
  | "kill_switch"
  | "edit_agents"
  | "write_policies"
  | "release_bundles"
  | "manage_environments"
  | "request_reports"
  | "manage_compliance"
  | "sign_off_reports"
  | "approve_exceptions"
  | "export_audit"
  | "manage_users"
  | "triage_alerts";

const ALLOWED: Record<Capability, readonly Role[]> = {
  kill_switch: ["admin", "approver"],
  edit_agents: ["admin"],
  write_policies: ["admin", "policy_author"],
  release_bundles: ["admin", "policy_author"],
  manage_environments: ["admin"],
  request_reports: ["admin", "auditor"],
  manage_compliance: ["admin"],
  sign_off_reports: ["admin", "approver", "auditor"],
  approve_exceptions: ["admin", "approver"],
  export_audit: ["admin", "auditor"],
  manage_users: ["admin"],
  triage_alerts: ["admin", "approver"],
};

const ROLE_NAMES: Record<Role, string> = {
  admin: "admin",
  policy_author: "policy author",
  approver: "approver",
  auditor: "auditor",
};

export function can(roles: readonly Role[], capability: Capability): boolean {
  return ALLOWED[capability].some((role) => roles.includes(role));
}

/** The sentence shown next to a disabled control. */
export function whyNot(roles: readonly Role[], capability: Capability): string {
  const needed = ALLOWED[capability].map((role) => ROLE_NAMES[role]).join(" or ");
  const held = roles.length ? roles.map((role) => ROLE_NAMES[role]).join(", ") : "no role";
  return `Needs the ${needed} role; you are ${held}.`;
}

export function roleLabel(role: Role): string {
  return ROLE_NAMES[role];
}
