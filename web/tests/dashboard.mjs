// The dashboard in a real browser (Debian's chromium driven by playwright-core), against a live
// `fleetsync run` started by the e2e test `api::dashboard::dashboard_in_chromium`
// (tests/e2e/api/dashboard.rs), which keeps writing rows to the sync's source meanwhile.
//
// Environment: DASH_URL (http://127.0.0.1:PORT/), OPERATOR_TOKEN, VIEWER_TOKEN, SYNC, TARGET,
// SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium). Every wait is on a
// condition (no fixed sleeps); exits non-zero with the step that failed.
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const url = env("DASH_URL");
const sync = env("SYNC");
const target = env("TARGET");
const shots = env("SCREENSHOTS");
const WAIT = { timeout: 60_000 };
mkdirSync(shots, { recursive: true });

let step = "launching chromium";
const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  // Root in CI containers: chromium's sandbox needs user namespaces that containers lack.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const consoleErrors = [];
const axeSummary = [];
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** axe-core on the page as it is: fails on any serious or critical violation. */
async function accessible(page, what) {
  step = `${what}: accessibility (axe-core)`;
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, { resultTypes: ["violations"] });
    const bad = r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    return { bad, passed: r.passes.length, minor: r.violations.length - bad.length };
  });
  if (found.passed === 0) throw new Error("axe checked nothing");
  if (found.bad.length) throw new Error(`axe: ${found.bad.join(" | ")}`);
  axeSummary.push(`${what}: ${found.passed} rules passed, ${found.minor} minor`);
}

async function login(token, role) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("response", (r) => r.status() >= 400 && consoleErrors.push(`${r.status()} ${r.url()}`));
  page.on("dialog", (d) => d.accept());
  step = `${role}: opening ${url}`;
  await page.goto(url);
  if (role === "operator") await accessible(page, "login");
  step = `${role}: logging in`;
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("who").filter({ hasText: `(${role})` }).waitFor(WAIT);
  if (page.url().includes(token)) throw new Error("the token is in the page's URL");
  return page;
}

const row = (page) => page.getByTestId(`target-${sync}-${target}`);
const value = async (page, id) => Number(await row(page).getByTestId(id).getAttribute("data-value"));
const state = (page, s) => row(page).locator(`[data-testid="state"][data-state="${s}"]`);

async function rowsMove(page, what) {
  step = `${what}: rows applied move`;
  const before = await value(page, "rows-applied");
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.getAttribute("data-value")) > n,
    [`[data-testid="target-${sync}-${target}"] [data-testid="rows-applied"]`, before],
    WAIT,
  );
}

try {
  const op = await login(env("OPERATOR_TOKEN"), "operator");
  step = "operator: the sync streams";
  await state(op, "streaming").waitFor(WAIT);
  await rowsMove(op, "streaming");
  step = "operator: rows/s above zero";
  await op.waitForFunction(
    (sel) => Number(document.querySelector(sel)?.getAttribute("data-value")) > 0,
    `[data-testid="target-${sync}-${target}"] [data-testid="rows-per-second"]`,
    WAIT,
  );
  const rps = await value(op, "rows-per-second");
  await op.screenshot({ path: join(shots, "overview-operator.png"), fullPage: true });
  await accessible(op, "overview");

  step = "operator: pause";
  const card = op.getByTestId(`sync-${sync}`);
  await card.getByRole("button", { name: "Pause" }).click();
  await card.getByTestId("control").filter({ hasText: "paused" }).waitFor(WAIT);
  await state(op, "paused").waitFor(WAIT);
  await op.screenshot({ path: join(shots, "overview-paused.png"), fullPage: true });

  step = "operator: resume";
  await card.getByRole("button", { name: "Resume" }).click();
  await card.getByTestId("control").filter({ hasText: "running" }).waitFor(WAIT);
  await state(op, "streaming").waitFor(WAIT);
  await rowsMove(op, "resumed");

  step = "operator: jobs page and a job's log";
  await op.getByRole("navigation").getByRole("link", { name: "Jobs" }).click();
  const job = op.locator('[data-testid^="job-"]').filter({ hasText: "succeeded" }).first();
  await job.waitFor(WAIT);
  await job.getByRole("button").first().click();
  await op.locator("pre.log").filter({ hasNotText: "(no log line yet)" }).waitFor(WAIT);
  await op.screenshot({ path: join(shots, "jobs-operator.png"), fullPage: true });
  await accessible(op, "jobs");

  step = "operator: cancel a job awaiting approval";
  const waiting = op.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).first();
  const waitingId = (await waiting.getAttribute("data-testid")).slice("job-".length);
  await waiting.getByRole("button").first().click();
  await op.getByRole("button", { name: "Cancel job" }).click();
  await op.getByTestId(`job-${waitingId}`).filter({ hasText: "cancelled" }).waitFor(WAIT);
  if ((await op.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("Cancel job still offered");
  await op.screenshot({ path: join(shots, "jobs-cancelled.png"), fullPage: true });

  const viewer = await login(env("VIEWER_TOKEN"), "viewer");
  step = "viewer: sees the sync, no control";
  await state(viewer, "streaming").waitFor(WAIT);
  for (const name of ["Pause", "Resume", "Cancel"]) {
    const n = await viewer.getByRole("button", { name, exact: true }).count();
    if (n !== 0) throw new Error(`the viewer sees ${n} ${name} button(s)`);
  }
  await viewer.screenshot({ path: join(shots, "overview-viewer.png"), fullPage: true });
  await viewer.getByRole("navigation").getByRole("link", { name: "Jobs" }).click();
  const viewerJob = viewer.locator('[data-testid^="job-"]').filter({ hasText: "succeeded" }).first();
  await viewerJob.waitFor(WAIT);
  await viewerJob.getByRole("button").first().click();
  await viewer.locator("pre.log").waitFor(WAIT);
  step = "viewer: no cancel for a job awaiting approval";
  await viewer.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).first().getByRole("button").first().click();
  await viewer.locator("section.card h3").filter({ hasText: "schema_diff" }).waitFor(WAIT);
  if ((await viewer.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("the viewer sees Cancel job");
  await viewer.screenshot({ path: join(shots, "jobs-viewer.png"), fullPage: true });

  step = "phone width";
  await viewer.setViewportSize({ width: 390, height: 844 });
  await viewer.getByRole("navigation").getByRole("link", { name: "Overview" }).click();
  await state(viewer, "streaming").waitFor(WAIT);
  await viewer.screenshot({ path: join(shots, "overview-phone.png"), fullPage: true });

  if (consoleErrors.length) throw new Error(`browser console errors: ${consoleErrors.join(" | ")}`);
  console.log(`dashboard: ok (rows/s seen ${rps}; axe: ${axeSummary.join("; ")}; screenshots in ${shots})`);
} catch (e) {
  console.error(`dashboard: FAILED at "${step}": ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
