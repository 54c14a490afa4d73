// The console's end-to-end run: a live control plane on a free port with a fresh var dir
// (embedded SQLite, eager tasks), migrated and seeded with the demo data, then Playwright
// in Debian's Chromium against it; the server is stopped whatever happens.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(new URL("..", import.meta.url).pathname, "..");
const python = process.env.WARDEN_PYTHON ?? join(root, ".venv/bin/python");
const varDir = process.env.WARDEN_E2E_VAR_DIR ?? mkdtempSync(join(tmpdir(), "warden-e2e-"));
const env = { ...process.env, WARDEN_VAR_DIR: varDir, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: "1" };
delete env.DATABASE_URL; // the embedded default: SQLite under the fresh var dir
delete env.REDIS_URL; // tasks run eagerly in the server process

const freePort = () =>
  new Promise((done, fail) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
    server.on("error", fail);
  });

function manage(...args) {
  const result = spawnSync(python, ["manage.py", ...args], { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
  if (result.status !== 0) throw new Error(`manage.py ${args.join(" ")} failed (${result.status})`);
}

async function waitFor(url, seconds) {
  for (let i = 0; i < seconds * 4; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer within ${seconds} s`);
}

// The demo seed gives demo-admin a password; the other role users get one here, through the
// users API with the admin's demo token, so each role can log in to the console.
async function demoPasswords(base) {
  const token = readFileSync(join(varDir, "demo-tokens/admin.token"), "utf8").trim();
  const passwords = { "demo-admin": readFileSync(join(varDir, "demo-admin.password"), "utf8").trim() };
  for (const username of ["demo-policy-author", "demo-approver", "demo-auditor"]) {
    const password = randomBytes(12).toString("hex");
    const response = await fetch(`${base}/api/v1/users/${username}/`, {
      method: "PATCH",
      headers: { Authorization: `Token ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ password }),
    });
    if (!response.ok) throw new Error(`setting ${username}'s password: ${response.status} ${await response.text()}`);
    passwords[username] = password;
  }
  const file = join(varDir, "e2e-passwords.json");
  writeFileSync(file, JSON.stringify(passwords), { mode: 0o600 });
  return file;
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
console.log(`e2e: var dir ${varDir}, server ${base}`);
manage("migrate", "--noinput", "-v", "0");
manage("seed_demo");
manage("collectstatic", "--noinput", "-v", "0");
const server = spawn(
  join(root, ".venv/bin/uvicorn"),
  ["controlplane.asgi:application", "--host", "127.0.0.1", "--port", String(port), "--lifespan", "off", "--log-level", "warning"],
  { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] },
);
let code = 1;
try {
  await waitFor(`${base}/healthz`, 60);
  const passwordFile = await demoPasswords(base);
  const run = spawnSync("npx", ["playwright", "test", ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...env, WARDEN_E2E_BASE_URL: base, WARDEN_E2E_VAR_DIR: varDir, WARDEN_E2E_PASSWORDS: passwordFile, WARDEN_E2E_ROOT: root },
  });
  code = run.status ?? 1;
} finally {
  server.kill("SIGTERM");
}
process.exit(code);
