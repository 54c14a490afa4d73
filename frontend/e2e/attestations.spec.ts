import { expect, test, type Page } from "@playwright/test";
import { createHash } from "node:crypto";
import { apiAs, login } from "./fixtures";

const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);

/** Fill the common part of the form: the first framework's first control, in prod. */
async function fillForm(page: Page, statement: string, owner: string) {
  const form = page.getByTestId("attestation-form");
  await form.getByRole("textbox", { name: "Framework", exact: true }).click();
  await page.getByRole("option").first().click();
  await form.getByRole("textbox", { name: "Control", exact: true }).click();
  await page.getByRole("option").first().click();
  await form.getByRole("textbox", { name: "Environment", exact: true }).click();
  await page.getByRole("option", { name: "prod", exact: true }).click();
  await form.getByLabel("Period start").fill(day(-30));
  await form.getByLabel("Period end").fill(day(-1));
  await form.getByLabel("Expires").fill(day(90));
  await form.getByLabel("Owner (username)").fill(owner);
  await form.getByRole("textbox", { name: "Statement" }).fill(statement);
  return form;
}

test("an admin records an attestation with a document; the stored SHA-256 is the file's", async ({ page, request }) => {
  await login(page, "admin");
  await page.goto("/compliance/attestations");
  const statement = `Access reviews ran every quarter (${Date.now()}).`;
  const form = await fillForm(page, statement, "demo-admin");
  const document = Buffer.from(`Q3 access review minutes\nsigned: demo-admin\n${statement}\n`);
  const sha256 = createHash("sha256").update(document).digest("hex");
  await form.locator('input[type="file"]').setInputFiles({ name: "q3-review.txt", mimeType: "text/plain", buffer: document });
  await form.getByRole("button", { name: "Record" }).click();

  const row = page.getByTestId("attestations").locator("tbody tr", { hasText: statement });
  await expect(row).toBeVisible();
  await expect(row).toContainText(`sha256 ${sha256.slice(0, 16)}`);
  await expect(row.getByRole("link", { name: "q3-review.txt" })).toBeVisible();
  const listed = await apiAs(request, "auditor", "/api/v1/compliance/attestations/?limit=200");
  const stored = listed.results.find((item: { statement: string }) => item.statement === statement);
  expect(stored.document_sha256).toBe(sha256);
  expect(stored.state).toBe("current");
});

test("an exception counts only once someone other than its requester and owner approves it", async ({ page, browser }) => {
  await login(page, "admin");
  await page.goto("/compliance/attestations");
  const statement = `Legacy export job keeps its shared key until migration (${Date.now()}).`;
  await page.getByTestId("attestation-form").getByText("Exception (risk acceptance)").click();
  const form = await fillForm(page, statement, "demo-admin");
  await form.getByRole("button", { name: "Record" }).click();
  await expect(form.getByText("An exception needs the reason the gap is accepted.")).toBeVisible();
  await form.getByRole("textbox", { name: "Reason the gap is accepted" }).fill("The vendor retires the job in Q1.");
  await form.getByRole("textbox", { name: "Compensating measure" }).fill("Key rotated weekly; job output reviewed daily.");
  await form.getByRole("button", { name: "Record" }).click();

  const row = page.getByTestId("attestations").locator("tbody tr", { hasText: statement });
  await expect(row).toContainText("awaiting");
  // The requester (and owner) may not approve their own risk acceptance.
  await row.getByRole("button", { name: "Approve" }).click();
  await expect(page.getByText("the approver must be someone other than the requester and the owner")).toBeVisible();
  await expect(row).toContainText("awaiting");

  const approver = await browser.newPage();
  await login(approver, "approver");
  await approver.goto("/compliance/attestations");
  const theirs = approver.getByTestId("attestations").locator("tbody tr", { hasText: statement });
  await expect(theirs.getByRole("button", { name: "Revoke" })).toHaveCount(0); // approvers approve, admins revoke
  await theirs.getByRole("button", { name: "Approve" }).click();
  await expect(theirs).toContainText("approved by demo-approver");
  await expect(theirs).toContainText("current");
  await approver.close();
});
