import { expect, test, type Page } from "@playwright/test";
import { checkA11y, login, shot } from "./fixtures";

type Fill = { text?: Record<string, string>; select?: Record<string, string>; scoped?: [string, string, string][] };

// Per template: the answers a risk owner gives and the sentence the console must show back.
const FORMS: { key: string; name: string; fill: Fill; sentence: string; kind: string }[] = [
  { key: "block_tool", name: "e2e_block", kind: "deny contains",
    fill: { text: { Tools: "file_delete" }, select: { Effect: "deny" }, scoped: [["fieldset-when", "Path prefixes", "/prod/"]] },
    sentence: "Calls to file_delete on paths under /prod/ are blocked." },
  { key: "require_approval", name: "e2e_payments", kind: "approval_required contains",
    fill: { text: { Tools: "pay_invoice", "Approvers needed": "2" }, scoped: [["fieldset-when.amount_over", "Limit", "10000"], ["fieldset-when.amount_over", "Currency", "EUR"], ["fieldset-when", "Agent teams", "finance"]] },
    sentence: "Calls to pay_invoice over 10,000 EUR by agents of team finance wait for two approvers." },
  { key: "rate_limit", name: "e2e_rate", kind: "deny contains",
    fill: { text: { Limit: "30", Tools: "web_search" }, select: { "Count per": "agent", Window: "minute" } },
    sentence: "Calls to web_search beyond 30 per minute for each agent are blocked." },
  { key: "restrict_egress", name: "e2e_egress", kind: "deny contains",
    fill: { text: { Tools: "http_request", "Allowed hosts": "api.crm.example.com" } },
    sentence: "Calls to http_request may reach only api.crm.example.com; any other host is blocked." },
  { key: "mask_fields", name: "e2e_mask", kind: "mask contains",
    fill: { text: { "Fields to mask": "iban" } },
    sentence: "The iban argument of every tool is masked in the audit log." },
  { key: "sequence_deny", name: "e2e_sequence", kind: "deny contains",
    fill: { text: { Tools: "email_send", "After reading data labelled": "sensitive" }, select: { Effect: "deny" } },
    sentence: "Calls to email_send after reading data labelled sensitive in the same session are blocked." },
  { key: "quiet_hours", name: "e2e_quiet", kind: "approval_required contains",
    fill: { select: { Effect: "hold" }, scoped: [["fieldset-window", "From hour", "22"], ["fieldset-window", "To hour", "6"]], text: { Tools: "deploy" } },
    sentence: "Calls to deploy between 22:00 and 06:00 UTC wait for one approver." },
];

const PAYMENTS: Fill = { text: { Tools: "pay_invoice", "Approvers needed": "2" }, scoped: [["fieldset-when.amount_over", "Limit", "10000"], ["fieldset-when.amount_over", "Currency", "EUR"], ["fieldset-when", "Agent teams", "finance"]] };

// A field by its label, whether or not Mantine marks it required (" *").
const named = (label: string) => new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}( \\*)?$`);

async function answer(page: Page, name: string, fill: Fill) {
  const form = page.locator("main");
  await form.getByLabel(named("Rule name")).fill(name);
  await form.getByLabel(named("Owner")).fill("risk@example.com");
  for (const [label, value] of Object.entries(fill.select ?? {})) await form.getByLabel(named(label)).selectOption(value);
  for (const [label, value] of Object.entries(fill.text ?? {})) await form.getByLabel(named(label)).first().fill(value);
  for (const [scope, label, value] of fill.scoped ?? []) await page.getByTestId(scope).getByLabel(named(label)).fill(value);
}

for (const form of FORMS) {
  test(`the ${form.key} form shows the plain sentence and generates Rego`, async ({ page }) => {
    await login(page, "policy-author");
    await page.goto("/authoring");
    await page.getByRole("link", { name: new RegExp(`^New rule: `) }).first().waitFor();
    await page.goto(`/authoring/new/${form.key}`);
    await answer(page, form.name, form.fill);
    await expect(page.getByTestId("sentence")).toHaveText(form.sentence);
    await expect(page.getByTestId("generated-rego")).toContainText(`package warden.org.${form.name}`);
    await expect(page.getByTestId("generated-rego")).toContainText(form.kind);
    await expect(page.getByTestId("generated-rego")).toContainText("owner: risk@example.com");
    await shot(page, `authoring-${form.key}`);
  });
}

test("a bad answer is explained, an example becomes a passing test, the rule is saved log-only, previewed and enforced", async ({ page }) => {
  test.setTimeout(240_000);
  await login(page, "policy-author");
  await page.goto("/authoring/new/require_approval");
  await answer(page, "e2e_payments", PAYMENTS);
  await page.getByLabel(named("Owner")).fill("risk team");  // a space: refused by the schema
  await expect(page.getByTestId("draft-problem")).toContainText("params.owner");
  await page.getByLabel(named("Owner")).fill("risk@example.com");
  await page.getByLabel("Log only (evaluate, do not enforce)").check();
  await page.getByRole("button", { name: "Add example" }).click();
  await page.getByLabel("Example 1", { exact: true }).fill("12,000 EUR by finance waits");
  await page.getByLabel("Example 1 outcome").selectOption("hold");
  await page.getByLabel("Example 1 agent team").fill("finance");
  await expect(page.getByTestId("test-results")).toContainText("test_example_1_is_held: passes");
  await page.getByLabel("Example 1 outcome").selectOption("pass");
  await expect(page.getByTestId("test-results")).toContainText("test_example_1_passes: fails");
  await page.getByLabel("Example 1 outcome").selectOption("hold");
  await expect(page.getByTestId("generated-tests")).toContainText("package warden.org_test.e2e_payments");
  await expect(page.getByTestId("generated-rego")).toContainText("log_only := true");
  await checkA11y(page, "authoring-form");
  await page.getByRole("button", { name: "Save rule" }).click();

  await expect(page).toHaveURL(/\/authoring$/, { timeout: 90_000 });  // saving compiles in the policy worker
  const row = page.getByTestId("authored-rules").getByRole("row", { name: /e2e_payments/ });
  await expect(row).toContainText("log only");
  await expect(row).toContainText("wait for two approvers");

  await page.getByRole("button", { name: "Publish with impact preview" }).click();
  await page.getByRole("dialog").getByLabel("Environment").selectOption("dev");
  await page.getByRole("button", { name: "Preview impact" }).click();
  await expect(page.getByTestId("impact-preview")).toContainText(/Replayed [\d,]+ decisions/);
  await shot(page, "authoring-impact-preview");
  await page.getByRole("dialog").getByRole("button", { name: "Publish", exact: true }).click();
  // Publishing compiles and runs the policy tests in the worker (5-7 s idle, more on a busy machine).
  await expect(page.getByTestId("publish-result")).toContainText(/dev now runs revision|waits for an approver/, { timeout: 60_000 });
  await page.keyboard.press("Escape");

  await page.getByRole("button", { name: "Enforce e2e_payments" }).click();
  await expect(row).toContainText("enforced");
});
