import { expect, test } from "@playwright/test";
import { checkA11y, login, shot } from "./fixtures";

test("overview: agents by status and tier, environments, engines, decisions chart, quarantine, scores", async ({ page }) => {
  await login(page, "admin");
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByRole("link", { name: /active/ }).first()).toBeVisible();
  await expect(page.getByRole("link", { name: "prod" })).toBeVisible();
  await expect(page.getByRole("img", { name: /Decisions per hour/ })).toBeVisible();
  await expect(page.getByTestId("quarantine-count")).toContainText("0 records");
  await checkA11y(page, "overview");
  await shot(page, "overview");
  await page.getByRole("link", { name: /suspended/ }).first().click();
  await expect(page).toHaveURL(/\/agents\?status=suspended/);
  await expect(page.getByRole("link", { name: "data-cleaner" })).toBeVisible();
});
