// Shared pieces of the end-to-end scripts: Debian's Chromium under playwright-core (browsers
// cannot be downloaded here), axe-core on each page, screenshots as artefacts, and a client
// for the node's API that verifies its certificate (NODE_EXTRA_CA_CERTS names the cluster CA).
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export const env = {
  url: need("DEBVISOR_URL"),
  artefacts: process.env.DEBVISOR_ARTEFACTS ?? "build/webui-e2e",
  chromium: process.env.CHROMIUM ?? "/usr/bin/chromium",
};

export function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`e2e: set ${name}`);
    process.exit(2);
  }
  return value;
}

export async function launch() {
  mkdirSync(env.artefacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  // The node's certificate is signed by the test cluster's own CA, which Chromium does not know.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const cspViolations = [];
  const pageErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  return { browser, context, page, cspViolations, pageErrors };
}

/** Run axe-core on the page; fail on serious or critical violations, return the count of others. */
export async function axe(page, name) {
  // Colours and borders change with transitions (a field turning invalid, the theme): let
  // them finish, or axe measures contrast half-way through one.
  await page.waitForFunction(() => document.getAnimations().every((a) => a.playState !== "running"));
  // Evaluated through the DevTools protocol, not as an inline <script>: the page's CSP stays on.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary}`) }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) {
    throw new Error(`axe: ${name} has serious/critical violations: ${JSON.stringify(bad)}`);
  }
  return result;
}

export async function shot(page, name) {
  const path = join(env.artefacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A password session of the API from outside the browser (Node's fetch, CA-verified). */
export async function apiSession(user, password) {
  const login = await fetch(`${env.url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: user, password }),
  });
  if (!login.ok) throw new Error(`login as ${user}: HTTP ${login.status}`);
  const { csrf_token: csrf } = await login.json();
  const cookie = login.headers.get("set-cookie").split(";")[0];
  return async (method, path, body) => {
    const answer = await fetch(`${env.url}/api/v1${path}`, {
      method,
      headers: { Cookie: cookie, "X-CSRF-Token": csrf, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!answer.ok) throw new Error(`${method} ${path}: HTTP ${answer.status} ${await answer.text()}`);
    return answer.status === 204 ? undefined : answer.json();
  };
}
