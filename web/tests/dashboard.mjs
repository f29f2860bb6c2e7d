// The dashboard in a real browser (Debian's chromium driven by playwright-core), against a live
// `fleetsync run` started by the e2e test `api::dashboard::dashboard_in_chromium`
// (tests/e2e/api/dashboard.rs), which keeps writing rows to the sync's source meanwhile.
//
// Environment: DASH_URL (http://127.0.0.1:PORT/), OPERATOR_TOKEN, VIEWER_TOKEN, SYNC, TARGET,
// SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium). Every wait is on a
// condition (no fixed sleeps); exits non-zero with the step that failed.
import { env, start, WAIT } from "./lib.mjs";

const sync = env("SYNC");
const target = env("TARGET");
const t = await start("dashboard");

const row = (page) => page.getByTestId(`target-${sync}-${target}`);
const value = async (page, id) => Number(await row(page).getByTestId(id).getAttribute("data-value"));
const state = (page, s) => row(page).locator(`[data-testid="state"][data-state="${s}"]`);

async function rowsMove(page, what) {
  t.step = `${what}: rows applied move`;
  const before = await value(page, "rows-applied");
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.getAttribute("data-value")) > n,
    [`[data-testid="target-${sync}-${target}"] [data-testid="rows-applied"]`, before],
    WAIT,
  );
}

await t.run(async () => {
  const op = await t.login(env("OPERATOR_TOKEN"), "operator", { checkLogin: true });
  t.step = "operator: the sync streams";
  await state(op, "streaming").waitFor(WAIT);
  await rowsMove(op, "streaming");
  t.step = "operator: rows/s above zero";
  await op.waitForFunction(
    (sel) => Number(document.querySelector(sel)?.getAttribute("data-value")) > 0,
    `[data-testid="target-${sync}-${target}"] [data-testid="rows-per-second"]`,
    WAIT,
  );
  const rps = await value(op, "rows-per-second");
  await t.shot(op, "overview-operator");
  await t.accessible(op, "overview");

  t.step = "operator: pause";
  const card = op.getByTestId(`sync-${sync}`);
  await card.getByRole("button", { name: "Pause" }).click();
  await card.getByTestId("control").filter({ hasText: "paused" }).waitFor(WAIT);
  await state(op, "paused").waitFor(WAIT);
  await t.shot(op, "overview-paused");

  t.step = "operator: resume";
  await card.getByRole("button", { name: "Resume" }).click();
  await card.getByTestId("control").filter({ hasText: "running" }).waitFor(WAIT);
  await state(op, "streaming").waitFor(WAIT);
  await rowsMove(op, "resumed");

  t.step = "operator: jobs page and a job's log";
  await op.getByRole("navigation").getByRole("link", { name: "Jobs" }).click();
  const job = op.locator('[data-testid^="job-"]').filter({ hasText: "succeeded" }).first();
  await job.waitFor(WAIT);
  await job.getByRole("button").first().click();
  await op.locator("pre.log").filter({ hasNotText: "(no log line yet)" }).waitFor(WAIT);
  await t.shot(op, "jobs-operator");
  await t.accessible(op, "jobs");

  t.step = "operator: cancel a job awaiting approval";
  const waiting = op.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).first();
  const waitingId = (await waiting.getAttribute("data-testid")).slice("job-".length);
  await waiting.getByRole("button").first().click();
  await op.getByRole("button", { name: "Cancel job" }).click();
  await op.getByTestId(`job-${waitingId}`).filter({ hasText: "cancelled" }).waitFor(WAIT);
  if ((await op.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("Cancel job still offered");
  await t.shot(op, "jobs-cancelled");

  const viewer = await t.login(env("VIEWER_TOKEN"), "viewer");
  t.step = "viewer: sees the sync, no control";
  await state(viewer, "streaming").waitFor(WAIT);
  for (const name of ["Pause", "Resume", "Cancel"]) {
    const n = await viewer.getByRole("button", { name, exact: true }).count();
    if (n !== 0) throw new Error(`the viewer sees ${n} ${name} button(s)`);
  }
  await t.shot(viewer, "overview-viewer");
  await viewer.getByRole("navigation").getByRole("link", { name: "Jobs" }).click();
  const viewerJob = viewer.locator('[data-testid^="job-"]').filter({ hasText: "succeeded" }).first();
  await viewerJob.waitFor(WAIT);
  await viewerJob.getByRole("button").first().click();
  await viewer.locator("pre.log").waitFor(WAIT);
  t.step = "viewer: no cancel for a job awaiting approval";
  await viewer.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).first().getByRole("button").first().click();
  await viewer.locator("section.card h3").filter({ hasText: "schema_diff" }).waitFor(WAIT);
  if ((await viewer.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("the viewer sees Cancel job");
  await t.shot(viewer, "jobs-viewer");

  t.step = "phone width";
  await viewer.setViewportSize({ width: 390, height: 844 });
  await viewer.getByRole("navigation").getByRole("link", { name: "Overview" }).click();
  await state(viewer, "streaming").waitFor(WAIT);
  await t.shot(viewer, "overview-phone");

  return `rows/s seen ${rps}`;
});
