// The Backups and Export / Import pages in a real browser, against a live `fleetsync run`
// started by the e2e test `api::dash_backups::backups_and_transfer_in_chromium`
// (tests/e2e/api/dash_backups.rs), which checks the results in SQL and in the downloads.
//
// Environment: DASH_URL, ADMIN_TOKEN, VIEWER_TOKEN, ROWS (rows of app.items on src), DOWNLOADS
// (a directory: backup.tar and export.tar are saved there), UPLOAD_FILES (the malformed
// export's files, one path a line), BAD_FILE/BAD_LINE/BAD_COLUMN (the problem the validation
// must report), SCREENSHOTS, CHROMIUM. Every wait is on a condition.
import { join } from "node:path";
import { env, start, WAIT } from "./lib.mjs";

const rows = env("ROWS");
const downloads = env("DOWNLOADS");
const t = await start("backups");

/** Clicks `button` and saves the download it starts as `file` in DOWNLOADS. */
async function download(page, button, file) {
  const [dl] = await Promise.all([page.waitForEvent("download", WAIT), button.click()]);
  await dl.saveAs(join(downloads, file));
}

/** Destructive or mutating controls of the two pages (none may be offered to a viewer). */
const CONTROLS = /^(Take backup|Verify|Restore…|Restore to .*|Delete schedule|Add schedule|Preview prune|Delete \d+ backup\(s\)|Export|Validate \(writes nothing\)|Import into .*)$/;

await t.run(async () => {
  const admin = await t.login(env("ADMIN_TOKEN"), "admin");
  await t.open(admin, "Backups");

  t.step = "admin: retention shown";
  await admin.getByTestId("retention").filter({ hasText: "keep the last 5 per server" }).waitFor(WAIT);

  t.step = "admin: take a backup of src (tables app\\..*)";
  await admin.locator("#bk-server").selectOption("src");
  await admin.getByLabel(/^Tables \(optional/).fill("app\\..*");
  await admin.getByRole("button", { name: "Take backup" }).click();
  await admin.locator('[data-testid="watch-backup_create"][data-state="succeeded"]').waitFor(WAIT);
  const row = admin.locator('tr[data-server="src"][data-status="complete"]');
  await row.waitFor(WAIT);
  const id = (await row.getAttribute("data-testid")).replace(/^backup-/, "");
  const shownRows = await row.locator("td[data-value]").getAttribute("data-value");
  if (shownRows !== rows) throw new Error(`backup ${id} lists ${shownRows} rows, expected ${rows}`);
  if ((await row.getAttribute("data-verified")) !== "never") throw new Error("a new backup is listed as verified");

  t.step = "admin: verify it";
  await row.getByRole("button", { name: "Verify", exact: true }).click();
  await admin.locator(`tr[data-testid="backup-${id}"][data-verified="verified"]`).waitFor(WAIT);
  await t.shot(admin, "backups-admin");
  await t.accessible(admin, "backups (admin)");

  t.step = "admin: download it";
  await download(admin, row.getByRole("button", { name: "Download", exact: true }), "backup.tar");

  t.step = "admin: restore wizard, step 1 (target dst, app renamed)";
  await row.getByRole("button", { name: "Restore…" }).click();
  const wizard = admin.getByRole("region", { name: "Restore wizard" });
  await wizard.waitFor(WAIT);
  await wizard.getByLabel("Target server", { exact: true }).selectOption("dst");
  await wizard.getByLabel(/^Rename databases/).fill("app=app_restored");
  t.step = "admin: restore wizard, step 2 (no point in time)";
  await wizard.getByLabel("The backup as it was taken").check();
  t.step = "admin: restore wizard, step 3 (dry run)";
  const restoreButton = wizard.getByRole("button", { name: "Restore to dst" });
  if (await restoreButton.count()) throw new Error("the restore is offered before the dry run");
  await wizard.getByRole("button", { name: "Plan the restore (dry run)" }).click();
  const plan = wizard.getByTestId("restore-plan");
  await plan.waitFor(WAIT);
  if ((await plan.getAttribute("data-rows")) !== rows) throw new Error(`the plan restores ${await plan.getAttribute("data-rows")} rows`);
  await plan.getByText("app.items").first().waitFor(WAIT);
  await plan.getByText("app_restored.items").waitFor(WAIT);
  await t.shot(admin, "backups-restore-plan");
  await t.accessible(admin, "restore wizard");
  t.step = "admin: restore wizard, step 4 (typed confirmation, run)";
  if (await restoreButton.isEnabled()) throw new Error("the restore runs without the typed confirmation");
  await wizard.getByLabel(/^Type the target server's name/).fill("dst");
  await restoreButton.click();
  await wizard.locator('[data-testid="watch-backup_restore"][data-state="succeeded"]').nth(1).waitFor(WAIT);

  t.step = "admin: a backup schedule";
  await admin.getByLabel("Schedule name").fill("ui-nightly");
  await admin.getByLabel(/^Cron/).fill("0 3 * * *");
  await admin.getByRole("button", { name: "Add schedule" }).click();
  await admin.getByTestId("schedule-ui-nightly").waitFor(WAIT);
  t.step = "admin: prune preview (one backup, keep_last 5: nothing to delete)";
  await admin.getByRole("button", { name: "Preview prune" }).click();
  const prune = admin.getByTestId("prune-plan");
  await prune.waitFor(WAIT);
  if ((await prune.getAttribute("data-count")) !== "0") throw new Error("the prune would delete a backup");

  t.step = "admin: export app.* as CSV";
  await t.open(admin, "Export / Import");
  const exp = admin.getByRole("region", { name: "Export", exact: true });
  await exp.getByLabel("Server").selectOption("src");
  await exp.getByLabel(/^Tables to export/).fill("app\\..*");
  await exp.getByLabel("Format").selectOption("csv");
  await exp.getByRole("button", { name: "Export", exact: true }).click();
  const result = exp.getByTestId("export-result");
  await result.waitFor(WAIT);
  if ((await result.getAttribute("data-rows")) !== rows) throw new Error(`the export has ${await result.getAttribute("data-rows")} rows`);
  await t.shot(admin, "transfer-export");
  await download(admin, exp.getByRole("button", { name: "Download all (tar)" }), "export.tar");

  t.step = "admin: upload a malformed export, validation report";
  const imp = admin.getByRole("region", { name: "Import", exact: true });
  await imp.getByLabel(/^Export files/).setInputFiles(env("UPLOAD_FILES").split("\n"));
  await imp.getByLabel("Target server", { exact: true }).selectOption("dst");
  await imp.getByLabel(/^Rename databases/).fill("app=app_bad");
  await imp.getByRole("button", { name: "Validate (writes nothing)" }).click();
  const report = imp.getByTestId("import-validation");
  await report.waitFor(WAIT);
  const problem = report.locator(
    `[data-testid="import-problem"][data-file="${env("BAD_FILE")}"][data-line="${env("BAD_LINE")}"][data-column="${env("BAD_COLUMN")}"]`,
  );
  await problem.waitFor(WAIT);
  if (await imp.getByRole("button", { name: /^Import into/ }).count()) throw new Error("an import is offered despite the problems");
  await t.shot(admin, "transfer-validation");
  await t.accessible(admin, "export / import (admin)");

  t.step = "admin: upload the downloaded export tar, validate, import on confirmation";
  await imp.getByLabel(/^Export files/).setInputFiles(join(downloads, "export.tar"));
  await imp.getByLabel("Format").locator("option", { hasText: "From the file names (CSV)" }).waitFor({ ...WAIT, state: "attached" });
  await imp.getByLabel(/^Rename databases/).fill("app=app_imported");
  await imp.getByRole("button", { name: "Validate (writes nothing)" }).click();
  const valid = imp.locator('[data-testid="import-validation"][data-errors="0"]');
  await valid.waitFor(WAIT);
  if ((await valid.getAttribute("data-rows")) !== rows) throw new Error(`the validation counts ${await valid.getAttribute("data-rows")} rows`);
  await imp.getByRole("button", { name: "Import into dst" }).click();
  const imported = imp.locator('[data-testid="import-result"][data-errors="0"]');
  await imported.waitFor(WAIT);
  if ((await imported.getAttribute("data-rows")) !== rows) throw new Error(`the import loaded ${await imported.getAttribute("data-rows")} rows`);

  t.step = "dark theme";
  const dark = await t.login(env("ADMIN_TOKEN"), "admin", { colorScheme: "dark" });
  await t.open(dark, "Backups");
  await dark.locator(`tr[data-testid="backup-${id}"]`).waitFor(WAIT);
  await t.shot(dark, "backups-dark");
  await t.accessible(dark, "backups (dark)");

  t.step = "phone width";
  const phone = await t.login(env("ADMIN_TOKEN"), "admin", { viewport: { width: 390, height: 844 } });
  await t.open(phone, "Backups");
  await phone.locator(`tr[data-testid="backup-${id}"]`).waitFor(WAIT);
  await t.shot(phone, "backups-phone");

  t.step = "viewer: no backup, restore, prune or import control";
  const viewer = await t.login(env("VIEWER_TOKEN"), "viewer");
  await t.open(viewer, "Backups");
  await viewer.getByTestId("backups-denied").waitFor(WAIT);
  await viewer.getByTestId("schedule-ui-nightly").waitFor(WAIT);
  const offered = async (what) => {
    t.step = `viewer: no mutating control on ${what}`;
    const names = await viewer.getByRole("button").allInnerTexts();
    const bad = names.filter((n) => CONTROLS.test(n.trim()));
    if (bad.length) throw new Error(`the viewer is offered ${bad.join(", ")} on ${what}`);
    return names.length;
  };
  await offered("Backups");
  await t.shot(viewer, "backups-viewer");
  await t.accessible(viewer, "backups (viewer)");
  await t.open(viewer, "Export / Import");
  await viewer.getByTestId("transfer-denied").waitFor(WAIT);
  if (await viewer.locator("input[type=file]").count()) throw new Error("the viewer is offered an upload");
  await offered("Export / Import");
  await t.shot(viewer, "transfer-viewer");
  await t.accessible(viewer, "export / import (viewer)");
  return `backup ${id} verified, downloaded, restored to dst as app_restored after its dry run; CSV export downloaded; malformed upload refused with ${env("BAD_FILE")} line ${env("BAD_LINE")} column ${env("BAD_COLUMN")}; the downloaded export imported as app_imported`;
});
