import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { apiAs, checkA11y, login, shot } from "./fixtures";

test("request a compliance report, watch it finish, read the controls and download the PDF", async ({ page }, info) => {
  // Without a broker the report is built inside the request (eager tasks): allow for it.
  test.setTimeout(150_000);
  await login(page, "auditor");
  await page.goto("/compliance");
  await expect(page.getByTestId("empty-state")).toContainText("No report yet");
  await checkA11y(page, "compliance");
  await page.getByRole("textbox", { name: "Framework", exact: true }).click();
  await page.getByRole("option").first().click();
  await page.getByRole("textbox", { name: "Environment", exact: true }).click();
  await page.getByRole("option", { name: "prod", exact: true }).click();
  await page.getByRole("button", { name: "Request report" }).click();
  await expect(page).toHaveURL(/\/compliance\/[0-9a-f-]{36}$/, { timeout: 90_000 });
  await expect(page.getByTestId("report-score")).toBeVisible({ timeout: 30_000 });
  await expect(page.getByTestId("controls").locator("tbody tr").first()).toBeVisible();
  await expect(page.getByText("The first report for this framework")).toBeVisible();
  await checkA11y(page, "compliance-report");
  await shot(page, "compliance-report");

  const download = page.waitForEvent("download");
  await page.getByTestId("pdf-download").click();
  const file = info.outputPath("report.pdf");
  await (await download).saveAs(file);
  expect(readFileSync(file).subarray(0, 5).toString()).toBe("%PDF-");

  // Sign-off: the auditor prepares; the same person may not also review.
  await page.getByRole("button", { name: "Sign off as preparer" }).click();
  await expect(page.getByTestId("sign-off").locator("tbody tr").first()).toContainText("demo-auditor");
  await expect(page.getByRole("button", { name: "Sign off as reviewer" })).toBeDisabled();
  await expect(page.getByTestId("sign-off")).toContainText("three different people");

  // Attestations and scope pages render for an auditor, read-only.
  await page.goto("/compliance/attestations");
  await expect(page.getByTestId("attestation-form")).toBeVisible();
  await expect(page.getByRole("button", { name: "Record" })).toBeDisabled();
  await page.goto("/compliance/scope");
  await expect(page.getByTestId("scope-form")).toBeVisible();
  await checkA11y(page, "compliance-scope");
});

test("compliance scope: an admin declares what the reports of an environment assume", async ({ page, request }) => {
  await login(page, "admin");
  await page.goto("/compliance/scope");
  const form = page.getByTestId("scope-form");
  await expect(form.getByRole("heading", { name: /^Scope of / })).toBeVisible();
  const environment = ((await form.getByRole("heading", { name: /^Scope of / }).textContent()) ?? "").replace("Scope of ", "").trim();
  const note = "Batch analytics jobs run outside Warden and are not covered.";
  await expect(form.getByRole("button", { name: "Save scope" })).toBeDisabled();
  await form.getByRole("textbox", { name: "Out of scope" }).fill(note);
  await form.getByRole("button", { name: "Save scope" }).click();
  await expect(form).toContainText("by demo-admin");
  const scope = await apiAs(request, "admin", `/api/v1/compliance/scopes/${environment}/`);
  expect(scope.out_of_scope).toBe(note);
});
