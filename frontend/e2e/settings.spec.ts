import { expect, test } from "@playwright/test";
import { checkA11y, login, shot } from "./fixtures";

test("settings: an admin adds a user (field errors inline) and reads the change log", async ({ page }) => {
  await login(page, "admin");
  await page.goto("/settings?tab=users");
  await expect(page.getByRole("cell", { name: "demo-auditor", exact: true })).toBeVisible();
  await page.getByLabel("Username").fill("bad name!");
  await page.getByRole("button", { name: "Add user" }).click();
  await expect(page.getByLabel("Username")).toHaveAccessibleDescription(/does not match the required pattern/);
  await page.getByLabel("Username").fill("e2e-reviewer");
  await page.getByRole("textbox", { name: "Roles" }).click();
  await page.getByRole("option", { name: "auditor" }).click();
  await page.keyboard.press("Escape");
  await page.getByRole("button", { name: "Add user" }).click();
  await expect(page.getByRole("cell", { name: "e2e-reviewer", exact: true })).toBeVisible();
  await checkA11y(page, "settings-users");
  await shot(page, "settings-users");

  await page.getByRole("tab", { name: "Change log" }).click();
  await page.getByLabel("Search").fill("e2e-reviewer");
  await expect(page.getByRole("cell", { name: /e2e-reviewer/ }).first()).toBeVisible();
  await page.getByRole("button", { name: /Show the data of change/ }).first().click();
  await expect(page.getByRole("dialog")).toContainText("After");
  await page.keyboard.press("Escape");
  await checkA11y(page, "settings-changes");
  await shot(page, "settings-changes");
});
