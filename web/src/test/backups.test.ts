// Unit tests of the Backups and Export / Import pages' pure logic (Vitest, no DOM).
import { describe, expect, it } from "vitest";
import { formatOf, isGtid, localToUtc, patterns, problemWhere, size, tarFiles, tarList, verifiedWords } from "../pages/backups-logic";

const enc = new TextEncoder();

describe("tarFiles", () => {
  it("writes ustar entries that read back, padded to 512-byte blocks, with valid checksums", () => {
    const files = [
      { name: "export.json", data: enc.encode('{"format":"csv"}') },
      { name: "app.t.csv", data: enc.encode("id,v\r\n".repeat(200)) },
      { name: "empty.txt", data: new Uint8Array() },
    ];
    const tar = tarFiles(files, 1_700_000_000);
    expect(tar.length % 512).toBe(0);
    // header + data blocks of each, plus two zero blocks
    expect(tar.length).toBe(512 + 512 + (512 + Math.ceil(1200 / 512) * 512) + 512 + 1024);
    const back = tarList(tar);
    expect(back.map((f) => [f.name, f.size])).toEqual([
      ["export.json", 16],
      ["app.t.csv", 1200],
      ["empty.txt", 0],
    ]);
    expect(new TextDecoder().decode(back[1].data)).toBe("id,v\r\n".repeat(200));
    // The checksum field equals the sum of the header's bytes with the field as spaces.
    const h = tar.subarray(0, 512);
    const stored = parseInt(new TextDecoder().decode(h.subarray(148, 154)), 8);
    const copy = h.slice();
    copy.set(enc.encode("        "), 148);
    expect(stored).toBe(copy.reduce((a, b) => a + b, 0));
    expect(new TextDecoder().decode(h.subarray(257, 262))).toBe("ustar");
    expect(String.fromCharCode(h[156])).toBe("0");
    expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).toBe(true);
  });

  it("reads nothing from a file that is not a tar", () => {
    expect(tarList(enc.encode("plain text, not an archive ".repeat(40)))).toEqual([]);
    expect(tarList(new Uint8Array(1024))).toEqual([]);
  });

  it("refuses names that could not be a plain file of an export directory", () => {
    for (const name of ["a/b.csv", "", "x".repeat(101), "é.csv"]) {
      expect(() => tarFiles([{ name, data: new Uint8Array() }])).toThrow();
    }
  });
});

describe("restore wizard", () => {
  it("turns a local date-time into the restore's UTC time", () => {
    const local = "2026-11-21T14:05:09";
    const d = new Date(local);
    const expected = d.toISOString().slice(0, 19).replace("T", " ");
    expect(localToUtc(local)).toBe(expected);
    expect(localToUtc("2026-11-21T14:05")).toBe(new Date("2026-11-21T14:05").toISOString().slice(0, 19).replace("T", " "));
    expect(localToUtc("")).toBeNull();
    expect(localToUtc("yesterday")).toBeNull();
    expect(localToUtc("2026-13-45T99:00")).toBeNull();
  });

  it("accepts GTID positions only", () => {
    expect(isGtid("0-1-1234")).toBe(true);
    expect(isGtid(" 0-1-5,1-2-7 ")).toBe(true);
    expect(isGtid("0-1")).toBe(false);
    expect(isGtid("mysql-bin.000001:4")).toBe(false);
    expect(isGtid("")).toBe(false);
  });
});

describe("words", () => {
  it("sizes", () => {
    expect(size(812)).toBe("812 B");
    expect(size(4300)).toBe("4.2 KiB");
    expect(size(3 * 1024 * 1024)).toBe("3.0 MiB");
    expect(size(null)).toBe("–");
  });

  it("verified states", () => {
    expect(verifiedWords({ state: "never" })).toBe("Never verified");
    expect(verifiedWords({ state: "verified", at: "2026-01-01T00:00:00Z" })).toMatch(/^Verified /);
    expect(verifiedWords({ state: "failed", at: null, error: "sha256 mismatch" })).toBe("Verification failed: sha256 mismatch");
  });

  it("patterns, problems, formats", () => {
    expect(patterns(" app\\..* ,\n\nother\\.t \n")).toEqual(["app\\..*", "other\\.t"]);
    expect(problemWhere({ file: "app.t.csv", line: 4, row: 3, column: "v", message: "m", text: "t" })).toBe("app.t.csv, line 4 (row 3), column v");
    expect(problemWhere({ file: "export.json", line: null, message: "m", text: "t" })).toBe("export.json");
    expect(formatOf(["export.json", "app.t.schema.json", "app.t.csv"])).toBe("csv");
    expect(formatOf(["export.json", "app.t.jsonl"])).toBe("json");
    expect(formatOf(["export.json", "app.t.sql"])).toBe("sql");
    expect(formatOf(["export.json"])).toBeNull();
  });
});
