// A form generated from a template's JSON Schema: the server validates the same schema, so the
// form only helps (field per property, nested fieldsets for conditions, lists as comma text).
import { Checkbox, Fieldset, NativeSelect, Stack, TextInput } from "@mantine/core";
import { useState } from "react";
import type { JsonSchema } from "./types";

type Value = Record<string, unknown>;

const LABELS: Record<string, string> = {
  name: "Rule name", title: "Title", owner: "Owner", controls: "Controls", message: "Message", log_only: "Log only (evaluate, do not enforce)",
  tools: "Tools", effect: "Effect", when: "Only when", quorum: "Approvers needed", per: "Count per", window: "Window", limit: "Limit",
  allow_hosts: "Allowed hosts", fields: "Fields to mask", after_tools: "After calling tools", after_labels: "After reading data labelled",
  environments: "Environments", path_prefixes: "Path prefixes", hosts: "Hosts", amount_over: "Amount over", currency: "Currency",
  recipient_domains: "Recipient domains", branch_patterns: "Branch patterns", time_window: "Time window (UTC)", agent_teams: "Agent teams",
  risk_tiers: "Risk tiers", from_hour: "From hour", to_hour: "To hour", days: "Days",
};

export function label(name: string): string {
  return LABELS[name] ?? name;
}

function prune(value: Value): Value {
  // Empty answers are no answers: the schema refuses empty lists and blank strings.
  const out: Value = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === "" || item === undefined || (Array.isArray(item) && !item.length)) continue;
    if (typeof item === "object" && item !== null && !Array.isArray(item)) {
      const inner = prune(item as Value);
      if (Object.keys(inner).length) out[key] = inner;
    } else out[key] = item;
  }
  return out;
}

export function cleaned(value: Value): Value {
  return prune(value);
}

export function SchemaForm({ schema, value, onChange, path = "" }: { schema: JsonSchema; value: Value; onChange: (v: Value) => void; path?: string }) {
  const set = (key: string, item: unknown) => onChange({ ...value, [key]: item });
  return (
    <Stack gap="xs">
      {Object.entries(schema.properties ?? {}).map(([key, field]) => {
        const id = `${path}${key}`;
        const required = (schema.required ?? []).includes(key);
        const current = value[key];
        if (field.type === "object") {
          return (
            <Fieldset key={key} legend={label(key)} data-testid={`fieldset-${id}`}>
              <SchemaForm schema={field} value={(current as Value) ?? {}} onChange={(inner) => set(key, inner)} path={`${id}.`} />
            </Fieldset>
          );
        }
        if (field.enum) {
          return (
            <NativeSelect key={key} label={label(key)} required={required} data={["", ...field.enum]} value={(current as string) ?? ""}
              onChange={(e) => set(key, e.currentTarget.value)} description={field.description} />
          );
        }
        if (field.type === "boolean") {
          return <Checkbox key={key} label={label(key)} checked={Boolean(current)} onChange={(e) => set(key, e.currentTarget.checked)} />;
        }
        if (field.type === "array") {
          const enumItems = field.items?.enum;
          return (
            <ListInput key={key} label={label(key)} required={required} description={field.description ?? (enumItems ? `Comma-separated: ${enumItems.join(", ")}` : "Comma-separated")}
              value={Array.isArray(current) ? (current as string[]) : []} onChange={(items) => set(key, items)} />
          );
        }
        if (field.type === "integer" || field.type === "number") {
          return (
            <TextInput key={key} label={label(key)} required={required} type="number" value={current === undefined ? "" : String(current)} description={field.description}
              onChange={(e) => set(key, e.currentTarget.value === "" ? undefined : Number(e.currentTarget.value))} />
          );
        }
        return (
          <TextInput key={key} label={label(key)} required={required} description={field.description} value={(current as string) ?? ""}
            onChange={(e) => set(key, e.currentTarget.value)} />
        );
      })}
    </Stack>
  );
}

function ListInput({ label: text, value, onChange, required, description }: { label: string; value: string[]; onChange: (items: string[]) => void; required: boolean; description?: string }) {
  // The text as typed (so "a, " can be typed); the list is what the API receives.
  const [raw, setRaw] = useState(value.join(", "));
  return (
    <TextInput label={text} required={required} description={description} value={raw}
      onChange={(e) => { setRaw(e.currentTarget.value); onChange(e.currentTarget.value.split(",").map((s) => s.trim()).filter(Boolean)); }} />
  );
}
