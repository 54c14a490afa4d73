import { expect, test } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkA11y, login, root, shot, varDir } from "./fixtures";

test("audit: search events, open a session timeline, verify, export JSONL that warden audit verify accepts", async ({ page }, info) => {
  await login(page, "auditor");
  await page.goto("/audit");
  await page.getByLabel("Agent").fill("code-assistant");
  await expect(page.getByRole("link", { name: "demo-session-1" }).first()).toBeVisible();
  await checkA11y(page, "audit-events");
  await shot(page, "audit-events");
  await page.getByRole("link", { name: "demo-session-1" }).first().click();
  const timeline = page.getByTestId("timeline");
  for (const kind of ["intent", "decision", "result", "output"]) await expect(timeline.getByRole("cell", { name: kind, exact: true }).first()).toBeVisible();
  await expect(timeline.getByText("linked").first()).toBeVisible();
  await expect(timeline.getByText("broken")).toHaveCount(0);

  await page.getByRole("button", { name: "Verify checkpoints now" }).click();
  await expect(page.getByTestId("verify-result")).toContainText("The log verifies");
  await checkA11y(page, "audit-session");
  await shot(page, "audit-session-timeline");

  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: /Export JSONL/ }).click();
  const file = info.outputPath("session.jsonl");
  await (await download).saveAs(file);
  const lines = readFileSync(file, "utf8").trim().split("\n");
  expect(lines.length).toBe(6);
  const verify = spawnSync(join(root, ".venv/bin/warden"), ["audit", "verify", "--public-key", join(varDir, "demo-keys/code-assistant.pem"), file], { encoding: "utf8" });
  expect(verify.status, verify.stdout + verify.stderr).toBe(0);
});

test("audit: quarantine tab says nothing is quarantined", async ({ page }) => {
  await login(page, "auditor");
  await page.goto("/audit?tab=quarantine");
  await expect(page.getByTestId("empty-state")).toContainText("Nothing quarantined");
});
