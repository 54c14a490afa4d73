import { expect, test, type Page } from "@playwright/test";
import { checkA11y, login, shot } from "./fixtures";

// Running the policy tests, publishing, promoting and rolling back each compile and run the
// library's Rego tests in the policy worker: 5-7 s on an idle machine, more on a busy one.
const SLOW = 60_000;

const BROKEN = `package warden.org.e2e

import rego.v1

deny contains msg if {
\tmsg := 
}
`;

const rule = (limit: number) => `package warden.org.e2e

import rego.v1

deny contains {"rule": "e2e-big-refunds", "message": "Refunds need a person", "controls": []} if {
\tinput.action.tool == "refund"
\tinput.action.args.amount > ${limit}
}
`;

async function setSource(page: Page, text: string) {
  const editor = page.locator(".cm-content");
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await editor.fill(text);
}

test("edit a policy with a compile error, fix it, publish, promote and roll back", async ({ page }) => {
  test.setTimeout(240_000);  // the policy tests run three times (tests tab, publish, promote), each 5-7 s idle
  await login(page, "policy-author");
  await page.goto("/policies");
  await expect(page.getByRole("button", { name: "New module" })).toBeVisible();
  // The server is shared by all specs: authoring.spec.ts may have saved modules before this one.
  const empty = page.getByTestId("empty-state");
  if (await empty.count()) await expect(empty).toContainText("No organisation modules yet");
  await page.getByRole("button", { name: "New module" }).click();
  await page.getByLabel("Path").fill("e2e/refunds.rego");
  await setSource(page, BROKEN);
  await page.getByRole("button", { name: /Save/ }).click();
  const errors = page.getByTestId("compile-errors");
  await expect(errors).toContainText(/e2e\/refunds\.rego:\d+:\d+/);
  // Marked inline in the editor too: a gutter marker and the range (or point) at line:col.
  await expect(page.locator(".cm-lint-marker-error").first()).toBeVisible();
  await expect(page.locator(".cm-lintRange-error, .cm-lintPoint-error").first()).toBeAttached();
  await checkA11y(page, "policy-editor-error");
  await shot(page, "policy-compile-error");

  await setSource(page, rule(1000));
  await page.getByLabel("Revision message").fill("refunds over 1000 need a person");
  await page.getByRole("button", { name: /Save/ }).click();
  await expect(page).toHaveURL(/\/policies\/modules\//);
  await expect(errors).toHaveCount(0);

  await setSource(page, rule(500));
  await page.getByLabel("Revision message").fill("lower the threshold to 500");
  await page.getByRole("button", { name: /Save/ }).click();
  await expect(page.getByRole("cell", { name: "lower the threshold to 500" })).toBeVisible();
  const diff = page.getByTestId("diff-view");
  await expect(diff).toContainText("+ \tinput.action.args.amount > 500");
  await expect(diff).toContainText("- \tinput.action.args.amount > 1000");
  await shot(page, "policy-revisions-diff");

  await page.goto("/policies?tab=tests");
  await page.getByRole("button", { name: "Run policy tests" }).click();
  await expect(page.getByTestId("test-report")).toContainText(/\d+ passed, 0 failed/, { timeout: SLOW });

  await page.goto("/policies?tab=release");
  const stagingBefore = await page.getByTestId("revision-staging").textContent();
  await page.getByRole("button", { name: "Publish to dev" }).click();
  await expect(page.getByTestId("release-changes")).toContainText("e2e/refunds.rego");
  await page.getByLabel(/Message/).fill("e2e refunds rule");
  await expect(page.getByRole("button", { name: "Confirm publish" })).toBeDisabled();  // no preview, no reason: refused
  await page.getByLabel(/Why publish without an impact preview/).fill("e2e: new rule, no traffic to replay");
  await checkA11y(page, "release-confirm");
  await shot(page, "policy-publish-confirm");
  await page.getByRole("button", { name: "Confirm publish" }).click();
  await expect(page.getByTestId("release-result")).toContainText("dev now runs revision", { timeout: SLOW });

  await page.getByRole("button", { name: "Promote dev to staging" }).click();
  await expect(page.getByTestId("release-changes")).toContainText("org/e2e/refunds.rego");
  await page.getByRole("button", { name: "Confirm promote" }).click();
  await expect(page.getByTestId("release-result")).toContainText("staging now runs revision", { timeout: SLOW });
  await expect(page.getByTestId("revision-staging")).not.toHaveText(stagingBefore ?? "");

  await page.getByRole("button", { name: "Roll back staging" }).click();
  await expect(page.getByTestId("release-changes")).toContainText("Back to the policies of revision");
  await page.getByRole("button", { name: "Confirm rollback" }).click();
  await expect(page.getByTestId("release-result")).toContainText("staging now runs revision", { timeout: SLOW });
  await shot(page, "policy-rollback-result");
});

test("an auditor sees the policy editor read-only with the reason", async ({ page }) => {
  await login(page, "auditor");
  await page.goto("/policies");
  await page.getByRole("link", { name: "e2e/refunds.rego" }).click();
  await expect(page.getByText(/Needs the admin or policy author role; you are auditor. The editor is read-only/)).toBeVisible();
  await expect(page.locator(".cm-content")).toHaveAttribute("contenteditable", "false");
  await expect(page.getByRole("button", { name: /Save/ })).toBeDisabled();
});
