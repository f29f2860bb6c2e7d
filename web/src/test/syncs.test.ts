// Unit tests of the Servers and Syncs pages' pure logic (src/pages/syncs-logic.ts).
import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import { EMPTY_SYNC, formOf, needsResnapshot, patterns, serverBody, snapshotProgress, splitUrlPassword, syncBody } from "../pages/syncs-logic";

describe("splitUrlPassword", () => {
  it("moves a password out of the URL, percent-decoded", () => {
    expect(splitUrlPassword("mysql://app:s%40cret@db1:3306")).toEqual({ url: "mysql://app@db1:3306", password: "s@cret" });
  });
  it("leaves a URL without a password alone", () => {
    expect(splitUrlPassword(" mysql://app@db1:3306 ")).toEqual({ url: "mysql://app@db1:3306", password: null });
    expect(splitUrlPassword("mysql://db1:3306")).toEqual({ url: "mysql://db1:3306", password: null });
  });
});

describe("serverBody", () => {
  it("create: name, url without the password, password field wins", () => {
    expect(serverBody({ name: " db9 ", url: "mysql://u:inurl@h:1", password: "typed", tls: "disabled" }, false)).toEqual({
      name: "db9",
      url: "mysql://u@h:1",
      password: "typed",
      tls: "disabled",
    });
    expect(serverBody({ name: "db9", url: "mysql://u:inurl@h:1", password: "", tls: "" }, false)).toEqual({ name: "db9", url: "mysql://u@h:1", password: "inurl" });
  });
  it("edit: no name, an empty password is left out (the stored one is kept)", () => {
    expect(serverBody({ name: "db9", url: "mysql://u@h:1", password: "", tls: "required" }, true)).toEqual({ url: "mysql://u@h:1", tls: "required" });
  });
});

describe("sync bodies", () => {
  it("patterns: lines or commas, trimmed", () => {
    expect(patterns(" a\\..*\n\n b\\.t , c ")).toEqual(["a\\..*", "b\\.t", "c"]);
  });
  it("incomplete form: nothing to send", () => {
    expect(syncBody({ ...EMPTY_SYNC, source: "src" })).toBeNull();
  });
  it("create: defaults left out", () => {
    expect(syncBody({ ...EMPTY_SYNC, name: "s2", source: "src", targets: ["db3"], include: "shop\\..*" })).toEqual({
      name: "s2",
      source: "src",
      targets: ["db3"],
      include: ["shop\\..*"],
    });
  });
  it("edit: keys the form does not show are kept, cleared ones removed", () => {
    const base = { name: "s2", source: "src", targets: ["db3"], include: ["a\\..*"], schedule: "0 * * * *", batch_rows: 500, create_missing: false };
    const form = { ...formOf(base), include: "", schedule: "", create_missing: true, name: "" };
    expect(syncBody(form, base)).toEqual({ source: "src", targets: ["db3"], batch_rows: 500 });
  });
  it("formOf reads a definition back", () => {
    expect(formOf({ name: "s2", source: "src", targets: ["a", "b"], include: ["x", "y"], apply_ddl: false })).toEqual({
      ...EMPTY_SYNC,
      name: "s2",
      source: "src",
      targets: ["a", "b"],
      include: "x\ny",
      apply_ddl: false,
    });
  });
});

describe("snapshotProgress", () => {
  it("uses the row estimate when there is one (capped below 100 while running)", () => {
    const p = snapshotProgress({ tables_done: 1, tables_total: 3, table: "app.b", rows: 2500, rows_estimate: 10000, eta_seconds: 12 });
    expect(p.percent).toBe(25);
    expect(p.words).toBe("1/3 tables · 2,500 of about 10,000 rows · copying app.b · ETA 12.0 s");
    expect(snapshotProgress({ tables_done: 2, tables_total: 3, rows: 20000, rows_estimate: 10000 }).percent).toBe(99);
  });
  it("falls back to tables without an estimate", () => {
    const p = snapshotProgress({ tables_done: 1, tables_total: 4, rows: 10, rows_estimate: null, eta_seconds: null });
    expect(p.percent).toBe(25);
    expect(p.words).toBe("1/4 tables · 10 rows");
  });
});

describe("needsResnapshot", () => {
  it("is the 409 whose field is resnapshot", () => {
    expect(needsResnapshot(new ApiError(409, "adds-tables", "x", "resnapshot"))).toBe(true);
    expect(needsResnapshot(new ApiError(409, "in-use", "x"))).toBe(false);
    expect(needsResnapshot(new Error("x"))).toBe(false);
  });
});
