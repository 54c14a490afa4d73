import { expect, test } from "@playwright/test";
import { checkA11y, login, shot, type DemoRole } from "./fixtures";

test("the login page is accessible and a wrong password is shown next to the field", async ({ page }) => {
  await page.goto("/");
  await checkA11y(page, "login");
  await page.getByLabel("Username").fill("demo-admin");
  await page.getByRole("textbox", { name: "Password", exact: true }).fill("not-the-password");
  await page.getByRole("button", { name: "Log in" }).click();
  const password = page.getByRole("textbox", { name: "Password", exact: true });
  // The message is attached to the field (aria-describedby), not only shown near it.
  await expect(password).toHaveAccessibleDescription(/wrong username or password/);
  await expect(page.getByText("wrong username or password")).toBeVisible();
  await shot(page, "login-error");
});

// What each role sees: the same pages, with what it may not do disabled and explained.
const EXPECT: Record<DemoRole, { killSwitch: boolean; newModule: boolean; requestReport: boolean; users: boolean }> = {
  admin: { killSwitch: true, newModule: true, requestReport: true, users: true },
  "policy-author": { killSwitch: false, newModule: true, requestReport: false, users: false },
  approver: { killSwitch: true, newModule: false, requestReport: false, users: false },
  auditor: { killSwitch: false, newModule: false, requestReport: true, users: false },
};

for (const [role, may] of Object.entries(EXPECT) as [DemoRole, (typeof EXPECT)[DemoRole]][]) {
  test(`log in as ${role} and see what the role may do`, async ({ page }) => {
    await login(page, role);
    await expect(page.getByTestId("current-role").first()).toBeVisible();

    await page.goto("/agents/support-bot");
    const suspend = page.getByRole("button", { name: "Suspend" });
    await expect(suspend).toBeVisible();
    if (may.killSwitch) await expect(suspend).toBeEnabled();
    else {
      await expect(suspend).toBeDisabled();
      await expect(page.getByTestId("role-reason").first()).toContainText("Needs the admin or approver role");
    }
    await shot(page, `role-${role}-agent`);

    await page.goto("/policies");
    const newModule = page.getByRole("button", { name: "New module" });
    if (may.newModule) await expect(newModule).toBeEnabled();
    else await expect(newModule).toBeDisabled();

    await page.goto("/compliance");
    const request = page.getByRole("button", { name: "Request report" });
    if (may.requestReport) await expect(request).toBeEnabled();
    else await expect(request).toBeDisabled();

    await page.goto("/settings?tab=users");
    if (may.users) await expect(page.getByRole("button", { name: "Add user" })).toBeVisible();
    else await expect(page.getByTestId("role-reason")).toContainText("Needs the admin role");
    await shot(page, `role-${role}-settings`);
  });
}

test("logging out ends the session and no secret is kept in browser storage", async ({ page }) => {
  await login(page, "admin");
  await page.goto("/settings");
  await page.getByLabel("Token name").fill("e2e-storage-check");
  await page.getByRole("button", { name: "Create token" }).click();
  const token = (await page.getByTestId("secret-value").textContent()) ?? "";
  expect(token).toMatch(/^wdn_/);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
  expect(stored).not.toContain(token);
  expect(stored).not.toContain("wdn_");
  await page.getByRole("button", { name: "I have copied it" }).click();
  await expect(page.getByText(token)).toHaveCount(0);

  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page.getByRole("button", { name: "Log in" })).toBeVisible();
  const me = await page.request.get("/api/v1/users/me/");
  expect(me.status()).toBe(401);
});

test("unknown API paths answer JSON 404 while page paths load the console", async ({ request, page }) => {
  const response = await request.get("/api/v1/no-such-thing/");
  expect(response.status()).toBe(404);
  expect(response.headers()["content-type"]).toContain("application/json");
  expect((await response.json()).detail).toContain("/api/v1/no-such-thing/");
  await page.goto("/agents/support-bot");
  await expect(page.getByRole("button", { name: "Log in" })).toBeVisible();
});

test("the console works at 768 px and, narrower, from the menu button", async ({ page }) => {
  await page.setViewportSize({ width: 768, height: 900 });
  await login(page, "auditor");
  await page.getByRole("link", { name: "Agents" }).click();
  await expect(page.getByRole("heading", { name: "Agents" })).toBeVisible();
  await shot(page, "tablet-agents");
  await page.setViewportSize({ width: 600, height: 900 });
  await page.getByRole("button", { name: "Toggle navigation" }).click();
  await page.getByRole("link", { name: "Audit" }).click();
  await expect(page.getByRole("heading", { name: "Audit" })).toBeVisible();
  await shot(page, "tablet-audit");
  await checkA11y(page, "tablet-audit");
});
