// Write a .gz and a .br beside every compressible file of the build (best levels: this runs
// once per build), so that the node sends precompressed files as they are and never
// compresses at request time (appliance/webui/assets.py). Prints the initial JS+CSS size
// (what index.html loads before anything else) gzip-compressed, the figure the UI's budget is
// about (docs/webui.md).
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const root = process.argv[2];
if (!root) {
  console.error("usage: compress.mjs DIST");
  process.exit(2);
}
const compressible = /\.(js|mjs|css|html|svg|json|map|txt)$/;

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

for (const path of [...walk(root)]) {
  if (!compressible.test(path)) continue;
  const data = readFileSync(path);
  if (data.length < 256) continue;
  writeFileSync(`${path}.gz`, gzipSync(data, { level: 9 }));
  writeFileSync(
    `${path}.br`,
    brotliCompressSync(data, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length },
    }),
  );
}

// Initial load: the files index.html names (entry script, modulepreloads, stylesheets).
const index = readFileSync(join(root, "index.html"), "utf8");
const initial = [...index.matchAll(/(?:src|href)="\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
let total = 0;
for (const name of initial) total += gzipSync(readFileSync(join(root, name)), { level: 9 }).length;
let all = 0;
for (const path of walk(root)) {
  if (/\.(js|css)$/.test(path)) all += gzipSync(readFileSync(path), { level: 9 }).length;
}
console.log(
  `webui: initial JS+CSS ${(total / 1024).toFixed(1)} KiB gzip (${initial.length} files); ` +
    `all JS+CSS ${(all / 1024).toFixed(1)} KiB gzip; in ${relative(process.cwd(), root) || "."}`,
);
