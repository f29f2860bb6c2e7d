// Unit tests of the Schema / Data diff / Health pages' pure logic (Vitest, no DOM).
import { describe, expect, it } from "vitest";
import { diffRows, evidenceLines, groupByTable, healthTone, kindWords, safeFixes, side, worstFirst } from "../pages/schema-logic";

describe("groupByTable", () => {
  it("groups a schema diff per table, database-level first, columns before indexes", () => {
    const groups = groupByTable([
      { database: "app", object: "index", table: "items", name: "v_idx", kind: "only_in_source", source: "KEY v_idx (v)", target: null },
      { database: "app", object: "column", table: "items", name: "extra", kind: "only_in_target", source: null, target: "extra int(11)" },
      { database: "app", object: "table", name: "orders", kind: "only_in_source", source: "CREATE TABLE orders", target: null },
      { database: "app", object: "database", name: "app", kind: "changed", source: "utf8mb4", target: "latin1" },
    ]);
    expect(groups.map((g) => g.key)).toEqual(["app", "app.items", "app.orders"]);
    expect(groups[1].items.map((d) => d.name)).toEqual(["extra", "v_idx"]);
    expect(groups[2].table).toBe("orders");
  });

  it("says what a migration does about each kind", () => {
    expect(kindWords("only_in_source").words).toContain("added by the migration");
    expect(kindWords("only_in_target").tone).toBe("bad");
    expect(kindWords("something_new").words).toBe("something new");
  });
});

describe("side", () => {
  it("is SERVER or SERVER/DATABASE", () => {
    expect(side("src", " app ")).toBe("src/app");
    expect(side("src", "")).toBe("src");
  });
});

describe("diffRows", () => {
  it("lists differing rows by kind with their key columns", () => {
    const rows = diffRows({ only_in_source: [{ id: 3 }], only_in_target: [{ id: 9 }], different: [{ id: 1, k: "a" }, { id: 2, k: null }] });
    expect(rows.map((r) => [r.kind, r.key])).toEqual([
      ["different", "id=1, k=a"],
      ["different", "id=2, k=NULL"],
      ["only_in_source", "id=3"],
      ["only_in_target", "id=9"],
    ]);
    expect(rows[2].words).toBe("missing on the target");
    expect(diffRows({})).toEqual([]);
  });
});

describe("health", () => {
  it("flattens evidence into readable lines, bounded", () => {
    const lines = evidenceLines({ binlog_format: "STATEMENT", orphaned: [{ table: "hx.child", missing_parent_keys: [42, 43] }], none: [] });
    expect(lines).toEqual(["binlog_format: STATEMENT", "orphaned[1].table: hx.child", "orphaned[1].missing_parent_keys: 42, 43", "none: none"]);
    expect(evidenceLines({ a: Array.from({ length: 100 }, (_, i) => ({ i })) }, 5)).toHaveLength(5);
    expect(evidenceLines(null)).toEqual(["NULL"]);
  });

  it("orders checks worst first and picks the safe fixes of a preview", () => {
    const sorted = worstFirst([
      { name: "b", status: "pass" },
      { name: "a", status: "skipped" },
      { name: "c", status: "warn" },
      { name: "d", status: "fail" },
    ]);
    expect(sorted.map((c) => c.name)).toEqual(["d", "c", "b", "a"]);
    expect(healthTone("critical")).toBe("bad");
    expect(healthTone("skipped")).toBe("idle");
    expect(
      safeFixes([
        { check: "indexes", sql: "ALTER TABLE x ADD INDEX i (c)", note: "dry run" },
        { check: "binlog", sql: "SET GLOBAL binlog_format = ROW", note: "unsafe: review and run it yourself" },
      ]),
    ).toEqual([{ check: "indexes", sql: "ALTER TABLE x ADD INDEX i (c)" }]);
  });
});
