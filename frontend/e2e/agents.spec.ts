import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { apiAs, checkA11y, login, shot, varDir } from "./fixtures";

test("agents list: search, filter by status, open the detail", async ({ page }) => {
  await login(page, "auditor");
  await page.goto("/agents");
  await expect(page.getByRole("link", { name: "support-bot" })).toBeVisible();
  await expect(page.getByText("1–4 of 4")).toBeVisible();
  await checkA11y(page, "agents-list");
  await shot(page, "agents-list");
  await page.getByLabel("Search").fill("billing");
  await expect(page.getByRole("link", { name: "billing-agent" })).toBeVisible();
  await expect(page.getByRole("link", { name: "support-bot" })).toHaveCount(0);
  await page.getByLabel("Search").fill("");
  await page.getByRole("textbox", { name: "Status", exact: true }).click();
  await page.getByRole("option", { name: "suspended", exact: true }).click();
  await expect(page.getByRole("link", { name: "data-cleaner" })).toBeVisible();
  await expect(page.getByText("1–1 of 1")).toBeVisible();
  await page.getByRole("link", { name: "data-cleaner" }).click();
  await expect(page.getByText("deleted rows outside its retention window")).toBeVisible();
  await page.goto("/agents?search=nothing-matches-this");
  await expect(page.getByTestId("empty-state")).toContainText("No agent matches");
});

test("agent detail: allowlists are validated inline and saved by an admin", async ({ page }) => {
  await login(page, "admin");
  await page.goto("/agents/code-assistant");
  await expect(page.getByRole("heading", { name: /Repository maintenance agent/ })).toBeVisible();
  await expect(page.getByText("pypi.org")).toBeVisible();
  await checkA11y(page, "agent-detail");
  const egress = page.getByRole("textbox", { name: "Egress allowlist" });
  await egress.fill("http://not a host");
  await egress.press("Enter");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await expect(egress).toHaveAccessibleDescription(/egress|host/i);
  await shot(page, "agent-allowlist-error");
  await page.reload();
  await egress.fill("api.example.com");
  await egress.press("Enter");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await expect(page.getByText(/Saved code-assistant/)).toBeVisible();
  const agent = await apiAs(page.request, "admin", "/api/v1/agents/code-assistant/");
  expect(agent.egress_allow_hosts).toContain("api.example.com");
  await shot(page, "agent-detail");
});

/** What an OPA sidecar in prod sends: a status report naming the revision it runs. */
async function reportStatus(request: import("@playwright/test").APIRequestContext, revision: string) {
  const token = readFileSync(join(varDir, "demo-tokens/opa-prod.token"), "utf8").trim();
  const response = await request.post("/opa/status", {
    headers: { Authorization: `Bearer ${token}` },
    data: { labels: { id: "e2e-opa-prod-1", version: "1.4.2" }, bundles: { prod: { name: "prod", active_revision: revision } } },
  });
  expect(response.ok()).toBeTruthy();
}

test("suspend an agent with a reason and watch propagation complete", async ({ page }) => {
  const before = (await apiAs(page.request, "admin", "/api/v1/environments/prod/")).active_bundle.revision;
  await reportStatus(page.request, before); // the engine runs the revision before the suspension
  await login(page, "approver");
  await page.goto("/agents/billing-agent");
  await page.getByRole("button", { name: "Suspend" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel(/Reason/).fill("e2e: refunds to unknown accounts");
  await checkA11y(page, "kill-switch-dialog");
  await dialog.getByRole("button", { name: "Suspend agent" }).click();
  const panel = page.getByTestId("propagation");
  await expect(panel).toContainText("prod: carried by revision");
  await expect(panel).toContainText("e2e-opa-prod-1: not yet");
  await expect(panel).toContainText("Propagating");
  await shot(page, "kill-switch-propagating");

  const after = (await apiAs(page.request, "admin", "/api/v1/environments/prod/")).active_bundle.revision;
  expect(after).not.toBe(before);
  await reportStatus(page.request, after); // the engine picked up the rebuilt bundle
  await expect(panel).toContainText("Propagation complete");
  await expect(panel).toContainText("e2e-opa-prod-1: has it");
  await expect(page.getByText("Status reason: e2e: refunds to unknown accounts")).toBeVisible();
  await shot(page, "kill-switch-complete");

  await page.getByRole("button", { name: "Resume" }).click();
  await page.getByRole("dialog").getByLabel(/Reason/).fill("e2e: cleared");
  await page.getByRole("dialog").getByRole("button", { name: "Resume agent" }).click();
  await expect(page.getByRole("button", { name: "Suspend" })).toBeVisible();
});

test("agent sandbox: a relative path is explained before saving; an admin saves the profile", async ({ page, request }) => {
  await login(page, "admin");
  await page.goto("/agents/code-assistant/sandbox");
  await expect(page.getByRole("heading", { name: "Sandbox of code-assistant" })).toBeVisible();
  const enabled = page.getByRole("switch", { name: /Sandboxed tools may run/ });
  if (!(await enabled.isChecked())) await enabled.check({ force: true });
  const writable = page.getByRole("textbox", { name: "Writable paths" });
  await writable.fill("out/relative");
  await writable.press("Enter");
  await expect(page.getByTestId("sandbox-hints")).toContainText("'out/relative' must be absolute");
  await expect(page.getByRole("button", { name: "Save sandbox" })).toBeDisabled();
  await writable.press("Backspace");
  await writable.fill("/srv/e2e-out");
  await writable.press("Enter");
  await expect(page.getByTestId("sandbox-hints")).toHaveCount(0);
  await page.getByRole("button", { name: "Save sandbox" }).click();
  await expect(page.getByText("Saved the sandbox of code-assistant")).toBeVisible();
  const agent = await apiAs(request, "admin", "/api/v1/agents/code-assistant/");
  expect(agent.sandbox_profile.file_write).toContain("/srv/e2e-out");
  expect(agent.sandbox_profile.file_write).not.toContain("out/relative");
});

test("agent delegation: the rule reads as a sentence, bad entries are explained, an admin saves it", async ({ page, request }) => {
  await login(page, "admin");
  await page.goto("/agents/support-bot/delegation");
  await expect(page.getByRole("heading", { name: "Delegation rule of support-bot" })).toBeVisible();
  const actFor = page.getByRole("textbox", { name: "May act for" });
  await actFor.fill("not an address");
  await actFor.press("Enter");
  await expect(page.getByTestId("delegation-hints")).toContainText("may_act_for");
  await expect(page.getByRole("button", { name: "Save delegation rule" })).toBeDisabled();
  await actFor.press("Backspace");
  await actFor.fill("@example.com");
  await actFor.press("Enter");
  await expect(page.getByTestId("delegation-hints")).toHaveCount(0);
  await expect(page.getByTestId("delegation-sentence")).toContainText("it accepts grants from everyone at example.com");
  await page.getByRole("button", { name: "Save delegation rule" }).click();
  await expect(page.getByText("Saved the delegation rule of support-bot")).toBeVisible();
  const rule = await apiAs(request, "admin", "/api/v1/delegation/rules/support-bot/");
  expect(rule.may_act_for).toEqual(["@example.com"]);
});
