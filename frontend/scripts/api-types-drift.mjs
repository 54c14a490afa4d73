// Fails when src/api/schema.d.ts is not what openapi-typescript makes of docs/api/openapi.yaml.
import { execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const fresh = join(mkdtempSync(join(tmpdir(), "warden-api-types-")), "schema.d.ts");
execFileSync("npx", ["openapi-typescript", "../docs/api/openapi.yaml", "-o", fresh], { stdio: "ignore" });
if (readFileSync(fresh, "utf8") !== readFileSync("src/api/schema.d.ts", "utf8")) {
  console.error("src/api/schema.d.ts is out of date with docs/api/openapi.yaml: run `make console-api-types`");
  process.exit(1);
}
console.log("API types match docs/api/openapi.yaml");
