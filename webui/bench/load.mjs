// The browser side of bench/webui.py: Debian's Chromium (headless, under playwright-core)
// against a real node. It measures, for the login page and the dashboard, cold (a new browser
// context: empty cache, only the session cookie) and warm (a reload in the same context):
//   - first contentful paint (the browser's own `paint` entry),
//   - fully loaded: the moment the page's initial data is on screen (dashboard: the members
//     table shows a member's state and the recent audit events are shown; login: the form),
//     seen by a MutationObserver installed before the page's own scripts run,
//   - bytes transferred (Resource Timing `transferSize` of the document and every resource:
//     headers and compressed bodies, 0 for what came from the cache; the events WebSocket is
//     not counted),
// and the delay from an event on the node to its change on screen: an API change (PUT /node,
// with a token of another user, so the page's own rate budget is untouched) appends an audit
// entry; the node publishes it (the event's `at`, the node's wall clock) and the dashboard's
// "Recent audit events" table changes (a MutationObserver, performance.timeOrigin + now():
// the same machine's clock). A raw WebSocket in the same page gives the floor: when the
// event itself arrived. Prints one JSON line.
import { chromium } from "playwright-core";

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`bench: set ${name}`);
    process.exit(2);
  }
  return value;
}

const URL_BASE = need("DEBVISOR_URL");
const COOKIE_USER = need("BENCH_USER");
const COOKIE_PASSWORD = need("BENCH_PASSWORD");
const CHANGE_TOKEN = need("BENCH_CHANGE_TOKEN"); // another user's API token: makes the changes
const LOADS = Number(process.env.BENCH_LOADS ?? "10");
const EVENTS = Number(process.env.BENCH_EVENTS ?? "50");
const PAUSE_MS = Number(process.env.BENCH_PAUSE_MS ?? "400"); // keeps the page inside 10 req/s
const TIMEOUT = 15000;

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

// Installed before the page's scripts on every navigation (through the DevTools protocol, so
// the page's CSP, which allows no inline script, stays on).
function readyProbe() {
  const done = (name) => {
    if (window.__dvReady[name] === undefined) window.__dvReady[name] = performance.now();
  };
  window.__dvReady = {};
  const check = () => {
    if (document.querySelector('button[type="submit"]') && /Log in to DebVisor/.test(document.body?.textContent ?? "")) {
      done("login");
    }
    const members = document.querySelector('table[aria-label="Cluster members"]');
    const memberShown = members && [...members.querySelectorAll('td[data-label="State"]')].some((td) => td.textContent);
    const audit =
      document.querySelector('table[aria-label="Recent audit events"]') ||
      /Nothing in the last day\./.test(document.body?.textContent ?? "");
    if (memberShown && audit) done("dashboard");
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, characterData: true });
}

// The renderer's main-thread time by kind (Chromium's Performance domain, cumulative per page):
// where a load's time went when it was not the network.
const CPU_METRICS = ["ScriptDuration", "RecalcStyleDuration", "LayoutDuration", "TaskDuration"];

async function cpu(page) {
  if (!page.__cdp) {
    page.__cdp = await page.context().newCDPSession(page);
    await page.__cdp.send("Performance.enable");
  }
  const { metrics } = await page.__cdp.send("Performance.getMetrics");
  return Object.fromEntries(metrics.filter((m) => CPU_METRICS.includes(m.name)).map((m) => [m.name, m.value * 1000]));
}

async function figures(page, what) {
  await page.waitForFunction((w) => window.__dvReady?.[w] !== undefined, what, { timeout: TIMEOUT, polling: 20 });
  const used = await cpu(page);
  // Let late resources (fonts, background images) finish so that the bytes are complete.
  await page.waitForLoadState("load");
  await page.waitForTimeout(100);
  const result = await page.evaluate((w) => {
    const nav = performance.getEntriesByType("navigation")[0];
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    const resources = performance.getEntriesByType("resource");
    const all = [nav, ...resources];
    return {
      fcp_ms: paint ? paint.startTime : null,
      ready_ms: window.__dvReady[w],
      bytes: all.reduce((sum, e) => sum + (e.transferSize || 0), 0),
      requests: all.length,
      from_cache: all.filter((e) => e.transferSize === 0 && e.decodedBodySize > 0).length,
      protocol: nav.nextHopProtocol,
      // Where the document's own time went: connection (TCP+TLS), waiting for the first byte.
      document: {
        connect_ms: Math.round(nav.connectEnd - nav.connectStart),
        tls_ms: nav.secureConnectionStart > 0 ? Math.round(nav.connectEnd - nav.secureConnectionStart) : 0,
        request_start_ms: Math.round(nav.requestStart),
        first_byte_ms: Math.round(nav.responseStart),
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      },
      waterfall: all.map((e) => ({
        name: e.name.replace(location.origin, ""),
        start: Math.round(e.startTime),
        end: Math.round(e.responseEnd),
        bytes: e.transferSize,
      })),
    };
  }, what);
  // Main-thread time of this document up to "fully loaded" (the counters start with each
  // navigation: the session is enabled before the first).
  result.cpu_ms = Object.fromEntries(Object.entries(used).map(([k, v]) => [k, Math.round(v)]));
  return result;
}

async function loginState(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const answer = await context.request.post(`${URL_BASE}/api/v1/auth/login`, {
    data: { username: COOKIE_USER, password: COOKIE_PASSWORD },
  });
  if (!answer.ok()) throw new Error(`login: HTTP ${answer.status()}`);
  const state = await context.storageState();
  await context.close();
  return state;
}

/** `loads` cold loads (each in a new context) and `loads` warm ones (reloads of one context). */
async function measure(browser, what, storageState) {
  const cold = [];
  const warm = [];
  const open = async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, storageState, viewport: { width: 1280, height: 800 } });
    await context.addInitScript(readyProbe);
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await cpu(page); // counting from the first navigation on
    return { context, page };
  };
  for (let i = 0; i < LOADS; i++) {
    const { context, page } = await open();
    await page.goto(`${URL_BASE}/`);
    cold.push(await figures(page, what));
    await context.close();
    await new Promise((r) => setTimeout(r, PAUSE_MS));
  }
  const { context, page } = await open();
  await page.goto(`${URL_BASE}/`);
  await figures(page, what);
  for (let i = 0; i < LOADS; i++) {
    await new Promise((r) => setTimeout(r, PAUSE_MS));
    await page.reload();
    warm.push(await figures(page, what));
  }
  await context.close();
  return { cold, warm };
}

/** The same cold dashboard load with index.html as built and with its whoami preload taken
 * out, alternated (so both see the same machine load); both documents pass through the same
 * interception, so the only difference is the preload. */
async function preloadAB(browser, storageState) {
  const result = { kept: [], stripped: [] };
  for (let i = 0; i < LOADS; i++) {
    const order = i % 2 ? ["kept", "stripped"] : ["stripped", "kept"];
    for (const variant of order) {
      const context = await browser.newContext({ ignoreHTTPSErrors: true, storageState, viewport: { width: 1280, height: 800 } });
      await context.addInitScript(readyProbe);
      await context.route(`${URL_BASE}/`, async (route) => {
        const response = await route.fetch();
        let body = await response.text();
        if (variant === "stripped") body = body.replace(/<link rel="preload"[^>]*>/g, "");
        await route.fulfill({ response, body });
      });
      const page = await context.newPage();
      page.setDefaultTimeout(TIMEOUT);
      await cpu(page);
      await page.goto(`${URL_BASE}/`);
      result[variant].push(await figures(page, "dashboard"));
      await context.close();
      await new Promise((r) => setTimeout(r, PAUSE_MS));
    }
  }
  return result;
}

async function change(i) {
  const answer = await fetch(`${URL_BASE}/api/v1/node`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${CHANGE_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ description: `bench change ${i}`, labels: { bench: String(i) } }),
  });
  if (!answer.ok) throw new Error(`PUT /node: HTTP ${answer.status} ${await answer.text()}`);
}

async function events(browser, storageState) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, storageState, viewport: { width: 1280, height: 800 } });
  await context.addInitScript(readyProbe);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`${URL_BASE}/`);
  await page.waitForFunction(() => window.__dvReady?.dashboard !== undefined, null, { timeout: TIMEOUT });
  await page.getByText("Live", { exact: true }).waitFor();
  // The floor: the same events, as they reach a plain socket in this page.
  await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        window.__dvArrived = [];
        const socket = new WebSocket(`wss://${location.host}/api/v1/events`);
        socket.onopen = resolve;
        socket.onerror = reject;
        socket.onmessage = (m) => {
          const now = performance.timeOrigin + performance.now();
          for (const line of String(m.data).split("\n")) {
            if (!line.trim()) continue;
            const e = JSON.parse(line);
            if (e.type === "audit") window.__dvArrived.push({ seq: e.seq, at: e.at, action: e.action, arrived: now });
          }
        };
      }),
  );
  const samples = [];
  for (let i = 0; i < EVENTS; i++) {
    const watching = page.evaluate(
      () =>
        new Promise((resolve) => {
          // The newest entry is a new row at the top (rows are keyed by node and seq): a
          // different first <tr> element, not a different text (two entries may read alike).
          const first = () => document.querySelector('table[aria-label="Recent audit events"] tbody tr');
          const before = first();
          const observer = new MutationObserver(() => {
            const now = first();
            if (now && now !== before) {
              observer.disconnect();
              resolve(performance.timeOrigin + performance.now());
            }
          });
          observer.observe(document.body, { childList: true, subtree: true, characterData: true });
          setTimeout(() => {
            observer.disconnect();
            resolve(null);
          }, 10000);
        }),
    );
    const arrivedBefore = await page.evaluate(() => window.__dvArrived.length);
    const sent = Date.now();
    await change(i);
    const shown = await watching;
    const arrived = await page.evaluate((n) => window.__dvArrived.slice(n), arrivedBefore);
    const event = arrived.find((e) => e.action === "put /api/v1/node");
    if (shown !== null && event) {
      samples.push({ screen_ms: shown - event.at * 1000, socket_ms: event.arrived - event.at * 1000, from_call_ms: shown - sent });
    }
    await new Promise((r) => setTimeout(r, PAUSE_MS));
  }
  await context.close();
  return samples;
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: FLAGS });
try {
  const anonymous = { cookies: [], origins: [] };
  const login = await measure(browser, "login", anonymous);
  const state = await loginState(browser);
  const dashboard = await measure(browser, "dashboard", state);
  const live = await events(browser, state);
  const preload = process.env.BENCH_AB === "1" ? await preloadAB(browser, state) : null;
  console.log(JSON.stringify({ ok: true, login, dashboard, events: live, preload }));
} catch (error) {
  console.error(String(error?.stack ?? error));
  console.log(JSON.stringify({ ok: false, error: String(error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
