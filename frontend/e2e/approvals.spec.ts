// Human approval end to end: a real agent process (the Python SDK) makes a held payment
// against the live control plane and waits; an approver approves it here, in the console;
// the payment runs exactly once; a replay of the grant is refused (on the same host by the
// ledger, on another host by the engine: consumed); the audit log holds the request, the
// decisions, the approval, the consumption and the result, all verified. The same through
// the LangChain integration and through the MCP proxy.
import { expect, test, type Page } from "@playwright/test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiAs, checkA11y, login, shot, varDir, root } from "./fixtures";

type Event = { event: string; [key: string]: unknown };

const PYTHONS = {
  guard: ".venv/bin/python",
  langchain: ".nox/integration-langchain/bin/python",
  mcp: ".nox/integration-mcp/bin/python",
} as const;
type Mode = keyof typeof PYTHONS;

function startAgent(mode: Mode) {
  const workdir = mkdtempSync(join(tmpdir(), `warden-approval-${mode}-`));
  const events: Event[] = [];
  let stderr = "";
  const child = spawn(join(root, PYTHONS[mode]), [
    join(root, "tests/approvals/agent_process.py"), "--url", process.env.WARDEN_E2E_BASE_URL ?? "",
    "--admin-token-file", join(varDir, "demo-tokens/admin.token"), "--workdir", workdir, "--mode", mode, "--replay",
  ], { env: { ...process.env, PYTHONPATH: root }, stdio: ["ignore", "pipe", "pipe"] });
  let buffer = "";
  child.stdout.on("data", (chunk) => {
    buffer += chunk.toString();
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line));
  });
  child.stderr.on("data", (chunk) => (stderr += chunk.toString()));
  const exited = new Promise<number>((done) => child.on("exit", (code) => done(code ?? -1)));
  return { workdir, events, exited, stderr: () => stderr, kill: () => child.kill("SIGKILL") };
}

async function approveInConsole(page: Page, agent: string, comment: string) {
  await page.goto("/approvals");
  const card = page.getByTestId("approval-request").filter({ hasText: `agent ${agent}` });
  await expect(card).toBeVisible({ timeout: 30_000 });
  await expect(card.getByTestId("masked-args")).toContainText("DE89370400440532013000");
  await expect(card).toContainText("payment-requires-approval");
  await expect(card).toContainText(/waiting \d+ s/);
  await card.getByRole("textbox", { name: "Comment" }).fill(comment);
  await card.getByRole("button", { name: "Approve" }).click();
}

for (const mode of ["guard", "langchain", "mcp"] as const) {
  test(`a held payment waits, is approved in the console and runs once (${mode})`, async ({ page, request }) => {
    test.setTimeout(180_000);
    test.skip(!existsSync(join(root, PYTHONS[mode])), `${PYTHONS[mode]} is not installed (nox -s integration-${mode})`);
    const agent = startAgent(mode);
    try {
      await expect.poll(() => agent.events.find((e) => e.event === "calling"), { timeout: 60_000 }).toBeTruthy();
      const ready = agent.events.find((e) => e.event === "ready") as Event;
      const name = String(ready.agent);
      await login(page, "approver");
      await approveInConsole(page, name, `checked invoice (${mode})`);
      if (mode === "guard") {
        await checkA11y(page, "approvals-queue");
        await shot(page, "approvals-approved");
      }
      expect(await agent.exited, agent.stderr()).toBe(0);

      const ran = agent.events.filter((e) => e.event === "ran");
      expect(ran).toHaveLength(1);
      expect(readFileSync(join(agent.workdir, "payments.log"), "utf8").trim().split("\n")).toHaveLength(1);
      const replays = agent.events.filter((e) => e.event === "replay");
      expect(replays.map((e) => [e.where, e.outcome])).toEqual([["same-host", "refused"], ["other-host", "refused"]]);
      for (const replay of replays) expect(String(replay.error)).toMatch(/approval-grant-rejected: .*consumed/);

      // The audit log: request, decisions, approval, consumption and result, all verified.
      const sessionId = String(ready.session_id);
      let kinds: string[] = [];
      await expect.poll(async () => {
        const page = await apiAs(request, "auditor", `/api/v1/audit/events/?session=${sessionId}&limit=200&ordering=seq`);
        kinds = page.results.map((e: { kind: string; effect: string; payload: { event?: string } }) =>
          e.kind === "approval" ? `approval:${e.payload.event}` : e.kind === "decision" ? `decision:${e.effect}` : e.kind);
        const replays = kinds.slice(kinds.indexOf("result") + 1);
        return kinds.includes("result") && replays.filter((k) => k === "decision:deny").length >= 2;
      }, { timeout: 30_000 }).toBe(true);
      const held = kinds.indexOf("decision:require_approval");
      expect(kinds.slice(held - 1, held + 7)).toEqual([
        "intent", "decision:require_approval", "approval:requested", "approval:approved",
        "intent", "decision:allow", "approval:consumed", "result",
      ]);
      // Both replays are refused and recorded, and nothing runs again. The same-host one is
      // refused by the ledger (the engine still allowed it) or, when the bundle that marks the
      // grant consumed has already arrived, by the engine itself: both are correct.
      const replayed = kinds.slice(held + 7).join(",").split("intent,").filter(Boolean).map((s) => s.replace(/,$/, ""));
      expect(replayed).toHaveLength(2);
      for (const replay of replayed) expect(["decision:allow,approval:refused,decision:deny", "decision:deny"]).toContain(replay);
      const quarantined = await apiAs(request, "auditor", `/api/v1/audit/quarantine/?agent=${name}`);
      expect(quarantined.count).toBe(0);
      const decided = await apiAs(request, "auditor", `/api/v1/approvals/?state=approved&limit=50`);
      const mine = decided.results.find((r: { agent: string }) => r.agent === name);
      expect(mine.votes[0].user).toBe("demo-approver");
      expect(mine.votes[0].comment).toBe(`checked invoice (${mode})`);
    } finally {
      agent.kill();
    }
  });
}
