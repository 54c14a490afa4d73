// The playground's argument form: a text field per argument the tool's category usually
// takes, or raw JSON. Parsing is strict so the request carries exactly what the user typed.
import type { Tool } from "../api/types";

const FIELDS_BY_CATEGORY: Record<string, string[]> = {
  file: ["path"],
  shell: ["command"],
  network: ["url", "method"],
  email: ["to", "subject", "body"],
  payment: ["amount", "currency", "recipient"],
  database: ["table", "where"],
  git_push: ["remote", "branch"],
};

export function argumentFields(tool: Tool | undefined): string[] {
  return (tool && FIELDS_BY_CATEGORY[String(tool.category)]) ?? [];
}

/** Form values to arguments: numbers stay numbers, empty fields are left out. */
export function argsFromFields(values: Record<string, string>): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === "") continue;
    args[key] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return args;
}

export type Parsed = { ok: true; value: Record<string, unknown> } | { ok: false; error: string };

export function parseArgsJson(text: string): Parsed {
  if (!text.trim()) return { ok: true, value: {} };
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return { ok: false, error: "Arguments must be a JSON object, e.g. {\"path\": \"/tmp/x\"}" };
    }
    return { ok: true, value: value as Record<string, unknown> };
  } catch (error) {
    return { ok: false, error: `Not valid JSON: ${(error as Error).message}` };
  }
}
