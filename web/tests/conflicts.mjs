// The Conflicts page in a real browser, against a live `fleetsync run` started by the e2e test
// `api::dash_conflicts::dash_conflicts_in_chromium` (tests/e2e/api/dash_conflicts.rs), which
// parked six conflicts of app.items on TARGET (CONFLICT_IDS: their ids, rows 1..6 in order).
// A viewer sees the three images and no resolve control; an operator takes the incoming
// version of the first, writes a merged row for the second, previews the bulk rule "newer
// updated_at" (exactly the other four, winners incoming, incoming, local, local) and applies
// it. The Rust side then checks every target row in SQL.
//
// Environment: DASH_URL, OPERATOR_TOKEN, VIEWER_TOKEN, TARGET, CONFLICT_IDS, SCREENSHOTS,
// CHROMIUM. Every wait is on a condition (no fixed sleeps).
import { env, start, WAIT } from "./lib.mjs";

const target = env("TARGET");
const ids = env("CONFLICT_IDS").split(",");
if (ids.length !== 6) throw new Error(`CONFLICT_IDS: want 6 ids, got ${ids.length}`);
const t = await start("conflicts");

const RESOLVE_BUTTONS = ["Take incoming…", "Keep local…", "Edit a merged row…", "Preview", "Check merged row…"];

async function openConflict(page, id) {
  t.step = `opening conflict ${id} by its deep link`;
  await page.evaluate((h) => (location.hash = h), `#/conflicts/${target}/${id}`);
  await page.getByTestId("three-way").waitFor(WAIT);
  await page.getByRole("heading", { name: new RegExp(`^Conflict ${id} on ${target}`) }).waitFor(WAIT);
}

async function attr(page, testid, name) {
  return page.getByTestId(testid).first().getAttribute(name);
}

async function expectAttr(page, testid, name, want) {
  const got = await attr(page, testid, name);
  if (got !== want) throw new Error(`${testid} ${name}: got ${got}, want ${want}`);
}

await t.run(async () => {
  // The viewer: reads everything, is offered nothing that resolves.
  const viewer = await t.login(env("VIEWER_TOKEN"), "viewer");
  await t.open(viewer, "Conflicts");
  t.step = "viewer: the log lists the six conflicts";
  await viewer.getByTestId(`conflict-${target}-${ids[5]}`).waitFor(WAIT);
  await openConflict(viewer, ids[0]);
  for (const name of RESOLVE_BUTTONS) {
    const n = await viewer.getByRole("button", { name, exact: true }).count();
    if (n !== 0) throw new Error(`the viewer sees ${n} "${name}" button(s)`);
  }
  if ((await viewer.getByRole("heading", { name: "Resolve by a rule" }).count()) !== 0) throw new Error("the viewer sees the bulk form");
  await t.shot(viewer, "conflicts-viewer");
  await t.accessible(viewer, "conflicts (viewer)");

  const op = await t.login(env("OPERATOR_TOKEN"), "operator");
  await t.open(op, "Conflicts");
  t.step = "operator: the log";
  await op.getByTestId(`conflict-${target}-${ids[0]}`).waitFor(WAIT);
  await t.shot(op, "conflicts-log");
  await t.accessible(op, "conflict log");

  t.step = "operator: open conflict 1 from the log";
  await op.getByRole("link", { name: `#${ids[0]} on ${target}` }).click();
  await op.getByTestId("three-way").waitFor(WAIT);
  if (!op.url().endsWith(`#/conflicts/${target}/${ids[0]}`)) throw new Error(`deep link: ${op.url()}`);
  t.step = "operator: the three images and the differing columns";
  await expectAttr(op, "col-id", "data-differs", "false");
  await expectAttr(op, "col-val", "data-differs", "true");
  await expectAttr(op, "col-qty", "data-differs", "true");
  await expectAttr(op, "col-updated_at", "data-differs", "true");
  await expectAttr(op, "col-val", "data-incoming-changed", "true");
  await expectAttr(op, "col-val", "data-local-changed", "true");
  await expectAttr(op, "col-id", "data-incoming-changed", "false");
  await expectAttr(op, "before-val", "data-value", "one");
  await expectAttr(op, "incoming-val", "data-value", "src-1");
  await expectAttr(op, "local-val", "data-value", "dst-1");
  await t.shot(op, "conflicts-detail");
  await t.accessible(op, "conflict detail");

  t.step = "operator: take incoming (plan, then apply)";
  await op.getByRole("button", { name: "Take incoming…" }).click();
  await op.getByTestId("resolve-plan").filter({ hasText: "INSERT INTO" }).waitFor(WAIT);
  await op.getByRole("button", { name: /^Apply: take the incoming version/ }).click();
  await op.getByTestId("resolve-notice").waitFor(WAIT);
  await op.locator('[data-testid="detail-status"][data-state="resolved"]').waitFor(WAIT);

  t.step = "operator: a merged row for conflict 2";
  await openConflict(op, ids[1]);
  await op.getByRole("button", { name: "Edit a merged row…" }).click();
  await op.getByTestId("merge-form").waitFor(WAIT);
  const val = op.getByLabel("Merged val", { exact: true });
  if ((await val.inputValue()) !== "src-2") throw new Error(`merged val prefilled with ${await val.inputValue()}`);
  await val.fill("merged-2");
  await op.getByRole("button", { name: "use local for qty" }).click();
  if ((await op.getByLabel("Merged qty", { exact: true }).inputValue()) !== "102") throw new Error("qty not taken from the local row");
  await op.getByRole("button", { name: "Check merged row…" }).click();
  await op.getByTestId("resolve-plan").filter({ hasText: "merged-2" }).waitFor(WAIT);
  await t.shot(op, "conflicts-merged");
  await t.accessible(op, "merged row");
  await op.getByRole("button", { name: "Apply: write the merged row" }).click();
  await op.getByTestId("resolve-notice").waitFor(WAIT);
  await op.locator('[data-testid="detail-status"][data-state="resolved"]').waitFor(WAIT);

  t.step = "operator: bulk preview (newer updated_at) lists exactly the other four";
  await op.getByRole("link", { name: "← All conflicts" }).click();
  const table = op.getByLabel("Table", { exact: true });
  await table.fill("app.nothing");
  await op.getByTestId("no-conflicts").waitFor(WAIT);
  await table.fill("app.items");
  await op.locator('[data-testid="conflict-list"][data-count="4"]').waitFor(WAIT);
  if ((await op.getByTestId(`conflict-${target}-${ids[0]}`).count()) !== 0) throw new Error("a resolved conflict is listed as open");
  await op.getByRole("button", { name: "Preview", exact: true }).click();
  await op.getByTestId("bulk-preview").waitFor(WAIT);
  const listed = await op.locator('[data-testid^="bulk-"][data-outcome]').evaluateAll((rows) =>
    rows.map((r) => `${r.getAttribute("data-testid")}=${r.getAttribute("data-winner")}/${r.getAttribute("data-outcome")}`),
  );
  const want = ids.slice(2).map((id, i) => `bulk-${target}-${id}=${i < 2 ? "incoming" : "local"}/would_resolve`);
  if (JSON.stringify(listed.sort()) !== JSON.stringify(want.sort())) throw new Error(`preview: ${listed.join(", ")}; want ${want.join(", ")}`);
  await t.shot(op, "conflicts-bulk-preview");
  await t.accessible(op, "bulk preview");
  t.step = "operator: bulk apply";
  await op.getByRole("button", { name: "Apply to 4 conflict(s)" }).click();
  await op.locator('[data-testid="bulk-result"][data-resolved="4"]').waitFor(WAIT);
  await op.getByTestId("no-conflicts").waitFor(WAIT);
  await t.shot(op, "conflicts-bulk-done");

  t.step = "dark theme and phone width";
  const dark = await t.login(env("OPERATOR_TOKEN"), "operator", { colorScheme: "dark" });
  await t.open(dark, "Conflicts");
  await openConflict(dark, ids[1]);
  await t.shot(dark, "conflicts-dark");
  await t.accessible(dark, "conflicts (dark)");
  const phone = await t.login(env("OPERATOR_TOKEN"), "operator", { viewport: { width: 390, height: 844 } });
  await t.open(phone, "Conflicts");
  await openConflict(phone, ids[0]);
  await t.shot(phone, "conflicts-phone");
  await t.accessible(phone, "conflicts (phone)");
  return "viewer read-only; 1 incoming, 1 merged, 4 by the newer updated_at";
});
