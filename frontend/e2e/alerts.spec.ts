import { expect, test } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { apiAs, checkA11y, login, root, shot } from "./fixtures";

// The detector's own service raises the alerts (as the beat task does after a scan), in the
// live server's database; the console then triages them through the real API.
function raiseAlerts(): Record<string, number> {
  const code = `
import json
from datetime import datetime, timezone
from django.db import transaction
from controlplane.detection.engine.profile import Finding
from controlplane.detection.services.alerts import raise_finding
from controlplane.identity.models import Agent
agent = Agent.objects.get(name="code-assistant")
now = datetime.now(timezone.utc)
with transaction.atomic():
    crit = raise_finding(agent, Finding(detector="new_destination", severity="critical", subject="exfil.example.net",
        summary="code-assistant sent 40 requests to exfil.example.net, a host never seen in 1,200 calls over 14 days.",
        baseline={"hosts_seen": 3, "calls": 1200}, observed={"host": "exfil.example.net", "requests": 40}, time=now,
        sessions=["demo-session-1"]))
    low = raise_finding(agent, Finding(detector="new_tool", severity="medium", subject="git_push",
        summary="code-assistant called git_push for the first time after 1,200 calls of 4 other tools.",
        baseline={"tools": 4}, observed={"tool": "git_push", "calls": 1}, time=now))
print(json.dumps({"critical": crit.pk, "medium": low.pk}))
`;
  const run = spawnSync(join(root, ".venv/bin/python"), ["manage.py", "shell", "-c", code], { cwd: root, encoding: "utf8" });
  expect(run.status, run.stdout + run.stderr).toBe(0);
  return JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}");
}

test("alerts: the inbox lists open alerts by severity with their sentence; an approver acknowledges, resolves and marks a false positive with a comment", async ({ page, request }) => {
  const ids = raiseAlerts();
  await login(page, "approver");
  // The header's live counter sees both alerts, one critical.
  await expect(page.getByTestId("alert-count")).toHaveText("2");
  await expect(page.getByTestId("alert-count")).toHaveAttribute("aria-label", "2 alerts to handle, 1 critical");
  await page.getByTestId("alert-count").click();
  await expect(page).toHaveURL(/\/alerts$/);
  const cards = page.getByTestId("detection-alert");
  await expect(cards).toHaveCount(2);
  // Most severe first, each with its severity and its one-sentence explanation.
  await expect(cards.nth(0).getByTestId("alert-severity")).toHaveText("critical");
  await expect(cards.nth(0).getByTestId("alert-summary")).toHaveText(/40 requests to exfil\.example\.net/);
  await expect(cards.nth(1).getByTestId("alert-severity")).toHaveText("medium");
  await expect(cards.nth(0).getByRole("link", { name: "demo-session-1" })).toBeVisible();
  await checkA11y(page, "alerts-inbox");
  await shot(page, "alerts-inbox");

  const critical = page.getByLabel(`Alert ${ids.critical}`, { exact: true });
  await critical.getByLabel("Comment").fill("Looking at the egress logs — ünïcode ok");
  await critical.getByRole("button", { name: "Acknowledge" }).click();
  await expect(critical.getByRole("status")).toHaveText("Alert acknowledged.");
  let body = await apiAs(request, "approver", `/api/v1/detection/alerts/${ids.critical}/`);
  expect(body.state).toBe("acknowledged");
  expect(body.acknowledged_by).toBe("demo-approver");
  expect(body.note).toBe("Looking at the egress logs — ünïcode ok");
  // Acknowledged: only resolve and false positive remain.
  await expect(critical.getByRole("button", { name: "Acknowledge" })).toHaveCount(0);

  const medium = page.getByLabel(`Alert ${ids.medium}`, { exact: true });
  await medium.getByLabel("Comment").fill("Release engineering pushes tags now.");
  await medium.getByRole("button", { name: "Mark false positive" }).click();
  await expect(page.getByLabel(`Alert ${ids.medium}`, { exact: true })).toHaveCount(0);
  body = await apiAs(request, "approver", `/api/v1/detection/alerts/${ids.medium}/`);
  expect(body.state).toBe("false_positive");
  expect(body.closed_by).toBe("demo-approver");
  expect(body.note).toBe("Release engineering pushes tags now.");

  await critical.getByLabel("Comment").fill("Host blocked; key rotated.");
  await critical.getByRole("button", { name: "Resolve" }).click();
  await expect(page.getByTestId("empty-state")).toContainText("No alert to handle");
  await expect(page.getByTestId("alert-count")).toHaveCount(0);
  await page.locator("label").filter({ hasText: /^resolved$/ }).click();
  await expect(page.getByLabel(`Alert ${ids.critical}`, { exact: true })).toContainText("Comment: Host blocked; key rotated.");
  const resolved = page.getByLabel(`Alert ${ids.critical}`, { exact: true });
  await expect(resolved.getByRole("button", { name: /^(Acknowledge|Resolve|Mark false positive)$/ })).toHaveCount(0);
  // A closed alert can still open an incident (its clocks run from the alert's awareness time).
  await resolved.getByRole("button", { name: "Open incident" }).click();
  await expect(resolved.getByTestId("incident-opened")).toBeVisible();
  await page.locator("label").filter({ hasText: /^false positive$/ }).click();
  await expect(page.getByLabel(`Alert ${ids.medium}`, { exact: true })).toBeVisible();
});

test("alerts: an auditor sees the inbox but the triage buttons are disabled with the reason", async ({ page }) => {
  const ids = raiseAlerts();
  await login(page, "auditor");
  await page.goto("/alerts");
  const card = page.getByLabel(`Alert ${ids.critical}`, { exact: true });
  await expect(card.getByRole("button", { name: "Acknowledge" })).toBeDisabled();
  await expect(card.getByTestId("role-reason").first()).toContainText("Needs the admin or approver role");
  await checkA11y(page, "alerts-auditor");
});
