// Pure rules of the sandbox profile editor: the agent's `sandbox_profile` (what
// agents_sdk.sandbox builds the sandbox from) to and from the form, and the hints the form
// shows while typing. The API validates with the SDK's own rule (profile_problem) and stays
// the authority; these hints only say early what it will say.

export type LimitName = "wall_seconds" | "cpu_seconds" | "memory_mb" | "processes" | "output_kb" | "file_size_mb" | "open_files";

/** agents_sdk.sandbox.permissions.Limits: default and bounds of each limit. */
export const LIMITS: readonly { name: LimitName; label: string; unit: string; default: number; min: number; max: number }[] = [
  { name: "wall_seconds", label: "Wall time", unit: "s", default: 30, min: 0.1, max: 3600 },
  { name: "cpu_seconds", label: "CPU time", unit: "s", default: 10, min: 1, max: 3600 },
  { name: "memory_mb", label: "Memory", unit: "MB", default: 512, min: 16, max: 65536 },
  { name: "processes", label: "Processes", unit: "", default: 64, min: 1, max: 4096 },
  { name: "output_kb", label: "Output", unit: "KB", default: 1024, min: 1, max: 1024 * 1024 },
  { name: "file_size_mb", label: "File size (and /tmp, scratch root)", unit: "MB", default: 64, min: 1, max: 65536 },
  { name: "open_files", label: "Open files", unit: "", default: 256, min: 16, max: 65536 },
];

export interface SandboxForm {
  enabled: boolean;
  file_read: string[];
  file_write: string[];
  /** Only the limits the profile sets; the others take the sandbox's defaults. */
  limits: Partial<Record<LimitName, number>>;
}

export function formFromProfile(profile: unknown): SandboxForm {
  const p = (profile && typeof profile === "object" ? profile : {}) as Record<string, unknown>;
  const strings = (value: unknown) => (Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : []);
  const limits: Partial<Record<LimitName, number>> = {};
  const given = (p.limits && typeof p.limits === "object" ? p.limits : {}) as Record<string, unknown>;
  for (const limit of LIMITS) {
    const value = given[limit.name];
    if (typeof value === "number") limits[limit.name] = value;
  }
  return { enabled: Object.keys(p).length > 0, file_read: strings(p.file_read), file_write: strings(p.file_write), limits };
}

/** The object the API stores: {} when the sandbox is off (the agent's sandboxed tools are
 * then refused, never run unsandboxed); otherwise all three keys, so it is never empty. */
export function profileFromForm(form: SandboxForm): Record<string, unknown> {
  if (!form.enabled) return {};
  const limits: Record<string, number> = {};
  for (const limit of LIMITS) {
    const value = form.limits[limit.name];
    if (typeof value === "number" && Number.isFinite(value)) limits[limit.name] = value;
  }
  return { file_read: [...form.file_read], file_write: [...form.file_write], limits };
}

const KERNEL_ROOTS = ["/proc", "/sys", "/dev"];

/** Why `path` would be refused, in the SDK's words, or null. */
export function pathProblem(path: string): string | null {
  if (!path.startsWith("/")) return `'${path}' must be absolute (start with '/')`;
  const segments = path.replace(/\/+$/, "").split("/").slice(1);
  if (segments.length === 0 || (segments.length === 1 && segments[0] === "")) return "'/' would expose the whole host; list the directories the tool needs";
  if (segments.some((s) => s === "" || s === "." || s === "..")) return `'${path}' must not contain '.', '..' or '//' segments`;
  const normal = "/" + segments.join("/");
  if (KERNEL_ROOTS.some((root) => normal === root || normal.startsWith(root + "/"))) return `'${path}' is a kernel interface; the sandbox brings its own /proc and /dev`;
  return null;
}

/** Hints for the whole form, keyed like the API's messages ("file_read[0]: ..."). */
export function formProblems(form: SandboxForm): string[] {
  if (!form.enabled) return [];
  const problems: string[] = [];
  for (const key of ["file_read", "file_write"] as const) {
    form[key].forEach((path, index) => {
      const problem = pathProblem(path);
      if (problem) problems.push(`${key}[${index}]: ${problem}`);
    });
    if (new Set(form[key]).size !== form[key].length) problems.push(`${key}: paths must not repeat`);
  }
  for (const limit of LIMITS) {
    const value = form.limits[limit.name];
    if (value !== undefined && (value < limit.min || value > limit.max)) problems.push(`limits.${limit.name}: ${value} is outside ${limit.min}..${limit.max}`);
  }
  return problems;
}
