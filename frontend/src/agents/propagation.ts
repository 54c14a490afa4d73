// Kill-switch propagation: which bundle revision carries the new status in each of the
// agent's environments, and which engines have picked it up.
import type { Activation, OPAInstance } from "../api/types";

export interface EnvironmentPropagation {
  environment: string;
  revision: string | null; // the first revision activated at or after the status change
  engines: { instance_id: string; active_revision: string; picked_up: boolean; stale: boolean }[];
  complete: boolean;
}

export function carryingRevision(activations: readonly Activation[], changedAt: string): string | null {
  const after = activations
    .filter((activation) => activation.activated_at >= changedAt)
    .sort((a, b) => (a.activated_at < b.activated_at ? -1 : 1));
  return after[0]?.bundle.revision ?? null;
}

export function propagation(
  environment: string,
  activations: readonly Activation[],
  instances: readonly OPAInstance[],
  changedAt: string,
  currentRevision: string | null,
): EnvironmentPropagation {
  const revision = carryingRevision(activations, changedAt);
  const laterRevisions = new Set(
    activations.filter((a) => a.activated_at >= changedAt).map((a) => a.bundle.revision),
  );
  const engines = instances
    .filter((instance) => instance.environment === environment)
    .map((instance) => ({
      instance_id: instance.instance_id,
      active_revision: instance.active_revision,
      // A later rebuild also carries the status, so any revision from then on counts.
      picked_up: laterRevisions.has(instance.active_revision) || (!!currentRevision && instance.active_revision === currentRevision && revision !== null),
      stale: instance.is_stale,
    }));
  const live = engines.filter((engine) => !engine.stale);
  return { environment, revision, engines, complete: revision !== null && live.every((engine) => engine.picked_up) };
}
