import { expect, test } from "@playwright/test";
import { apiAs, checkA11y, choose, login, shot } from "./fixtures";

test("run the playground: allow and deny with reasons, and nothing is recorded", async ({ page }) => {
  const eventsBefore = (await apiAs(page.request, "admin", "/api/v1/audit/events/?limit=1")).count;
  const changesBefore = (await apiAs(page.request, "admin", "/api/v1/changes/?limit=1")).count;
  await login(page, "auditor");
  await page.goto("/playground");
  await choose(page, "Environment", "prod");
  await choose(page, "Agent", "support-bot (active)");
  await choose(page, "Tool", "ticket_read");
  await page.getByRole("button", { name: "Decide" }).click();
  const decision = page.getByTestId("decision");
  await expect(decision).toContainText("allow");
  await expect(decision).toContainText("No rule objected.");

  await choose(page, "Tool", "shell");
  await page.getByText("Raw JSON").click();
  await page.getByLabel("Arguments (JSON object)").fill("[1, 2");
  await page.getByRole("button", { name: "Decide" }).click();
  await expect(page.getByLabel("Arguments (JSON object)")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByText(/Not valid JSON/)).toBeVisible();
  await page.getByLabel("Arguments (JSON object)").fill('{"command": "rm -rf /"}');
  await page.getByRole("button", { name: "Decide" }).click();
  await expect(decision).toContainText("deny");
  // support-bot lacks exec:shell: the scope rule denies, with its message and controls.
  await expect(decision.getByRole("cell", { name: "missing-scope" })).toBeVisible();
  await checkA11y(page, "playground");
  await shot(page, "playground-deny");

  expect((await apiAs(page.request, "admin", "/api/v1/audit/events/?limit=1")).count).toBe(eventsBefore);
  expect((await apiAs(page.request, "admin", "/api/v1/changes/?limit=1")).count).toBe(changesBefore);
});
