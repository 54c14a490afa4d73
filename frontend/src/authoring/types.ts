// The authoring API's shapes (controlplane/authoring/api/serializers.py).
export type JsonSchema = {
  type?: string;
  title?: string;
  description?: string;
  enum?: string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
};

export type Template = { key: string; title: string; description: string; schema: JsonSchema };

export type Example = { description?: string; expect: "deny" | "hold" | "pass" | "mask"; input: Record<string, unknown>; agent?: Record<string, string>; environment?: string };

export type Draft = { sentence: string; module: string; tests: string; test_results: { test: string; passed: boolean; message: string | null }[] };

export type AuthoredRule = {
  id: string; name: string; template: string; params: Record<string, unknown>; examples: Example[]; sentence: string;
  log_only: boolean; module_path: string | null; source: string | null; tests: string | null; edited_as_rego: boolean;
};

export type Sample = {
  transition: string; relaxation: boolean; source: string; ref: string; records: number; input: unknown;
  before: { effect: string }; after: { effect: string }; rules_added: string[]; rules_removed: string[];
};

export type ImpactPreview = {
  id: string; environment: string; status: "queued" | "running" | "done" | "failed"; progress: number; total: number;
  unique_inputs: number; sources: Record<string, number>; relaxations: number; needs_second_person: boolean;
  changes: { transitions?: Record<string, number>; by_rule?: Record<string, number>; by_agent?: Record<string, number>; by_tool?: Record<string, number>; new_holds?: number };
  samples: Sample[]; duration_ms: number | null; error: string; requested_by: string | null; second_person: string | null; bundle_revision: string | null;
};

export type LogOnlyEffects = {
  environment: string; decisions: number;
  rules: { rule: string; message: string; matched: number; would_change: number; transitions: Record<string, number>; samples: { input: unknown; effect: string; would_be: string }[] }[];
};
