// End to end against a real node (tests/integration/test_webui.py starts it): the first login
// with the forced password change lands on the dashboard; a change made elsewhere appears on
// it live; an ended session returns to the login page and, once logged in again, to the page
// the user was on. axe-core runs on every page, each page is saved as a screenshot, and no
// Content-Security-Policy violation may occur. Prints one JSON line of figures.
import { apiSession, axe, env, launch, need, shot } from "./lib.mjs";

const initial = need("DEBVISOR_INITIAL_PASSWORD");
const newPassword = need("DEBVISOR_NEW_PASSWORD");
const TIMEOUT = 15000;

const { browser, page, cspViolations, pageErrors } = await launch();
page.setDefaultTimeout(TIMEOUT);
const figures = { screenshots: [], axe: {} };
try {
  // 1. The login page.
  const started = Date.now();
  await page.goto(`${env.url}/`);
  await page.getByRole("heading", { name: "Log in to DebVisor" }).waitFor();
  figures.login_page_ms = Date.now() - started;
  figures.axe.login = (await axe(page, "login")).map((v) => `${v.id}:${v.impact}`);
  figures.screenshots.push(await shot(page, "01-login"));

  // 2. The initial password: the node insists on a new one first.
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(initial);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Change your password" }).waitFor();
  await page.locator("#new-password").fill("short");
  await page.getByText("At least 12 characters (5 so far)").waitFor();
  figures.axe.change_password = (await axe(page, "change password")).map((v) => `${v.id}:${v.impact}`);
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
  figures.axe.dashboard = (await axe(page, "dashboard")).map((v) => `${v.id}:${v.impact}`);
  figures.screenshots.push(await shot(page, "03-dashboard"));

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

  // 5. The session ends (revoked from elsewhere) while the user is on a page: back to the
  // login page, then to that same page.
  await page.goto(`${env.url}/no/such/page`);
  await page.getByRole("heading", { name: "No such page" }).waitFor();
  figures.axe.not_found = (await axe(page, "not found")).map((v) => `${v.id}:${v.impact}`);
  const sessions = await call("GET", "/auth/sessions");
  for (const session of sessions.filter((s) => !s.current)) await call("DELETE", `/auth/sessions/${session.id}`);
  await call("PUT", "/node", { description: "again", labels: { e2e: "again" } }); // its event makes the page ask
  await page.getByText("Your session ended. Log in to continue.").waitFor();
  figures.screenshots.push(await shot(page, "04-session-ended"));
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(newPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "No such page" }).waitFor();
  if (new URL(page.url()).pathname !== "/no/such/page") throw new Error(`back at ${page.url()}, not where we were`);

  // 6. Log out from the user menu.
  await page.getByRole("button", { name: "admin (admin)" }).click();
  await page.getByRole("menuitem", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in to DebVisor" }).waitFor();

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
