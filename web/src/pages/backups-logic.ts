// Pure logic of the Backups and Export / Import pages (unit-tested in src/test/backups.test.ts):
// a small tar writer for uploads, the restore wizard's point in time, sizes and problems in words.

/** One file of a tar archive. */
export type TarFile = { name: string; data: Uint8Array };

const BLOCK = 512;

/** `value` as a NUL-terminated octal field of `width` bytes. */
function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/**
 * A ustar archive of plain files (mode 0600), what `tar -cf` writes for them: one header
 * block per file, the data padded to 512 bytes, two zero blocks at the end. Names must be
 * plain ASCII names of at most 100 bytes without `/` (an export directory's files are).
 */
export function tarFiles(files: TarFile[], mtimeSeconds = 0): Uint8Array {
  const size = files.reduce((n, f) => n + BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK, 0) + 2 * BLOCK;
  const out = new Uint8Array(size);
  const enc = new TextEncoder();
  let at = 0;
  for (const f of files) {
    if (!/^[\x21-\x7e][\x20-\x7e]{0,99}$/.test(f.name) || f.name.includes("/")) {
      throw new Error(`${f.name}: a file name must be plain ASCII (no "/"), at most 100 characters`);
    }
    const h = out.subarray(at, at + BLOCK);
    const put = (offset: number, text: string) => h.set(enc.encode(text), offset);
    put(0, f.name);
    put(100, octal(0o600, 8));
    put(108, octal(0, 8));
    put(116, octal(0, 8));
    put(124, octal(f.data.length, 12));
    put(136, octal(Math.max(0, Math.floor(mtimeSeconds)), 12));
    put(148, "        "); // checksum: spaces while summing
    put(156, "0");
    put(257, "ustar\0");
    put(263, "00");
    const sum = h.reduce((a, b) => a + b, 0);
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    out.set(f.data, at + BLOCK);
    at += BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK;
  }
  return out;
}

/**
 * The files of a tar archive (ustar or GNU headers, sizes in octal): name, size, data. Stops
 * at the end blocks or at anything that does not parse (a picked file that is not a tar).
 */
export function tarList(tar: Uint8Array): { name: string; size: number; data: Uint8Array }[] {
  const dec = new TextDecoder();
  const out = [];
  let at = 0;
  while (at + BLOCK <= tar.length && tar[at] !== 0) {
    const h = tar.subarray(at, at + BLOCK);
    const name = dec.decode(h.subarray(0, 100)).replace(/\0.*$/s, "");
    const size = parseInt(dec.decode(h.subarray(124, 136)).replace(/\0.*$/s, "").trim(), 8);
    if (!Number.isFinite(size) || size < 0) break;
    out.push({ name, size, data: tar.slice(at + BLOCK, at + BLOCK + size) });
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

/** Two digits. */
const two = (n: number) => String(n).padStart(2, "0");

/**
 * A `<input type="datetime-local">` value (the browser's local time, `2026-11-21T14:05` or
 * with seconds) as the restore's `to_time`: `YYYY-MM-DD HH:MM:SS` in UTC. Null when empty or
 * not a date.
 */
export function localToUtc(value: string): string | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  return (
    `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`
  );
}

/** A GTID position as the restore takes it (`D-S-N[,D-S-N...]`). */
export function isGtid(value: string): boolean {
  return /^\d+-\d+-\d+(,\d+-\d+-\d+)*$/.test(value.trim());
}

/** Bytes as `812 B`, `4.2 KiB`, `1.3 MiB`, `2.0 GiB`. */
export function size(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A backup's last verification in words. */
export function verifiedWords(v: { state: string; at?: string | null; error?: string | null }): string {
  const when = v.at ? ` ${new Date(v.at).toLocaleString()}` : "";
  if (v.state === "verified") return `Verified${when}`;
  if (v.state === "failed") return `Verification failed${when}: ${v.error ?? "no reason recorded"}`;
  return "Never verified";
}

/** Patterns typed one per line or separated by commas, trimmed, empties dropped. */
export function patterns(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** An import problem as reported by the API (`ImportProblem`). */
export type ImportProblem = {
  file: string;
  line?: number | null;
  row?: number | null;
  column?: string | null;
  message: string;
  text: string;
};

/** Where a problem is: `app.t.csv line 3 (row 2), column v`. */
export function problemWhere(p: ImportProblem): string {
  const parts = [p.file];
  if (p.line !== null && p.line !== undefined) parts.push(`line ${p.line}${p.row ? ` (row ${p.row})` : ""}`);
  if (p.column) parts.push(`column ${p.column}`);
  return parts.join(", ");
}

/** The format an export directory's data files are in, from their names (null: unknown). */
export function formatOf(names: string[]): "sql" | "json" | "csv" | null {
  if (names.some((n) => n.endsWith(".csv"))) return "csv";
  if (names.some((n) => n.endsWith(".jsonl"))) return "json";
  if (names.some((n) => n.endsWith(".sql"))) return "sql";
  return null;
}
