// The Schema & migrations, Data diff and Health pages in a real browser, against the live
// `fleetsync run` of the e2e test `api::dash_schema` (tests/e2e/api/dash_schema.rs), which
// seeded: m.t differing between src and dst (dst: an extra column, no v_idx), dd.t differing
// on rows 3 (changed), 5 (missing on dst) and 99 (only on dst), and on dst hx.child with a
// foreign key lacking its index and orphaned rows.
//
// Environment: DASH_URL, ADMIN_TOKEN, VIEWER_TOKEN, REPAIR_OUT (where the downloaded repair
// SQL is saved), SCREENSHOTS, CHROMIUM. Every wait is on a condition (no fixed sleeps).
import { env, start, WAIT } from "./lib.mjs";

const t = await start("schema");
const job = (page, kind, state) => page.locator(`[data-testid="job-line"][data-kind="${kind}"][data-state="${state}"]`);

async function schemaPage(page) {
  t.step = "schema: pick the sides src/m → dst/m";
  await t.open(page, "Schema & migrations");
  await page.locator("select#src-server").selectOption("src");
  await page.locator("#src-db").fill("m");
  await page.locator("select#dst-server").selectOption("dst");
  await page.locator("#dst-db").fill("m");

  t.step = "schema: run the diff, see the table's differences";
  await page.getByRole("button", { name: "Compare schemas" }).click();
  await job(page, "schema_diff", "succeeded").waitFor(WAIT);
  const table = page.getByTestId("diff-table-m.t");
  await table.locator('[data-testid="difference"][data-object="column"][data-name="extra"][data-kind="only_in_target"]').waitFor(WAIT);
  await table.locator('[data-testid="difference"][data-object="index"][data-name="v_idx"][data-kind="only_in_source"]').waitFor(WAIT);
  await t.shot(page, "schema-diff");
  await t.accessible(page, "schema diff");

  t.step = "schema: generate the migration, see VERIFIED and its SQL";
  await page.getByRole("button", { name: "Generate migration" }).click();
  await job(page, "migrate_generate", "succeeded").waitFor(WAIT);
  await page.locator('[data-testid="verified"][data-value="true"]').filter({ hasText: "VERIFIED" }).waitFor(WAIT);
  await page.getByTestId("up-sql").filter({ hasText: "v_idx" }).waitFor(WAIT);
  await page.getByTestId("down-sql").filter({ hasText: "extra" }).waitFor(WAIT);
  await t.shot(page, "schema-migration");
  await t.accessible(page, "schema migration");

  t.step = "schema: apply (confirmation), see it in the history";
  const asked = [];
  page.on("dialog", (d) => asked.push(d.message()));
  await page.getByRole("button", { name: /^Apply migration to dst\/m/ }).click();
  await job(page, "migrate_apply", "succeeded").waitFor(WAIT);
  if (!asked.some((m) => m.includes("Apply migration") && m.includes("dst/m"))) throw new Error(`no confirmation naming the apply: ${asked}`);
  await page.getByTestId("history").locator('[data-status="applied"]').waitFor(WAIT);
  await page.locator('[data-testid="matches-last"][data-value="true"]').waitFor(WAIT);
  await page.getByRole("button", { name: /^Roll back migration/ }).waitFor(WAIT);
  await page.getByTestId("applied-note").waitFor(WAIT);
  if ((await page.getByRole("button", { name: /^Apply migration/ }).count()) !== 0) throw new Error("Apply still offered after the apply");
  await t.shot(page, "schema-history");
  await t.accessible(page, "schema history");

  t.step = "schema: roll back the latest migration (confirmation)";
  const firstGen = await page.getByTestId("migration").getAttribute("data-job");
  const firstApply = await job(page, "migrate_apply", "succeeded").getAttribute("data-id");
  await page.getByRole("button", { name: /^Roll back migration/ }).click();
  await job(page, "migrate_rollback", "succeeded").waitFor(WAIT);
  if (!asked.some((m) => m.includes("Roll back migration") && m.includes("dst/m"))) throw new Error(`no confirmation naming the rollback: ${asked}`);
  await page.getByTestId("history").locator('[data-status="rolled_back"]').waitFor(WAIT);

  t.step = "schema: generate and apply again";
  await page.getByRole("button", { name: "Generate migration" }).click();
  await page.locator(`[data-testid="migration"]:not([data-job="${firstGen}"])`).locator('[data-testid="verified"][data-value="true"]').waitFor(WAIT);
  await page.getByRole("button", { name: /^Apply migration to dst\/m/ }).click();
  await page.locator(`[data-testid="job-line"][data-kind="migrate_apply"][data-state="succeeded"]:not([data-id="${firstApply}"])`).waitFor(WAIT);
  await page.getByTestId("history").locator('[data-status="applied"]').waitFor(WAIT);
}

async function dataDiffPage(page) {
  t.step = "data diff: run on dd.t";
  await t.open(page, "Data diff");
  await page.locator("select#dd-src-server").selectOption("src");
  await page.locator("#dd-src-db").fill("dd");
  await page.locator("select#dd-dst-server").selectOption("dst");
  await page.locator("#dd-dst-db").fill("dd");
  await page.getByLabel(/^Tables/).fill("dd\\.t");
  await page.getByRole("button", { name: "Run data diff" }).click();
  await job(page, "data_diff", "succeeded").waitFor(WAIT);

  t.step = "data diff: the differing rows";
  await page.locator('[data-testid="dd-table-dd.t"][data-status="different"][data-differing="3"]').waitFor(WAIT);
  for (const [kind, key] of [["different", "id=3"], ["only_in_source", "id=5"], ["only_in_target", "id=99"]]) {
    await page.locator(`[data-testid="dd-row"][data-kind="${kind}"][data-key="${key}"]`).waitFor(WAIT);
  }
  await page.getByTestId("repair-sql").filter({ hasText: "`dd`.`t`" }).filter({ hasText: "n3" }).waitFor(WAIT);
  await t.shot(page, "datadiff-results");
  await t.accessible(page, "data diff");

  t.step = "data diff: download the repair SQL";
  const [download] = await Promise.all([page.waitForEvent("download", WAIT), page.getByRole("button", { name: "Download repair SQL" }).click()]);
  await download.saveAs(env("REPAIR_OUT"));
}

async function healthPage(page) {
  t.step = "health: run the checks of dst";
  await t.open(page, "Health");
  await page.locator("select#health-server").selectOption("dst");
  await page.getByRole("button", { name: "Run health checks" }).click();
  await job(page, "health", "succeeded").waitFor(WAIT);

  t.step = "health: the seeded failure with its evidence and suggestion";
  const fk = page.locator('[data-testid="check-foreign_keys"][data-status="fail"]');
  await fk.waitFor(WAIT);
  await fk.getByTestId("evidence").filter({ hasText: "42" }).waitFor(WAIT);
  await fk.getByTestId("suggestions").waitFor(WAIT);
  const idx = page.locator('[data-testid="check-indexes"][data-status="warn"]');
  await idx.getByTestId("evidence").filter({ hasText: "fk_parent" }).waitFor(WAIT);
  await t.shot(page, "health-failed");
  await t.accessible(page, "health");

  t.step = "health: preview the fix";
  await page.getByRole("button", { name: "Preview fixes" }).click();
  await job(page, "health_fix", "succeeded").waitFor(WAIT);
  await page.locator('[data-testid="fix"][data-check="indexes"][data-safe="true"]').filter({ hasText: "ADD INDEX" }).waitFor(WAIT);
  await t.shot(page, "health-fix-preview");
  await t.accessible(page, "health fix preview");

  t.step = "health: apply the safe fix (confirmation)";
  await page.getByRole("button", { name: /^Apply \d+ safe fix/ }).click();
  await page.locator('[data-testid="fix-applied"] [data-applied="true"]').filter({ hasText: "fk_parent_idx" }).waitFor(WAIT);
}

await t.run(async () => {
  const admin = await t.login(env("ADMIN_TOKEN"), "admin");
  await schemaPage(admin);
  await dataDiffPage(admin);
  await healthPage(admin);

  t.step = "dark theme and phone width";
  const dark = await t.login(env("ADMIN_TOKEN"), "admin", { colorScheme: "dark" });
  await t.open(dark, "Schema & migrations");
  await dark.getByTestId("schema-diff").waitFor(WAIT);
  await dark.getByTestId("migration").waitFor(WAIT);
  await t.shot(dark, "schema-dark");
  await t.accessible(dark, "schema (dark)");
  const phone = await t.login(env("ADMIN_TOKEN"), "admin", { viewport: { width: 390, height: 844 } });
  await t.open(phone, "Data diff");
  await phone.getByTestId("data-diff").waitFor(WAIT);
  await t.open(phone, "Schema & migrations");
  await phone.getByTestId("schema-diff").waitFor(WAIT);
  await t.shot(phone, "schema-phone");
  await t.accessible(phone, "schema (phone)");

  t.step = "viewer: results, no apply/rollback/fix control";
  const viewer = await t.login(env("VIEWER_TOKEN"), "viewer");
  const forbidden = /^(Apply|Roll back|Preview fixes|Run data diff|Run health checks|Download repair SQL)/;
  await t.open(viewer, "Schema & migrations");
  await viewer.getByTestId("migration").waitFor(WAIT);
  await viewer.locator("#dst-db").fill("m");
  await viewer.getByTestId("history").locator('[data-status="applied"]').waitFor(WAIT);
  await t.shot(viewer, "schema-viewer");
  const pages = [
    ["Schema & migrations", "migration"],
    ["Data diff", "data-diff"],
    ["Health", "health-report"],
  ];
  for (const [title, shown] of pages) {
    if (title !== "Schema & migrations") await t.open(viewer, title);
    if (title === "Health") await viewer.locator("select#health-server").selectOption("dst");
    await viewer.getByTestId(shown).first().waitFor(WAIT);
    const n = await viewer.getByRole("button", { name: forbidden }).count();
    if (n !== 0) throw new Error(`the viewer is offered ${n} destructive control(s) on ${title}`);
  }
  return "schema diff, VERIFIED migration applied, data diff with 3 rows and repair SQL, health failure and fix";
});
