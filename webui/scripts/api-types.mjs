// Generate src/api/schema.d.ts from the node's OpenAPI document (openapi-typescript), or with
// --check fail when the committed file differs from what the API now says: the UI's types can
// never drift from the API unnoticed. The document comes from `python -m
// appliance.webui.openapi_dump` (no node is started); PYTHON picks the interpreter (default:
// the checkout's .venv).
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const target = resolve(here, "../src/api/schema.d.ts");
const python = process.env.PYTHON ?? resolve(root, ".venv/bin/python");

const json = execFileSync(python, ["-m", "appliance.webui.openapi_dump"], {
  cwd: root,
  maxBuffer: 64 * 1024 * 1024,
  stdio: ["ignore", "pipe", "inherit"],
});
const ast = await openapiTS(JSON.parse(json.toString("utf8")));
const header =
  "// Generated from the node's OpenAPI document by `npm run api-types` (webui/scripts/api-types.mjs).\n" +
  "// Do not edit: change the API, then regenerate; `npm run api-types:check` fails when this is stale.\n\n";
const generated = header + astToString(ast);

if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {
    // missing: stale
  }
  if (committed !== generated) {
    console.error(
      "api-types: webui/src/api/schema.d.ts is stale: the API changed. Run `npm --prefix webui run api-types` and commit it.",
    );
    process.exit(1);
  }
  console.log("api-types: webui/src/api/schema.d.ts matches the API");
} else {
  writeFileSync(target, generated);
  console.log(`api-types: wrote ${target}`);
}
