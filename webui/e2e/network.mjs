// End to end: a node managing a network namespace the test made (`--netns`), driven through
// the networking pages. A bad document shows its problem on the line its path names; a good
// one shows the plan as a diff; apply starts the countdown and Confirm keeps the change
// before it ends; a second apply is left alone and the page shows it rolled back. Then
// overlay networks (create, delete with typed confirmation), a join token with its command,
// the sessions, the PXE page, and a viewer's read-only views. axe-core and a screenshot on
// every page; no CSP violation or page error. Prints one JSON line of figures.
import { apiSession, axe, env, launch, need, shot } from "./lib.mjs";

const password = need("DEBVISOR_ADMIN_PASSWORD");
const node = process.env.DEBVISOR_NODE ?? "n1";
const VIEWER_PASSWORD = "a password for the viewer";
const TIMEOUT = 15000;

const ONE = { bridges: [{ name: "dvwb0", addresses: ["10.93.0.1/24"] }] };
const TWO = { bridges: [...ONE.bridges, { name: "dvwb1", addresses: ["10.93.1.1/24"] }] };
const BAD = `{
  "bridges": [
    {
      "name": "dvwb0",
      "addresses": ["not-an-address"]
    }
  ]
}`;

const { browser, page, cspViolations, pageErrors } = await launch();
page.setDefaultTimeout(TIMEOUT);
const figures = { screenshots: [], axe: {} };
const check = async (name, shown) => {
  if (shown) await shown.scrollIntoViewIfNeeded(); // the page scrolls inside PatternFly's main
  figures.axe[name] = (await axe(page, name)).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(page, `net-${Object.keys(figures.axe).length.toString().padStart(2, "0")}-${name}`));
};

async function login(p, user, secret) {
  await p.getByLabel("User name").fill(user);
  await p.getByLabel("Password").fill(secret);
  await p.getByRole("button", { name: "Log in" }).click();
}

try {
  await page.goto(`${env.url}/nodes/${node}/network`);
  await page.getByRole("heading", { name: "Log in to DebVisor" }).waitFor();
  await login(page, "admin", password);
  await page.getByRole("heading", { name: `Host network of ${node}`, level: 1 }).waitFor();
  const links = page.locator('table[aria-label="Links"]');
  await links.getByText("lo", { exact: true }).waitFor();
  await page.getByText("Live", { exact: true }).waitFor();
  await check("host-network");

  // A problem the node finds is shown with the line of the field its path names.
  const editor = page.locator("#net-doc");
  await editor.fill(BAD);
  await page.getByRole("button", { name: "Show the plan" }).click();
  const problem = page.locator("#net-doc-help").getByText(/Line 5, \$\.bridges\[0\]\.addresses/);
  await problem.waitFor();
  figures.problem_shown = await problem.textContent();
  await check("network-problem", problem);
  await editor.fill("{ not json");
  await page.locator("#net-doc-help").getByText(/^Line 1: /).waitFor(); // validated as typed

  // The plan as a diff against the applied configuration, and the commands it runs.
  await editor.fill(JSON.stringify(ONE, null, 2));
  await page.getByRole("button", { name: "Show the plan" }).click();
  const diff = page.getByRole("region", { name: "Configuration diff" });
  await diff.getByText('+       "name": "dvwb0",').waitFor();
  await page.getByRole("region", { name: "Planned commands" }).getByText(/ip link add dvwb0 type bridge/).waitFor();
  await check("network-plan", diff);

  // Apply with a 60 s window: the countdown runs; Confirm before it ends.
  await page.locator("#net-within").fill("60");
  let t = Date.now();
  await page.getByRole("button", { name: "Apply" }).click();
  const countdown = page.getByTestId("countdown");
  await countdown.waitFor();
  figures.apply_to_countdown_ms = Date.now() - t;
  await links.getByText("dvwb0", { exact: true }).waitFor(); // the new bridge, in the namespace
  const first = Number((await countdown.textContent()).split(" ")[0]);
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="countdown"]')?.textContent?.split(" ")[0]) < before,
    first,
  ); // it counts down
  await check("network-pending", countdown);
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByText("Last change confirmed").waitFor();
  figures.confirmed_with_seconds_left = first;
  await countdown.waitFor({ state: "detached" });
  await check("network-confirmed", page.getByText("Last change confirmed"));

  // A second change left alone: rolled back when its window ends, and the page says so.
  await page.locator("#net-doc").fill(JSON.stringify(TWO, null, 2));
  await page.locator("#net-within").fill("10");
  await page.getByRole("button", { name: "Apply" }).click();
  await countdown.waitFor();
  await links.getByText("dvwb1", { exact: true }).waitFor();
  t = Date.now();
  await page.getByText(/Last change rolled back/).waitFor({ timeout: 40000 });
  figures.rollback_shown_after_ms = Date.now() - t;
  await links.getByText("dvwb1", { exact: true }).waitFor({ state: "detached" });
  await links.getByText("dvwb0", { exact: true }).waitFor(); // the confirmed change stays
  await check("network-rolled-back", page.getByText(/Last change rolled back/));

  // Overlay networks: create, then delete after typing the name.
  await page.goto(`${env.url}/networks`);
  await page.getByRole("heading", { name: "Networking", level: 1 }).waitFor();
  await page.locator("#overlay-name").fill("Bad");
  await page.getByText("Lowercase letters, digits and -").waitFor(); // validated as typed
  await page.locator("#overlay-name").fill("e2e-net");
  await page.locator("#overlay-vni").fill("4242");
  await page.locator("#overlay-bridge").fill("dvov4242");
  await page.getByRole("button", { name: "Create overlay network" }).click();
  const overlays = page.locator('table[aria-label="Overlay networks"]');
  await overlays.getByText("e2e-net", { exact: true }).waitFor();
  await check("overlays");
  await page.getByRole("button", { name: "Delete e2e-net" }).click();
  const confirmDelete = page.getByRole("dialog").getByRole("button", { name: "Delete" });
  if (await confirmDelete.isEnabled()) throw new Error("delete enabled before the name was typed");
  await page.locator("#typed-confirm").fill("e2e-net");
  await check("overlay-delete");
  await confirmDelete.click();
  await page.getByText("No overlay networks yet.").waitFor();

  // A join token: the command and the kernel argument to copy.
  await page.goto(`${env.url}/access`);
  await page.getByRole("heading", { name: "Join tokens and sessions", level: 1 }).waitFor();
  await page.getByRole("button", { name: "Create join token" }).click();
  const command = page.getByRole("textbox", { name: "The join command" });
  await command.waitFor();
  figures.join_command_prefix = (await command.inputValue()).slice(0, 26);
  if (!(await command.inputValue()).startsWith("debvisor serve --join ")) throw new Error("no join command");
  if (!(await page.getByRole("textbox", { name: "The kernel argument" }).inputValue()).startsWith("debvisor.join="))
    throw new Error("no kernel argument");
  await page.locator('table[aria-label="Your sessions"]').getByText("this one").waitFor();
  await check("access");

  // PXE: settings and the machines that booted from the node (none here).
  await page.goto(`${env.url}/nodes/${node}/pxe`);
  await page.getByText("No machine has booted from this node yet.").waitFor();
  await page.locator("#pxe-doc").waitFor();
  await check("pxe");

  // Labels and description, checked as typed, saved on this node.
  await page.goto(`${env.url}/nodes/${node}/labels`);
  await page.getByRole("heading", { name: `Labels and description of ${node}`, level: 1 }).waitFor();
  await page.locator("#node-labels").fill("Rack=r1");
  await page.getByText(/Line 1: Rack: lowercase/).waitFor();
  await page.locator("#node-labels").fill("rack=r1\nrole=edge");
  await page.locator("#node-description").fill("managed by the network e2e");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved").waitFor();
  await check("labels");
  const saved = await (await apiSession("admin", password))("GET", "/node");
  if (saved.labels.rack !== "r1" || saved.description !== "managed by the network e2e") throw new Error("labels not saved");

  // A viewer: the same pages, and no button it may not press.
  const admin = await apiSession("admin", password);
  await admin("POST", "/users", { name: "netview", password: VIEWER_PASSWORD, role: "viewer", enabled: true });
  const viewerContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const viewer = await viewerContext.newPage();
  viewer.setDefaultTimeout(TIMEOUT);
  viewer.on("pageerror", (error) => pageErrors.push(String(error)));
  await viewer.goto(`${env.url}/nodes/${node}/network`);
  await login(viewer, "netview", VIEWER_PASSWORD);
  const changeHeading = viewer.getByRole("heading", { name: "Change your password" });
  const networkHeading = viewer.getByRole("heading", { name: `Host network of ${node}`, level: 1 });
  await changeHeading.or(networkHeading).first().waitFor();
  if (await changeHeading.isVisible()) {
    await viewer.locator("#new-password").fill(`${VIEWER_PASSWORD} changed`);
    await viewer.locator("#new-password-again").fill(`${VIEWER_PASSWORD} changed`);
    await viewer.getByRole("button", { name: "Change password and continue" }).click();
  }
  await networkHeading.waitFor();
  await viewer.locator('table[aria-label="Links"]').getByText("dvwb0", { exact: true }).waitFor();
  for (const name of ["Apply", "Store", "Confirm", "Roll back"]) {
    if (await viewer.getByRole("button", { name, exact: true }).count()) throw new Error(`a viewer sees ${name}`);
  }
  figures.axe.viewer_network = (await axe(viewer, "viewer network")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(viewer, "net-viewer-network"));
  await viewer.goto(`${env.url}/networks`);
  await viewer.getByRole("heading", { name: "Networking", level: 1 }).waitFor();
  await viewer.getByText("No overlay networks yet.").waitFor();
  if (await viewer.getByRole("button", { name: "Create overlay network" }).count()) throw new Error("a viewer may create");
  if (await viewer.getByRole("link", { name: `PXE of ${node}` }).count()) throw new Error("a viewer sees PXE");
  figures.axe.viewer_networks = (await axe(viewer, "viewer networks")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(viewer, "net-viewer-networks"));
  await viewer.goto(`${env.url}/nodes/${node}/labels`);
  await viewer.getByRole("heading", { name: `Labels and description of ${node}`, level: 1 }).waitFor();
  await viewer.locator("#node-description").waitFor();
  if (await viewer.getByRole("button", { name: "Save" }).count()) throw new Error("a viewer may save labels");
  figures.axe.viewer_labels = (await axe(viewer, "viewer labels")).map((v) => `${v.id}:${v.impact}:${v.nodes.length}`);
  figures.screenshots.push(await shot(viewer, "net-viewer-labels"));
  await viewerContext.close();

  if (cspViolations.length) throw new Error(`CSP violations: ${cspViolations.join("; ")}`);
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join("; ")}`);
  figures.ok = true;
  console.log(JSON.stringify(figures));
} catch (error) {
  figures.screenshots.push(await shot(page, "net-failure").catch(() => null));
  console.error(String(error?.stack ?? error));
  console.log(JSON.stringify({ ...figures, ok: false, error: String(error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
