import { describe, expect, it } from "vitest";
import { can, whyNot } from "./roles";

describe("role capabilities mirror the API's permission classes", () => {
  it("lets admins and approvers pull the kill switch, not authors or auditors", () => {
    expect(can(["admin"], "kill_switch")).toBe(true);
    expect(can(["approver"], "kill_switch")).toBe(true);
    expect(can(["policy_author"], "kill_switch")).toBe(false);
    expect(can(["auditor"], "kill_switch")).toBe(false);
  });
  it("lets authors release bundles and auditors request reports", () => {
    expect(can(["policy_author"], "release_bundles")).toBe(true);
    expect(can(["auditor"], "release_bundles")).toBe(false);
    expect(can(["auditor"], "request_reports")).toBe(true);
    expect(can(["approver"], "request_reports")).toBe(false);
  });
  it("lets auditors sign reports off but not edit scope or approve exceptions", () => {
    expect(can(["auditor"], "sign_off_reports")).toBe(true);
    expect(can(["policy_author"], "sign_off_reports")).toBe(false);
    expect(can(["approver"], "approve_exceptions")).toBe(true);
    expect(can(["auditor"], "approve_exceptions")).toBe(false);
    expect(can(["approver"], "manage_compliance")).toBe(false);
  });
  it("gives nothing to a user without roles", () => {
    expect(can([], "export_audit")).toBe(false);
    expect(whyNot([], "manage_users")).toBe("Needs the admin role; you are no role.");
  });
  it("names the roles needed and held", () => {
    expect(whyNot(["auditor"], "kill_switch")).toBe("Needs the admin or approver role; you are auditor.");
  });
});
