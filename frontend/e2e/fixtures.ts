import AxeBuilder from "@axe-core/playwright";
import { expect, type Page, type APIRequestContext } from "@playwright/test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const varDir = process.env.WARDEN_E2E_VAR_DIR ?? "";
export const root = process.env.WARDEN_E2E_ROOT ?? "";
const passwords: Record<string, string> = process.env.WARDEN_E2E_PASSWORDS
  ? JSON.parse(readFileSync(process.env.WARDEN_E2E_PASSWORDS, "utf8"))
  : {};

export type DemoRole = "admin" | "policy-author" | "approver" | "auditor";

export function demoToken(role: string): string {
  return readFileSync(join(varDir, "demo-tokens", `${role}.token`), "utf8").trim();
}

export async function login(page: Page, role: DemoRole) {
  const username = `demo-${role}`;
  await page.goto("/");
  await page.getByLabel("Username").fill(username);
  await page.getByRole("textbox", { name: "Password", exact: true }).fill(passwords[username] ?? "");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("current-user")).toHaveText(username);
}

const SHOTS = "test-results/screenshots";

export async function shot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** axe-core on the current page: no serious or critical violation; results kept as JSON. */
export async function checkA11y(page: Page, name: string) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  mkdirSync("test-results/axe", { recursive: true });
  const summary = results.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  writeFileSync(`test-results/axe/${name}.json`, JSON.stringify({ url: page.url(), passes: results.passes.length, violations: summary }, null, 2));
  const serious = summary.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious, `serious/critical axe violations on ${name}`).toEqual([]);
}

export async function apiAs(request: APIRequestContext, role: string, path: string) {
  const response = await request.get(path, { headers: { Authorization: `Token ${demoToken(role)}` } });
  expect(response.ok()).toBeTruthy();
  return response.json();
}

/** Pick `option` in the Mantine Select labelled `label`. */
export async function choose(page: Page, label: string, option: string) {
  await page.getByRole("textbox", { name: label, exact: true }).click();
  await page.getByRole("option", { name: option, exact: true }).click();
}

export async function apiPost(request: APIRequestContext, path: string, body: unknown, headers: Record<string, string>) {
  return request.post(path, { data: body, headers });
}
