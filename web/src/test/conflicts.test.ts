// The Conflicts page's pure logic (Vitest, no DOM).
import { describe, expect, it } from "vitest";
import { compare, conflictHref, fieldOf, filterLocal, keyWords, mergedRow, mergedValue, same, selected, show } from "../pages/conflicts-logic";

describe("compare", () => {
  it("marks the columns that differ and what each side changed", () => {
    const cols = compare({ id: 1, v: "a", n: 1 }, { id: 1, v: "b", n: 1 }, { id: 1, v: "c", n: 2 });
    const by = Object.fromEntries(cols.map((c) => [c.column, c]));
    expect(cols.map((c) => c.column)).toEqual(["id", "v", "n"]);
    expect(by.id).toMatchObject({ differs: false, incomingChanged: false, localChanged: false });
    expect(by.v).toMatchObject({ differs: true, incomingChanged: true, localChanged: true });
    expect(by.n).toMatchObject({ differs: true, incomingChanged: false, localChanged: true });
  });

  it("handles absent rows and an unrecorded before image", () => {
    // Incoming deleted the row; local still has it; before not recorded.
    const cols = compare(undefined, null, { id: 1, v: "x" });
    expect(cols.every((c) => c.differs)).toBe(true);
    expect(cols.some((c) => c.incomingChanged || c.localChanged)).toBe(false);
    // The change created the row (before null) and the target has another row.
    const ins = compare(null, { id: 1, v: "a" }, { id: 1, v: "a" });
    expect(ins.every((c) => !c.differs && c.incomingChanged && c.localChanged)).toBe(true);
  });

  it("compares JSON values deeply, key order ignored", () => {
    expect(same({ a: [1, { b: 2 }], c: null }, { c: null, a: [1, { b: 2 }] })).toBe(true);
    expect(same({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(same(1, "1")).toBe(false);
    expect(show(null)).toBe("NULL");
    expect(show({ a: 1 })).toBe('{"a":1}');
  });
});

describe("filters and links", () => {
  const list = [
    { target: "dst", id: 1, origin: "src", detected_at: "2026-01-31 13:45:00.000001", schema: "app", table: "t" },
    { target: "dst", id: 2, origin: "other", detected_at: "2026-02-01 00:00:00.000000", schema: "app", table: "t" },
  ];
  it("filters by origin and a half-open time range", () => {
    expect(filterLocal(list, { origin: "src", from: "", to: "" }).map((c) => c.id)).toEqual([1]);
    expect(filterLocal(list, { origin: "", from: "2026-01-31T13:45", to: "2026-02-01T00:00" }).map((c) => c.id)).toEqual([1]);
    expect(filterLocal(list, { origin: "", from: "2026-02-01T00:00", to: "" }).map((c) => c.id)).toEqual([2]);
  });
  it("deep links round-trip", () => {
    expect(conflictHref("d st", 7)).toBe("#/conflicts/d%20st/7");
    expect(selected(["d st", "7"])).toEqual({ target: "d st", id: 7 });
    expect(selected(["dst"])).toBeNull();
    expect(selected(["dst", "x"])).toBeNull();
    expect(keyWords({ id: 7, k: "a" })).toBe("id=7, k=a");
  });
});

describe("merged row", () => {
  it("keeps a side's typed value, parses numbers and JSON, honours NULL", () => {
    expect(mergedValue({ text: "7", isNull: false }, [7, "x"])).toBe(7);
    expect(mergedValue({ text: "8", isNull: false }, [7, 6])).toBe(8);
    expect(mergedValue({ text: "8", isNull: false }, ["7"])).toBe("8");
    expect(mergedValue({ text: '{"a":2}', isNull: false }, [{ a: 1 }])).toEqual({ a: 2 });
    expect(mergedValue({ text: "{bad", isNull: false }, [{ a: 1 }])).toBe("{bad");
    expect(mergedValue({ text: "x", isNull: true }, ["x"])).toBeNull();
    expect(fieldOf(null)).toEqual({ text: "", isNull: true });
    expect(fieldOf(3)).toEqual({ text: "3", isNull: false });
  });
  it("builds every column of the form", () => {
    const cols = compare({ id: 1, v: "a", n: 1 }, { id: 1, v: "b", n: 1 }, { id: 1, v: "c", n: 2 });
    const row = mergedRow(cols, { id: fieldOf(1), v: { text: "mine", isNull: false }, n: fieldOf(2) });
    expect(row).toEqual({ id: 1, v: "mine", n: 2 });
  });
});
