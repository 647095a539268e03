// End to end of a node's page against a real node (tests/integration/test_webui_node.py starts
// it): the resource charts drawn from one history request and then moved on by `history`
// events alone, the range switcher, the power dialog's typed confirmation (never sent: this
// is the test machine), and the units tab — with DEBVISOR_UNIT set (a node managing a systemd
// container), a unit stopped and started through the API shows its new state live on the
// open page and the page's own Restart works; without it (no system bus), the tab says so.
// axe-core on every view, screenshots, no CSP violation. Prints one JSON line of figures.
import { apiSession, axe, env, launch, need, shot } from "./lib.mjs";

const initial = need("DEBVISOR_INITIAL_PASSWORD");
const password = "a new admin password for the node page";
const unit = process.env.DEBVISOR_UNIT ?? "";
const node = process.env.DEBVISOR_NODE ?? "n1";
const TIMEOUT = 20000;

async function firstPassword() {
  const login = await fetch(`${env.url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: "admin", password: initial }),
  });
  if (!login.ok) throw new Error(`first login: HTTP ${login.status}`);
  const { csrf_token: csrf } = await login.json();
  const cookie = login.headers.get("set-cookie").split(";")[0];
  const changed = await fetch(`${env.url}/api/v1/users/admin/password`, {
    method: "POST",
    headers: { Cookie: cookie, "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: JSON.stringify({ current_password: initial, new_password: password }),
  });
  if (!changed.ok) throw new Error(`password change: HTTP ${changed.status} ${await changed.text()}`);
}

const violations = (list) => list.map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);

await firstPassword();
const { browser, page, cspViolations, pageErrors } = await launch();
page.setDefaultTimeout(TIMEOUT);
const figures = { screenshots: [], axe: {} };
const historyRequests = [];
page.on("request", (r) => {
  if (r.url().includes(`/api/v1/nodes/${node}/history`)) historyRequests.push(new URL(r.url()).search);
});
try {
  await page.goto(`${env.url}/nodes/${node}`);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: `Node ${node}`, level: 1 }).waitFor();
  await page.getByText("Live", { exact: true }).waitFor();

  // 1. The charts: four canvases from one request, then each new 5 s bucket from the events.
  const cpu = page.getByTestId("history-cpu");
  await cpu.locator("canvas").waitFor();
  for (const id of ["memory", "net", "disk"]) await page.getByTestId(`history-${id}`).locator("canvas").waitFor();
  const first = Number(await cpu.getAttribute("data-last"));
  const t = Date.now();
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="history-cpu"]')?.getAttribute("data-last")) > before,
    first,
    { timeout: TIMEOUT, polling: 200 },
  );
  figures.appended_after_ms = Date.now() - t;
  const appended = Number(await cpu.getAttribute("data-last"));
  if (appended - first !== 5 && appended - first !== 10) throw new Error(`appended ${first} -> ${appended}`);
  if (historyRequests.length !== 1) throw new Error(`history asked ${historyRequests.length} times: ${historyRequests}`);
  await page.getByTestId("history-memory").getByText(/Used \d/).waitFor();
  await page.getByTestId("history-disk").scrollIntoViewIfNeeded();
  figures.axe.charts = violations(await axe(page, "node page with charts"));
  figures.screenshots.push(await shot(page, "01-node-charts"));

  // 2. The range switcher: a day's history, asked once.
  await page.getByRole("button", { name: "Day" }).click();
  await page.waitForFunction(() => document.querySelector('[data-testid="history-cpu"]')?.getAttribute("data-last"));
  await page.waitForFunction(() => document.querySelectorAll('[data-testid^="history-"] canvas').length === 4);
  if (!historyRequests.some((q) => q.includes("range=1d"))) throw new Error(`no day asked: ${historyRequests}`);
  await page.emulateMedia({ colorScheme: "dark" });
  await page.waitForFunction(() => document.documentElement.classList.contains("pf-v6-theme-dark"));
  figures.axe.charts_dark = violations(await axe(page, "node page with charts (dark)"));
  figures.screenshots.push(await shot(page, "02-node-charts-day-dark"));
  await page.emulateMedia({ colorScheme: "light" });

  // 3. Power: the button is pressed only once the node's name is typed back; cancelled here.
  await page.getByTestId("power-open").click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Reason").fill("e2e: never sent");
  await dialog.getByLabel(`Type ${node} to confirm`).fill(`${node}x`);
  await dialog.getByText(`Not ${node}`).waitFor();
  if (await dialog.getByRole("button", { name: "Reboot" }).isEnabled()) throw new Error("reboot without the typed name");
  await dialog.getByLabel(`Type ${node} to confirm`).fill(node);
  if (!(await dialog.getByRole("button", { name: "Reboot" }).isEnabled())) throw new Error("reboot stays disabled");
  figures.axe.power = violations(await axe(page, "power dialog"));
  figures.screenshots.push(await shot(page, "03-power-dialog"));
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "detached" });

  // 4. Units.
  await page.getByRole("tab", { name: "Units" }).click();
  if (!unit) {
    await page.getByTestId("units-no-bus").waitFor();
    await page.getByText("No system bus on this node").waitFor();
    figures.axe.units_no_bus = violations(await axe(page, "units without a bus"));
    figures.screenshots.push(await shot(page, "04-units-no-bus"));
  } else {
    const call = await apiSession("admin", password);
    await page.getByLabel("Search units").fill(unit.replace(/\.service$/, ""));
    const state = page.getByTestId(`unit-state-${unit}`);
    await state.waitFor();
    await page.getByRole("button", { name: unit, exact: true }).click();
    await page.getByTestId("unit-details").waitFor();
    await page.getByTestId("journal").waitFor();
    figures.axe.units = violations(await axe(page, "units"));
    figures.screenshots.push(await shot(page, "04-units"));
    // Changed through the API (as from another node): the open page follows, nothing reloaded.
    let t0 = Date.now();
    await call("POST", `/nodes/${node}/units/${unit}/stop`, {});
    figures.stop_answered_ms = Date.now() - t0;
    await state.getByText("inactive", { exact: true }).waitFor();
    figures.stop_on_screen_ms = Date.now() - t0;
    await page.getByTestId("unit-details-state").getByText("inactive", { exact: true }).waitFor();
    t0 = Date.now();
    await call("POST", `/nodes/${node}/units/${unit}/start`, {});
    await state.getByText("active", { exact: true }).waitFor();
    figures.start_on_screen_ms = Date.now() - t0;
    // The page's own button.
    await page.getByTestId("unit-action-restart").click();
    await page.getByText(/restart: done/).waitFor();
    // Follow its journal: the restart's lines arrive without a reload.
    await page.getByText("Follow").click();
    await page.getByTestId("journal-status").getByText("following").waitFor();
    t0 = Date.now();
    await call("POST", `/nodes/${node}/units/${unit}/restart`, {});
    const lines = page.getByRole("log");
    await page.waitForFunction(
      (n) => (document.querySelector('[role="log"]')?.textContent ?? "").split("Started").length > n,
      (await lines.textContent()).split("Started").length,
      { timeout: TIMEOUT },
    );
    figures.journal_line_ms = Date.now() - t0;
    figures.screenshots.push(await shot(page, "04b-unit-journal"));
  }

  // 5. The dashboard's small chart of the node: its hour (cpu and memory) asked once.
  await page.getByRole("navigation", { name: "Cluster" }).getByRole("link", { name: "Dashboard" }).click();
  await page.getByTestId(`load-${node}`).locator("canvas").waitFor();
  const loads = historyRequests.filter((q) => q.includes("metrics=cpu%2Cmemory"));
  if (loads.length !== 1) throw new Error(`dashboard history asked ${loads.length} times: ${historyRequests}`);
  await page.getByTestId(`load-${node}`).scrollIntoViewIfNeeded();
  figures.axe.dashboard_load = violations(await axe(page, "dashboard with load charts"));
  figures.screenshots.push(await shot(page, "05-dashboard-load"));

  // 6. A viewer: no power button, no unit actions.
  const made = await apiSession("admin", password);
  await made("POST", "/users", { name: "watcher", password: "a viewer's password", role: "viewer" });
  const viewer = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const vpage = await viewer.newPage();
  vpage.setDefaultTimeout(TIMEOUT);
  await vpage.goto(`${env.url}/nodes/${node}`);
  await vpage.getByLabel("User name").fill("watcher");
  await vpage.getByLabel("Password").fill("a viewer's password");
  await vpage.getByRole("button", { name: "Log in" }).click();
  await vpage.getByRole("heading", { name: `Node ${node}`, level: 1 }).waitFor();
  await vpage.getByTestId("history-cpu").locator("canvas").waitFor();
  if (await vpage.getByTestId("power-open").count()) throw new Error("a viewer sees the power button");
  await vpage.getByRole("tab", { name: "Units" }).click();
  if (unit) {
    await vpage.getByLabel("Search units").fill(unit.replace(/\.service$/, ""));
    await vpage.getByRole("button", { name: unit, exact: true }).click();
    await vpage.getByTestId("unit-details").waitFor();
    await vpage.getByTestId("unit-details-state").waitFor();
    if (await vpage.locator('[data-testid^="unit-action-"]').count()) throw new Error("a viewer sees unit actions");
    if (await vpage.getByTestId("journal").count()) throw new Error("a viewer sees the journal");
  } else {
    await vpage.getByTestId("units-no-bus").waitFor();
  }
  figures.axe.viewer = violations(await axe(vpage, "node page as a viewer"));
  figures.screenshots.push(await shot(vpage, "06-viewer-units"));
  await viewer.close();

  if (cspViolations.length) throw new Error(`CSP violations: ${cspViolations.join("; ")}`);
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join("; ")}`);
  figures.history_requests = historyRequests;
  figures.ok = true;
  console.log(JSON.stringify(figures));
} catch (error) {
  await shot(page, "failure").catch(() => undefined);
  console.error(String(error?.stack ?? error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
