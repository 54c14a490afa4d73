import { expect, test } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { login, root, shot, varDir } from "./fixtures";

// Named to run last (files run in name order on one worker): it adds 10,200 signed events of
// code-assistant to the shared demo log, which the other specs expect small. The events are
// real: signed with the demo key, verified and checkpointed by `seed_demo_audit_volume`
// (about a minute), so the count the console shows is the API's real cap, not a lowered one.
test("audit: past 10,000 events the count reads 10,000+, and the Rule filter finds the few that name a rule", async ({ page }) => {
  test.setTimeout(300_000);
  const seeded = spawnSync(join(root, ".venv/bin/python"), ["manage.py", "seed_demo_audit_volume", "--events", "10200"], {
    cwd: root,
    env: { ...process.env, WARDEN_VAR_DIR: varDir },
    encoding: "utf8",
    timeout: 240_000,
  });
  expect(seeded.status, seeded.stdout + seeded.stderr).toBe(0);

  await login(page, "auditor");
  await page.goto("/audit");
  await expect(page.getByText("1–25 of 10,000+", { exact: true })).toBeVisible();
  // A capped count still offers the pages after it.
  await expect(page.getByRole("button", { name: "401" })).toBeVisible();
  await shot(page, "audit-capped-count");

  await page.getByLabel("Rule").fill("demo-volume-rare");
  await expect(page.getByText("1–3 of 3", { exact: true })).toBeVisible();
  const rows = page.getByRole("row");
  await expect(rows).toHaveCount(4); // the header and the three decisions naming the rule
  for (const row of await rows.all().then((all) => all.slice(1))) {
    await expect(row.getByRole("cell", { name: "decision", exact: true })).toBeVisible();
    await expect(row.getByRole("link", { name: "volume-67" })).toBeVisible();
  }
  await expect(page).toHaveURL(/rule=demo-volume-rare/);

  // A rule id is matched whole: a prefix of it matches nothing.
  await page.getByLabel("Rule").fill("demo-volume-ra");
  await expect(page.getByText("No event matches")).toBeVisible();

  // The common rule: 68 sessions x 50 decisions, but the three rare ones: counted exactly.
  await page.getByLabel("Rule").fill("demo-volume");
  await expect(page.getByText("1–25 of 3397", { exact: true })).toBeVisible();
});
