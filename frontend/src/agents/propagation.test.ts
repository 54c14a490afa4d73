import { describe, expect, it } from "vitest";
import type { Activation, OPAInstance } from "../api/types";
import { carryingRevision, propagation } from "./propagation";

const activation = (revision: string, at: string): Activation =>
  ({ id: 1, bundle: { id: revision, revision, etag: "", created_at: at, reason: "" }, previous_revision: "", activated_by: "", reason: "", activated_at: at }) as Activation;
const instance = (id: string, environment: string, revision: string, stale = false): OPAInstance =>
  ({ instance_id: id, environment, active_revision: revision, is_stale: stale, is_current: false }) as OPAInstance;

const CHANGED = "2026-01-01T10:00:00Z";

describe("kill switch propagation", () => {
  it("takes the first revision activated at or after the status change", () => {
    expect(carryingRevision([activation("old", "2026-01-01T09:00:00Z"), activation("r2", "2026-01-01T10:00:05Z"), activation("r1", "2026-01-01T10:00:01Z")], CHANGED)).toBe("r1");
    expect(carryingRevision([activation("old", "2026-01-01T09:00:00Z")], CHANGED)).toBeNull();
  });
  it("is pending until every live engine of the environment runs a revision from then on", () => {
    const activations = [activation("old", "2026-01-01T09:00:00Z"), activation("new", "2026-01-01T10:00:01Z")];
    const pending = propagation("prod", activations, [instance("a", "prod", "new"), instance("b", "prod", "old"), instance("c", "dev", "old")], CHANGED, null);
    expect(pending.revision).toBe("new");
    expect(pending.engines.map((e) => [e.instance_id, e.picked_up])).toEqual([["a", true], ["b", false]]);
    expect(pending.complete).toBe(false);
    const done = propagation("prod", activations, [instance("a", "prod", "new"), instance("b", "prod", "old", true)], CHANGED, null);
    expect(done.complete).toBe(true); // a stale engine is shown, not waited for
  });
  it("is not complete before the rebuilt bundle exists, even with no engines", () => {
    expect(propagation("prod", [activation("old", "2026-01-01T09:00:00Z")], [], CHANGED, null).complete).toBe(false);
    expect(propagation("prod", [activation("new", "2026-01-01T10:00:01Z")], [], CHANGED, null).complete).toBe(true);
  });
});
