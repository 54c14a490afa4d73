// The one API client: same-origin fetch with the session cookie, the CSRF header on every
// unsafe request, and errors that keep DRF's per-field messages for the forms.
import type { components } from "./schema";

export type Schemas = components["schemas"];

export class ApiError extends Error {
  readonly status: number;
  readonly fields: Record<string, string[]>;
  readonly details: unknown[];

  constructor(status: number, body: unknown) {
    const fields = fieldErrors(body);
    super(errorSummary(status, fields));
    this.status = status;
    this.fields = fields;
    this.details = isObject(body) && Array.isArray(body.errors) ? body.errors : [];
  }

  /** The messages for `name`, including those of its items (`name.0`, `name.key`). */
  field(name: string): string | undefined {
    const messages = Object.entries(this.fields)
      .filter(([key]) => key === name || key.startsWith(`${name}.`))
      .flatMap(([key, list]) => (key === name ? list : list.map((message) => `${key.slice(name.length + 1)}: ${message}`)));
    return messages.length ? messages.join(" ") : undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** DRF error bodies: {"detail": "..."} or {"field": ["msg", ...], "nested": {"x": [...]}}. */
export function fieldErrors(body: unknown, prefix = ""): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!isObject(body)) {
    if (typeof body === "string" && body) out.detail = [body];
    return out;
  }
  for (const [key, value] of Object.entries(body)) {
    if (key === "errors") continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === "string") out[name] = [value];
    else if (Array.isArray(value)) out[name] = value.map((item) => (typeof item === "string" ? item : JSON.stringify(item)));
    else if (isObject(value)) Object.assign(out, fieldErrors(value, name));
  }
  return out;
}

export function errorSummary(status: number, fields: Record<string, string[]>): string {
  if (status === 401) return "Your session has ended. Log in again.";
  if (status === 0) return "The control plane cannot be reached. Check that it is running and retry.";
  const parts = Object.entries(fields).map(([name, messages]) =>
    name === "detail" || name === "non_field_errors" ? messages.join(" ") : `${name}: ${messages.join(" ")}`,
  );
  return parts.join("; ") || `The control plane answered ${status}.`;
}

export function csrfToken(cookie: string = typeof document === "undefined" ? "" : document.cookie): string {
  const match = cookie.split(";").map((part) => part.trim()).find((part) => part.startsWith("csrftoken="));
  return match ? decodeURIComponent(match.slice("csrftoken=".length)) : "";
}

type Query = Record<string, string | number | boolean | undefined | null>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  let response: Response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, null);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  if (!response.ok) {
    if (response.status === 401 && onUnauthorized && !path.endsWith("/console/session/")) onUnauthorized();
    throw new ApiError(response.status, parsed);
  }
  return parsed as T;
}

export const api = {
  get: <T>(path: string, query?: Query) => request<T>("GET", path, undefined, query),
  post: <T>(path: string, body?: unknown) => request<T>("POST", path, body ?? {}),
  patch: <T>(path: string, body: unknown) => request<T>("PATCH", path, body),
  put: <T>(path: string, body: unknown) => request<T>("PUT", path, body),
  del: (path: string) => request<void>("DELETE", path),
};

export interface Page<T> {
  count: number;
  /** The audit events list counts up to 10,000 matches: `count` is then the cap. */
  count_is_capped?: boolean;
  next: string | null;
  previous: string | null;
  results: T[];
}

export const V1 = "/api/v1";
