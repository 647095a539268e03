// End to end against a real node (tests/integration/test_webui.py starts it): the first login
// with the forced password change lands on the dashboard; a change made elsewhere appears on
// it live; an ended session returns to the login page and, once logged in again, to the page
// the user was on. axe-core runs on every page, each page is saved as a screenshot, and no
// Content-Security-Policy violation may occur. Prints one JSON line of figures.
import { apiSession, axe, env, launch, need, shot } from "./lib.mjs";

const initial = need("DEBVISOR_INITIAL_PASSWORD");
const newPassword = need("DEBVISOR_NEW_PASSWORD");
const OPS_PASSWORD = "a password for ops";
const TIMEOUT = 15000;

const { browser, context, page, cspViolations, pageErrors } = await launch();
page.setDefaultTimeout(TIMEOUT);
const figures = { screenshots: [], axe: {} };
try {
  // 1. The login page.
  const started = Date.now();
  await page.goto(`${env.url}/`);
  await page.getByRole("heading", { name: "Log in to DebVisor" }).waitFor();
  figures.login_page_ms = Date.now() - started;
  figures.axe.login = (await axe(page, "login")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "01-login"));

  // 2. The initial password: the node insists on a new one first.
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(initial);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Change your password" }).waitFor();
  await page.locator("#new-password").fill("short");
  await page.getByText("At least 12 characters (5 so far)").waitFor();
  figures.axe.change_password = (await axe(page, "change password")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "02-change-password"));
  await page.locator("#new-password").fill(newPassword);
  await page.locator("#new-password-again").fill(newPassword);
  await page.getByRole("button", { name: "Change password and continue" }).click();

  // 3. The dashboard: the member, alive; the live label once the events socket is open.
  await page.getByRole("heading", { name: "Cluster", level: 1 }).waitFor();
  const members = page.locator('table[aria-label="Cluster members"]');
  await members.getByText("alive").first().waitFor();
  await page.getByText("Live", { exact: true }).waitFor();
  await page.locator('table[aria-label="Recent audit events"]').waitFor();
  figures.axe.dashboard = (await axe(page, "dashboard")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "03-dashboard"));
  // Load times of the dashboard on loopback: warm (a reload, cached assets) and cold (a new
  // browser profile with the same session cookie), to the members table showing; bytes as sent.
  let t = Date.now();
  await page.reload();
  await members.getByText("alive").first().waitFor();
  figures.dashboard_warm_ms = Date.now() - t;
  const cold = await browser.newContext({ ignoreHTTPSErrors: true, storageState: await context.storageState() });
  const coldPage = await cold.newPage();
  const sizes = [];
  coldPage.on("requestfinished", (r) => sizes.push(r.sizes().then((s) => s.responseBodySize + s.responseHeadersSize)));
  t = Date.now();
  await coldPage.goto(`${env.url}/`);
  await coldPage.locator('table[aria-label="Cluster members"]').getByText("alive").first().waitFor();
  figures.dashboard_cold_ms = Date.now() - t;
  figures.dashboard_cold_bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
  await cold.close();
  await page.getByText("Live", { exact: true }).waitFor();

  await page.emulateMedia({ colorScheme: "dark" }); // the theme follows the system's
  await page.waitForFunction(() => document.documentElement.classList.contains("pf-v6-theme-dark"));
  figures.axe.dashboard_dark = (await axe(page, "dashboard (dark)")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "04-dashboard-dark"));
  await page.emulateMedia({ colorScheme: "light" });

  // 4. Live: a change made through the API elsewhere shows up without a reload.
  const call = await apiSession("admin", newPassword);
  const recent = page.locator('table[aria-label="Recent audit events"]');
  const before = await recent.getByText("put /api/v1/node").count();
  const changed = Date.now();
  await call("PUT", "/node", { description: "set by the e2e test", labels: { e2e: "yes" } });
  await page.waitForFunction(
    (n) => [...document.querySelectorAll("td")].filter((td) => td.textContent === "put /api/v1/node").length > n,
    before,
    { timeout: TIMEOUT, polling: "raf" },
  );
  figures.event_to_screen_ms = Date.now() - changed;

  // 4b. The other pages, through the navigation.
  const nav = page.getByRole("navigation", { name: "Cluster" });
  await nav.getByRole("link", { name: "Nodes" }).click();
  await page.locator('table[aria-label="Nodes"]').getByRole("link", { name: "n1" }).waitFor();
  figures.axe.nodes = (await axe(page, "nodes")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "05-nodes"));
  await page.locator('table[aria-label="Nodes"]').getByRole("link", { name: "n1" }).click();
  await page.getByRole("heading", { name: "Node n1", level: 1 }).waitFor();
  await page.getByText("e2e=yes").waitFor();
  figures.axe.node = (await axe(page, "node")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "06-node"));

  await nav.getByRole("link", { name: "Users" }).click();
  await page.locator('table[aria-label="Users"] td[data-label="Name"]').getByText("admin", { exact: true }).waitFor();
  await page.getByLabel("Name").fill("Bad Name");
  await page.getByText(/^Lower-case letters/).waitFor(); // checked as it is typed
  await page.getByLabel("Name").fill("ops");
  await page.getByLabel("Initial password").fill(OPS_PASSWORD);
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByText("User ops created").waitFor();
  await page.locator('table[aria-label="Users"] td[data-label="Name"]').getByText("ops", { exact: true }).waitFor();
  figures.axe.users = (await axe(page, "users")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "07-users"));

  // API tokens: the secret is shown once, works, and stops working once revoked.
  await nav.getByRole("link", { name: "API tokens" }).click();
  await page.getByRole("heading", { name: "API tokens", level: 1 }).waitFor();
  await page.getByLabel("Name").fill("e2e token");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.getByText("Token e2e token created").waitFor();
  const secret = await page.locator(".pf-v6-c-clipboard-copy input").inputValue();
  const asToken = (s) => fetch(`${env.url}/api/v1/node`, { headers: { Authorization: `Bearer ${s}` } });
  if ((await asToken(secret)).status !== 200) throw new Error("the new token does not work");
  await page.locator('table[aria-label="API tokens"] td[data-label="Name"]').getByText("e2e token").waitFor();
  figures.axe.tokens = (await axe(page, "tokens")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "08a-tokens"));
  await page.getByRole("button", { name: "Revoke e2e token" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Token name").fill("e2e toke");
  if (await dialog.getByRole("button", { name: "Revoke" }).isEnabled()) throw new Error("revoked without the typed name");
  await dialog.getByLabel("Token name").fill("e2e token");
  figures.axe.revoke_dialog = (await axe(page, "revoke dialog")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "08b-revoke-token"));
  await dialog.getByRole("button", { name: "Revoke" }).click();
  await page.getByText("No tokens yet.").waitFor();
  if ((await asToken(secret)).status !== 401) throw new Error("the revoked token still works");

  await nav.getByRole("link", { name: "Audit log" }).click();
  await page.locator('table[aria-label="Audit entries"]').waitFor();
  await page.getByLabel(/^Action/).fill("user.");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/action=user\./);
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll('table[aria-label="Audit entries"] td[data-label="Action"]')];
    return cells.length > 0 && cells.every((td) => td.textContent?.startsWith("user."));
  });
  const csv = await page.getByRole("link", { name: "Export CSV" }).getAttribute("href");
  if (!csv?.includes("action=user.") || !csv.includes("format=csv")) throw new Error(`export link ${csv}`);
  const exported = await page.request.get(`${env.url}${csv}`); // with the browser's session cookie
  const rows = (await exported.text()).trim().split("\n");
  if (!exported.ok() || !rows[0]?.startsWith("seq,") || !rows.slice(1).every((r) => r.includes(",user."))) {
    throw new Error(`the CSV export: HTTP ${exported.status()}: ${rows.slice(0, 3).join(" | ")}`);
  }
  figures.audit_export_rows = rows.length - 1;
  figures.axe.audit = (await axe(page, "audit")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "08-audit"));

  // 5. The session ends (revoked from elsewhere) while the user is on a page: back to the
  // login page, then to that same page.
  await page.goto(`${env.url}/no/such/page`);
  await page.getByRole("heading", { name: "No such page" }).waitFor();
  figures.axe.not_found = (await axe(page, "not found")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  await page.goto(`${env.url}/nodes/n1`); // a reload: the session survives it
  await page.getByRole("heading", { name: "Node n1", level: 1 }).waitFor();
  const sessions = await call("GET", "/auth/sessions");
  for (const session of sessions.filter((s) => !s.current)) await call("DELETE", `/auth/sessions/${session.id}`);
  await call("PUT", "/node", { description: "again", labels: { e2e: "again" } }); // its event makes the page ask again
  await page.getByText("Your session ended. Log in to continue.").waitFor();
  figures.screenshots.push(await shot(page, "10-session-ended"));
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(newPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Node n1", level: 1 }).waitFor();
  await page.getByText("e2e=again").waitFor();
  if (new URL(page.url()).pathname !== "/nodes/n1") throw new Error(`back at ${page.url()}, not where we were`);

  // 6. Log out from the user menu.
  await page.getByRole("button", { name: "admin (admin)" }).click();
  await page.getByRole("menuitem", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in to DebVisor" }).waitFor();

  // 7. The new user logs in and, as a viewer, sees neither the users nor the audit log.
  await page.getByLabel("User name").fill("ops");
  await page.getByLabel("Password").fill(OPS_PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Cluster", level: 1 }).waitFor();
  await page.getByRole("button", { name: "ops (viewer)" }).waitFor();
  const links = await nav.getByRole("link").allTextContents();
  if (links.includes("Users") || links.includes("Audit log")) throw new Error(`a viewer sees ${links}`);
  if (await page.locator('table[aria-label="Recent audit events"]').count()) throw new Error("a viewer sees the audit log");
  figures.axe.viewer_dashboard = (await axe(page, "viewer dashboard")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, "09-viewer-dashboard"));

  if (cspViolations.length) throw new Error(`CSP violations: ${cspViolations.join("; ")}`);
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join("; ")}`);
  console.log(JSON.stringify({ ok: true, ...figures }));
} catch (error) {
  await shot(page, "failure").catch(() => undefined);
  console.error(String(error?.stack ?? error));
  console.log(JSON.stringify({ ok: false, error: String(error), ...figures, cspViolations, pageErrors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
