// The Servers and Syncs pages in a real browser, against a live `fleetsync run` started by the
// e2e test `api::dash_syncs::servers_and_syncs_in_chromium` (tests/e2e/api/dash_syncs.rs),
// which keeps writing rows to shop.orders on the source meanwhile.
//
// Environment: DASH_URL, ADMIN_TOKEN, VIEWER_TOKEN, SERVER (the new server's name), SERVER_URL
// (its URL with the password in it), SERVER_PASSWORD, BAD_URL + BAD_PASSWORD (a wrong
// password), SYNC (the new sync's name), SCREENSHOTS, CHROMIUM.
import { env, start, WAIT } from "./lib.mjs";

const server = env("SERVER");
const sync = env("SYNC");
const password = env("SERVER_PASSWORD");
const t = await start("syncs");
// The widened filter of the edit is refused with a 409 (shown in words, then saved with a
// re-snapshot): that refused request is expected.
t.allow(/409 PUT .*\/api\/v1\/syncs\//);
t.allow(/status of 409/);
// Deleting the server the new sync uses is refused (409, shown in words).
t.allow(/409 DELETE .*\/api\/v1\/servers\//);

const target = (page) => page.getByTestId(`target-${sync}-${server}`);
const state = (page, s) => target(page).locator(`[data-testid="state"][data-state="${s}"]`);
const rowsApplied = async (page) => Number(await target(page).getByTestId("rows-applied").getAttribute("data-value"));

async function rowsMove(page, what) {
  t.step = `${what}: rows applied move`;
  const before = await rowsApplied(page);
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.getAttribute("data-value")) > n,
    [`[data-testid="target-${sync}-${server}"] [data-testid="rows-applied"]`, before],
    WAIT,
  );
}

async function addServer(page, name, url, pw) {
  t.step = `admin: add server ${name}`;
  await page.getByRole("button", { name: "Add server" }).click();
  const form = page.getByTestId("server-form");
  await form.getByLabel("Name", { exact: true }).fill(name);
  await form.getByLabel("URL", { exact: true }).fill(url);
  await form.getByLabel("URL", { exact: true }).press("Tab");
  if (pw !== null) await form.getByLabel("Password", { exact: true }).fill(pw);
  await form.getByLabel("TLS").selectOption("disabled");
  const shown = await form.getByLabel("URL", { exact: true }).inputValue();
  if (shown.includes(password)) throw new Error(`the URL field still shows the password: ${shown}`);
  await form.getByRole("button", { name: "Save server" }).click();
  await page.getByTestId(`server-${name}`).waitFor(WAIT);
  const text = await page.getByTestId(`server-${name}`).textContent();
  if (text.includes(password) || (pw && text.includes(pw))) throw new Error("the server's row shows its password");
}

async function testServer(page, name) {
  t.step = `admin: test connection of ${name}`;
  await page.getByTestId(`server-${name}`).getByRole("button", { name: "Test connection" }).click();
  const result = page.getByTestId(`test-${name}`);
  await result.getByTestId("check-connect").waitFor(WAIT);
  return result;
}

await t.run(async () => {
  const admin = await t.login(env("ADMIN_TOKEN"), "admin", { checkLogin: true });
  await t.open(admin, "Servers");
  await admin.getByTestId("server-src").waitFor(WAIT);
  if ((await admin.getByTestId("server-src").getAttribute("data-origin")) !== "file") throw new Error("src is not shown as a file server");
  if ((await admin.getByTestId("server-src").getByRole("button", { name: "Delete" }).count()) !== 0) throw new Error("a file server offers Delete");

  await addServer(admin, server, env("SERVER_URL"), null);
  const ok = await testServer(admin, server);
  t.step = "admin: every check of the new server is ok";
  await ok.locator('[data-testid="check-binlog"]').waitFor(WAIT);
  const failed = await ok.locator('[data-ok="false"]').count();
  if (failed !== 0) throw new Error(`checks failed: ${await ok.textContent()}`);
  await t.shot(admin, "servers-test-ok");
  await t.accessible(admin, "servers");

  await addServer(admin, "wrongpw", env("BAD_URL"), env("BAD_PASSWORD"));
  const bad = await testServer(admin, "wrongpw");
  t.step = "admin: the wrong password's check failed, in words";
  await bad.locator('[data-testid="check-connect"][data-ok="false"]').waitFor(WAIT);
  const words = await bad.getByTestId("check-connect").textContent();
  if (!/access denied/i.test(words)) throw new Error(`the failed check does not say why: ${words}`);
  if (words.includes(env("BAD_PASSWORD"))) throw new Error("the failed check shows the password");
  await t.shot(admin, "servers-test-failed");
  t.step = "admin: delete the wrong server (confirmed)";
  await admin.getByTestId("server-wrongpw").getByRole("button", { name: "Delete" }).click();
  await admin.getByTestId("server-wrongpw").waitFor({ ...WAIT, state: "detached" });

  await t.open(admin, "Syncs");
  t.step = "admin: new sync form and its preview";
  await admin.getByTestId("sync-s1").waitFor(WAIT);
  await admin.getByRole("button", { name: "New sync" }).click();
  const form = admin.getByTestId("sync-form");
  await form.getByLabel("Name", { exact: true }).fill(sync);
  await form.getByLabel("Source").selectOption("src");
  await form.getByLabel(server, { exact: true }).check();
  await form.getByLabel("Include tables").fill("shop\\.(orders|events)");
  const preview = form.getByTestId("preview");
  await preview.locator('[data-table="shop.events"][data-keyless="true"]').waitFor(WAIT);
  const listed = await preview.getByTestId("preview-table").evaluateAll((els) => els.map((e) => e.getAttribute("data-table")).sort());
  if (JSON.stringify(listed) !== JSON.stringify(["shop.events", "shop.orders"])) throw new Error(`the preview lists ${listed}`);
  if ((await preview.locator('[data-table="shop.orders"]').getAttribute("data-keyless")) !== "false") throw new Error("shop.orders shown as keyless");
  const onTarget = await preview.getByTestId(`preview-target-${server}`).textContent();
  if (!onTarget.includes("2 to create")) throw new Error(`the preview's target line: ${onTarget}`);
  await t.shot(admin, "syncs-preview");
  await t.accessible(admin, "syncs form");

  t.step = "admin: save the sync; rows arrive";
  await form.getByRole("button", { name: "Save sync" }).click();
  await state(admin, "streaming").waitFor(WAIT);
  await admin.waitForFunction(
    (sel) => Number(document.querySelector(sel)?.getAttribute("data-value")) > 0,
    `[data-testid="target-${sync}-${server}"] [data-testid="rows-applied"]`,
    WAIT,
  );
  await rowsMove(admin, "new sync");
  await t.shot(admin, "syncs-streaming");
  await t.accessible(admin, "syncs");

  const card = admin.getByTestId(`sync-${sync}`);
  t.step = "admin: pause";
  await card.getByRole("button", { name: "Pause" }).click();
  await card.locator('[data-testid="control"][data-control="paused"]').waitFor(WAIT);
  await state(admin, "paused").waitFor(WAIT);
  await t.shot(admin, "syncs-paused");
  t.step = "admin: resume";
  await card.getByRole("button", { name: "Resume" }).click();
  await card.locator('[data-testid="control"][data-control="running"]').waitFor(WAIT);
  await state(admin, "streaming").waitFor(WAIT);
  await rowsMove(admin, "resumed");

  t.step = "admin: edit with a wider filter: refused in words, then saved with a re-snapshot";
  await card.getByRole("button", { name: "Edit" }).click();
  const edit = admin.getByTestId("sync-form");
  await edit.getByLabel("Include tables").fill("shop\\..*");
  await edit.getByTestId("preview").locator('[data-table="shop.archive"]').filter({ hasText: "needs a re-snapshot" }).waitFor(WAIT);
  if ((await edit.getByTestId("preview").locator('[data-table="shop.orders"]').filter({ hasText: "needs a re-snapshot" }).count()) !== 0)
    throw new Error("shop.orders marked as new");
  await edit.getByRole("button", { name: "Save sync" }).click();
  const widened = edit.locator(".resnapshot");
  await widened.filter({ hasText: "shop.archive" }).waitFor(WAIT);
  await t.shot(admin, "syncs-widened");
  await widened.getByRole("button", { name: "Save and re-snapshot" }).click();
  await edit.waitFor({ ...WAIT, state: "detached" });
  t.step = "admin: the re-snapshot's progress (shop.bulk takes seconds to copy)";
  const snap = target(admin).getByTestId("snapshot");
  await snap.filter({ hasText: /tables · [1-9][\d,]* of about [\d,]+ rows/ }).waitFor(WAIT);
  await target(admin).locator("progress").waitFor(WAIT);
  await t.shot(admin, "syncs-snapshot-progress");
  await state(admin, "streaming").waitFor(WAIT);

  t.step = "admin: re-snapshot (confirmed)";
  admin.removeAllListeners("dialog");
  const dialog = admin.waitForEvent("dialog", WAIT);
  await card.getByRole("button", { name: "Re-snapshot" }).click();
  const asked = await dialog;
  const question = asked.message();
  await asked.accept();
  admin.on("dialog", (d) => d.accept());
  if (!/Re-snapshot .*reloaded/.test(question)) throw new Error(`the confirmation did not say what happens: ${question}`);
  await state(admin, "streaming").waitFor(WAIT);
  if ((await admin.getByTestId("notice").count()) !== 0) throw new Error(await admin.getByTestId("notice").textContent());
  await rowsMove(admin, "after the re-snapshot");

  const applied = await rowsApplied(admin);
  t.step = "admin: deleting the server a sync uses is refused, in words";
  await t.open(admin, "Servers");
  await admin.getByTestId(`server-${server}`).getByRole("button", { name: "Delete" }).click();
  await admin.getByTestId("notice").filter({ hasText: sync }).waitFor(WAIT);
  await admin.getByTestId(`server-${server}`).waitFor(WAIT);

  const dark = await t.login(env("ADMIN_TOKEN"), "admin", { colorScheme: "dark" });
  await t.open(dark, "Syncs");
  await state(dark, "streaming").waitFor(WAIT);
  await t.shot(dark, "syncs-dark");
  await t.accessible(dark, "syncs (dark)");

  const viewer = await t.login(env("VIEWER_TOKEN"), "viewer");
  await t.open(viewer, "Servers");
  t.step = "viewer: the servers, no control";
  await viewer.getByTestId(`server-${server}`).waitFor(WAIT);
  for (const name of ["Add server", "Test connection", "Edit", "Delete"]) {
    const n = await viewer.getByRole("button", { name, exact: true }).count();
    if (n !== 0) throw new Error(`the viewer sees ${n} ${name} button(s) on Servers`);
  }
  await t.shot(viewer, "servers-viewer");
  await t.open(viewer, "Syncs");
  t.step = "viewer: the syncs, no control";
  await state(viewer, "streaming").waitFor(WAIT);
  for (const name of ["New sync", "Pause", "Resume", "Cancel", "Run once", "Re-snapshot", "Edit", "Delete"]) {
    const n = await viewer.getByRole("button", { name, exact: true }).count();
    if (n !== 0) throw new Error(`the viewer sees ${n} ${name} button(s) on Syncs`);
  }
  await t.shot(viewer, "syncs-viewer");
  await t.accessible(viewer, "syncs (viewer)");
  t.step = "phone width";
  await viewer.setViewportSize({ width: 390, height: 844 });
  await state(viewer, "streaming").waitFor(WAIT);
  await t.shot(viewer, "syncs-phone");
  await t.open(viewer, "Servers");
  await viewer.getByTestId(`server-${server}`).waitFor(WAIT);
  await t.shot(viewer, "servers-phone");

  return `rows applied on ${server} after the re-snapshot: ${applied}`;
});
