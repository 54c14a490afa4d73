// Prints the gzip size of the JavaScript the index page loads up front (entry + its static
// imports) and of every lazily loaded route chunk; fails the build over the budget.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const BUDGET_KB = 300;
const dist = new URL("../dist/", import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(dist, ".vite/manifest.json"), "utf8"));
const gz = (file) => gzipSync(readFileSync(join(dist, file))).length / 1024;

const entryKey = Object.keys(manifest).find((key) => manifest[key].isEntry);
const initial = new Set();
const walk = (key) => {
  const chunk = manifest[key];
  if (!chunk || initial.has(chunk.file)) return;
  initial.add(chunk.file);
  (chunk.imports ?? []).forEach(walk);
};
walk(entryKey);
let total = 0;
console.log("initial JavaScript (gzip):");
for (const file of initial) {
  const size = gz(file);
  total += size;
  console.log(`  ${file.padEnd(48)} ${size.toFixed(1).padStart(7)} KB`);
}
console.log(`  ${"total".padEnd(48)} ${total.toFixed(1).padStart(7)} KB (budget ${BUDGET_KB} KB)`);
console.log("lazy route chunks (gzip):");
for (const chunk of Object.values(manifest)) {
  if (chunk.file.endsWith(".js") && !initial.has(chunk.file)) {
    console.log(`  ${chunk.file.padEnd(48)} ${gz(chunk.file).toFixed(1).padStart(7)} KB`);
  }
}
if (total > BUDGET_KB) {
  console.error(`initial JavaScript is ${total.toFixed(1)} KB gzip, over the ${BUDGET_KB} KB budget`);
  process.exit(1);
}
