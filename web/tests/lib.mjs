// What every browser script shares: chromium (Debian's, driven by playwright-core), logging in
// with a token, axe-core, screenshots, and a step name reported when something fails.
//
// A script: `const t = await start("name")`, then `t.step = "..."` before each action, `await
// t.login(token, role)`, `await t.shot(page, "file")`, `await t.accessible(page, "what")`, and
// `await t.finish("summary")` at the end (fails on any console error or failed request, unless
// the script allowed it with `t.allow(/regex/)`). Wrap the body in `await t.run(async () => …)`.
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};

/** Every wait is on a condition, bounded by this. */
export const WAIT = { timeout: 60_000 };

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export async function start(name) {
  const url = env("DASH_URL");
  const shots = env("SCREENSHOTS");
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env("CHROMIUM", "/usr/bin/chromium"),
    // Root in CI containers: chromium's sandbox needs user namespaces that containers lack.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const errors = [];
  const allowed = [];
  const axeSummary = [];
  const t = {
    name,
    url,
    step: "starting",
    errors,
    /** A failed request or console error matching `re` does not fail the script (an expected 409). */
    allow(re) {
      allowed.push(re);
    },
    /** A new tab (1280x800, or `opts.viewport`, `opts.colorScheme`), logged in with `token`. */
    async login(token, role, opts = {}) {
      const context = await browser.newContext({
        viewport: opts.viewport ?? { width: 1280, height: 800 },
        colorScheme: opts.colorScheme ?? "light",
        acceptDownloads: true,
      });
      const page = await context.newPage();
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      page.on("response", (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.request().method()} ${r.url()}`));
      // Confirmations are accepted unless a script handles them itself (`page.removeAllListeners("dialog")`).
      page.on("dialog", (d) => d.accept());
      t.step = `${role}: opening ${url}`;
      await page.goto(url);
      if (opts.checkLogin) await t.accessible(page, "login");
      t.step = `${role}: logging in`;
      await page.getByLabel("API token").fill(token);
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByTestId("who").filter({ hasText: `(${role})` }).waitFor(WAIT);
      if (page.url().includes(token)) throw new Error("the token is in the page's URL");
      return page;
    },
    /** Open a page by its navigation link. */
    async open(page, title) {
      const was = t.step;
      t.step = `${was} (opening ${title})`;
      const link = page.getByRole("navigation").getByRole("link", { name: title, exact: true });
      const href = await link.getAttribute("href");
      await link.click();
      // The click's fragment navigation is a task of its own: wait for it, or a script's next
      // `location.hash = ...` (a deep link) can land first and be overwritten by it.
      if (href?.startsWith("#")) await page.waitForFunction((h) => location.hash === h, href, WAIT);
      t.step = was;
    },
    async shot(page, file) {
      await page.screenshot({ path: join(shots, `${file}.png`), fullPage: true });
    },
    /** axe-core on the page as it is: fails on any serious or critical violation. */
    async accessible(page, what) {
      const was = t.step;
      t.step = `${what}: accessibility (axe-core)`;
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
      t.step = was;
    },
    /** Runs the script's body; on failure prints the step and exits non-zero. */
    async run(body) {
      try {
        const summary = await body();
        const bad = errors.filter((e) => !allowed.some((re) => re.test(e)));
        if (bad.length) throw new Error(`browser console errors / failed requests: ${bad.join(" | ")}`);
        console.log(`${name}: ok (${summary ?? ""}; axe: ${axeSummary.join("; ")}; screenshots in ${shots})`);
      } catch (e) {
        console.error(`${name}: FAILED at "${t.step}": ${e.message}`);
        process.exitCode = 1;
      } finally {
        await browser.close();
      }
    },
  };
  return t;
}
