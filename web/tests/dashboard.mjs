// The dashboard in a real browser (Debian's chromium driven by playwright-core), against a live
// `fleetsync run` started by the e2e test `api::dashboard::dashboard_in_chromium`
// (tests/e2e/api/dashboard.rs), which keeps writing rows to the sync's source meanwhile.
//
// Environment: DASH_URL (http://127.0.0.1:PORT/), OPERATOR_TOKEN, VIEWER_TOKEN, OWNER_TOKEN,
// APPROVE_JOB (a backup job the operator requested, awaiting approval), SYNC, TARGET,
// SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium). The stack has a conflict
// parked on TARGET. Every wait is on a condition (no fixed sleeps); exits non-zero with the
// step that failed.
import { env, start, WAIT } from "./lib.mjs";

const sync = env("SYNC");
const target = env("TARGET");
const approveJob = env("APPROVE_JOB");
const t = await start("dashboard");
// The operator's own approval is refused by the API (a second person is needed): expected.
t.allow(/^403 POST .*\/api\/v1\/jobs\/[^/]+\/approve$/);
t.allow(/status of 403/);

/** Tab (forward, then backward) until `test` holds for the focused element; only the keyboard. */
async function tabTo(page, what, test, max = 60) {
  for (const key of ["Tab", "Shift+Tab"]) {
    for (let i = 0; i < max; i++) {
      if (await page.evaluate(test)) return;
      await page.keyboard.press(key);
    }
  }
  throw new Error(`keyboard: ${what} never got the focus`);
}

/** The focused element shows a visible focus ring (`:focus-visible` with an outline). */
async function focusRingVisible(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el || !el.matches(":focus-visible")) return false;
    const css = getComputedStyle(el);
    return css.outlineStyle !== "none" && parseFloat(css.outlineWidth) > 0;
  });
}

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

  t.step = "operator: the parked conflict fires an alert and shows as open";
  await op.getByTestId("alert-FleetsyncConflictsOpen").filter({ hasText: `target ${target}` }).waitFor(WAIT);
  await op.locator(`[data-testid="conflicts-${target}"][data-value="1"]`).waitFor(WAIT);
  await op.getByTestId(`conflicts-${target}`).getByRole("link").first().waitFor(WAIT);
  t.step = "operator: servers reachable, with roles and binlog positions";
  for (const server of ["src", target]) {
    await op.locator(`[data-testid="server-${server}"] [data-testid="reachable"][data-value="true"]`).waitFor(WAIT);
    await op.getByTestId(`server-${server}`).getByTestId("binlog-position").waitFor(WAIT);
  }
  if (!(await op.getByTestId("server-src").textContent()).includes(`source of ${sync}`)) throw new Error("src is not shown as the source");
  await op.getByTestId(`applied-${sync}-${target}`).waitFor(WAIT);
  t.step = "operator: the lag chart draws points, and more arrive live";
  const chart = `[data-testid="lag-chart-${sync}-${target}"]`;
  await op.locator(`${chart} canvas`).first().waitFor(WAIT);
  await op.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute("data-points")) > 1, chart, WAIT);
  const points = Number(await op.locator(chart).getAttribute("data-points"));
  await op.waitForFunction(([sel, n]) => Number(document.querySelector(sel)?.getAttribute("data-points")) > n, [chart, points], WAIT);
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
  const waiting = op.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).filter({ hasText: "schema_diff" }).first();
  const waitingId = (await waiting.getAttribute("data-testid")).slice("job-".length);
  await waiting.getByRole("button").first().click();
  await op.getByRole("button", { name: "Cancel job" }).click();
  await op.getByTestId(`job-${waitingId}`).filter({ hasText: "cancelled" }).waitFor(WAIT);
  if ((await op.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("Cancel job still offered");
  await t.shot(op, "jobs-cancelled");

  t.step = "operator: filters, and the API refuses to approve the operator's own job";
  await op.getByLabel("Kind").selectOption("backup_create");
  await op.getByLabel("State").selectOption("awaiting_approval");
  const mine = op.getByTestId(`job-${approveJob}`);
  await mine.waitFor(WAIT);
  if ((await op.locator('[data-testid^="job-"]').count()) !== 1) throw new Error("the filters show other jobs");
  await mine.getByRole("button").first().click();
  await op.getByRole("button", { name: "Approve", exact: true }).click();
  await op.getByRole("alert").filter({ hasText: "Approve" }).waitFor(WAIT);
  const refusal = await op.getByRole("alert").filter({ hasText: "Approve" }).textContent();
  await mine.filter({ hasText: "awaiting approval" }).waitFor(WAIT);
  await t.shot(op, "jobs-own-approval");

  const owner = await t.login(env("OWNER_TOKEN"), "owner");
  t.step = "owner: approves the operator's backup and it runs";
  await t.open(owner, "Jobs");
  await owner.getByLabel("State").selectOption("awaiting_approval");
  await owner.getByTestId(`job-${approveJob}`).getByRole("button").first().click();
  await owner.getByRole("button", { name: "Approve", exact: true }).click();
  await owner.getByTestId(`job-${approveJob}`).waitFor({ state: "detached", ...WAIT });
  await owner.getByLabel("State").selectOption("succeeded");
  await owner.getByTestId(`job-${approveJob}`).filter({ hasText: "succeeded" }).waitFor(WAIT);
  await owner.getByTestId("approved-by").filter({ hasText: "boss-ui" }).waitFor(WAIT);
  await t.shot(owner, "jobs-approved");

  t.step = "owner: the Audit page shows the UI's pause, filtered";
  await t.open(owner, "Audit");
  await owner.getByTestId("audit-row").first().waitFor(WAIT);
  await owner.getByLabel("Action").fill("pause_sync");
  await owner.getByLabel("Token name").fill("ops-ui");
  await owner.getByRole("button", { name: "Apply filters" }).click();
  await owner.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="audit-row"]')];
    return rows.length > 0 && rows.every((r) => r.dataset.action === "pause_sync" && r.dataset.token === "ops-ui");
  }, undefined, WAIT);
  const pauses = await owner.getByTestId("audit-row").count();
  await t.shot(owner, "audit-owner");
  await t.accessible(owner, "audit");

  t.step = "dark theme: Overview and Audit";
  const dark = await t.login(env("OWNER_TOKEN"), "owner", { colorScheme: "dark" });
  await state(dark, "streaming").waitFor(WAIT);
  await dark.getByTestId("alert-FleetsyncConflictsOpen").waitFor(WAIT);
  await dark.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute("data-points")) > 1, chart, WAIT);
  if ((await dark.evaluate(() => getComputedStyle(document.body).backgroundColor)) === "rgb(247, 247, 248)") throw new Error("the dark theme is not applied");
  await t.shot(dark, "overview-dark");
  await t.accessible(dark, "overview (dark)");
  await t.open(dark, "Audit");
  await dark.getByTestId("audit-row").first().waitFor(WAIT);
  await t.shot(dark, "audit-dark");
  await t.accessible(dark, "audit (dark)");

  t.step = "keyboard only: log in";
  const kb = await t.login(env("OPERATOR_TOKEN"), "operator");
  await kb.evaluate(() => sessionStorage.clear());
  await kb.reload();
  await kb.getByLabel("API token").waitFor(WAIT);
  await tabTo(kb, "the token field", () => document.activeElement?.id === "token");
  await kb.keyboard.type(env("OPERATOR_TOKEN"));
  await kb.keyboard.press("Enter");
  await kb.getByTestId("who").filter({ hasText: "(operator)" }).waitFor(WAIT);
  await state(kb, "streaming").waitFor(WAIT);
  t.step = "keyboard only: Pause on the sync's card";
  const onButton = (label) =>
    new Function(`const el = document.activeElement; return !!el && el.tagName === "BUTTON" && el.textContent.trim() === ${JSON.stringify(label)} && !!el.closest('[data-testid="sync-${sync}"]');`);
  await tabTo(kb, "Pause", onButton("Pause"));
  if (!(await focusRingVisible(kb))) throw new Error("no visible focus ring on Pause");
  await kb.keyboard.press("Space");
  const kbCard = kb.getByTestId(`sync-${sync}`);
  await kbCard.getByTestId("control").filter({ hasText: "paused" }).waitFor(WAIT);
  await state(kb, "paused").waitFor(WAIT);
  t.step = "keyboard only: Resume";
  await tabTo(kb, "Resume", onButton("Resume"));
  if (!(await focusRingVisible(kb))) throw new Error("no visible focus ring on Resume");
  await t.shot(kb, "overview-keyboard");
  await kb.keyboard.press("Enter");
  await kbCard.getByTestId("control").filter({ hasText: "running" }).waitFor(WAIT);
  await state(kb, "streaming").waitFor(WAIT);

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
  await viewer.locator('[data-testid^="job-"]').filter({ hasText: "awaiting approval" }).filter({ hasText: "schema_diff" }).first().getByRole("button").first().click();
  await viewer.locator("section.card h3").filter({ hasText: "schema_diff" }).waitFor(WAIT);
  if ((await viewer.getByRole("button", { name: "Cancel job" }).count()) !== 0) throw new Error("the viewer sees Cancel job");
  for (const name of ["Approve", "Reject"]) {
    if ((await viewer.getByRole("button", { name, exact: true }).count()) !== 0) throw new Error(`the viewer sees ${name}`);
  }
  if ((await viewer.getByRole("navigation").getByRole("link", { name: "Audit" }).count()) !== 0) throw new Error("the viewer sees the Audit link");
  await t.shot(viewer, "jobs-viewer");

  t.step = "phone width";
  await viewer.setViewportSize({ width: 390, height: 844 });
  await viewer.getByRole("navigation").getByRole("link", { name: "Overview" }).click();
  await state(viewer, "streaming").waitFor(WAIT);
  await t.shot(viewer, "overview-phone");

  return `rows/s seen ${rps}; chart points ${points}; own approval refused: "${refusal.trim()}"; ${pauses} pause(s) of ops-ui in the audit`;
});
