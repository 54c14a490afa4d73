import { expect, test } from "@playwright/test";
import { checkA11y, login, shot } from "./fixtures";

test("environments: history and engines, a token shown once with its OPA config", async ({ page, baseURL }) => {
  await login(page, "admin");
  await page.goto("/environments");
  await page.getByRole("tab", { name: "prod" }).click();
  await expect(page.getByRole("heading", { name: "Activation history" })).toBeVisible();
  await expect(page.locator("table").first().locator("tbody tr").first()).toBeVisible();
  await checkA11y(page, "environments");
  await page.getByLabel("New token name").fill("e2e-opa");
  await page.getByRole("button", { name: "Create token" }).click();
  const dialog = page.getByRole("dialog");
  await expect(dialog).toContainText("only time the token is shown");
  const [token, config] = await dialog.getByTestId("secret-value").allTextContents();
  expect(token).toMatch(/^wdn_/);
  expect(config).toContain(`url: ${baseURL}/opa`);
  expect(config).toContain(`token: "${token}"`);
  expect(config).toContain("BEGIN PUBLIC KEY");
  expect(config).toMatch(/keyid: \S+/);
  expect(config).toContain("resource: bundles/prod");
  await shot(page, "environment-token-once");
  await dialog.getByRole("button", { name: "I have copied it" }).click();
  await expect(page.getByText(token!)).toHaveCount(0);
  await expect(page.getByRole("cell", { name: "e2e-opa", exact: true })).toBeVisible();
  await shot(page, "environments");
});

test("an approver sees environment tokens are for admins", async ({ page }) => {
  await login(page, "approver");
  await page.goto("/environments?name=dev");
  await expect(page.getByTestId("role-reason")).toContainText("Needs the admin role");
  await expect(page.getByRole("button", { name: "Create token" })).toHaveCount(0);
});
