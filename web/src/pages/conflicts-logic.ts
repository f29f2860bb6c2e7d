// The Conflicts page's pure logic: the three-way comparison of a parked conflict, the
// client-side filters (origin, detection time), a merged row's values, the deep link.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Row = { [column: string]: Json } | null;

/** A value as shown in a cell: NULL, text as it is, anything else as JSON. */
export function show(v: Json | undefined): string {
  if (v === undefined || v === null) return "NULL";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Same value (deep, key order ignored). */
export function same(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  const oa = a as Record<string, Json>;
  const ob = b as Record<string, Json>;
  return ka.length === kb.length && ka.every((k) => k in ob && same(oa[k], ob[k]));
}

/** One column of the three-way view. `before` is undefined when it was not recorded. */
export type Compared = {
  column: string;
  before: Json | undefined;
  incoming: Json | undefined;
  local: Json | undefined;
  /** Incoming and local hold different values (a row absent on one side differs). */
  differs: boolean;
  /** The incoming side changed it from the before image (false when no before image). */
  incomingChanged: boolean;
  localChanged: boolean;
};

function cell(row: Row | undefined, column: string): Json | undefined {
  return row ? row[column] : undefined;
}

/**
 * The columns of the three images, in the order they first appear (before, incoming, local),
 * each compared. `before` undefined = not recorded; null = the incoming change created the row.
 */
export function compare(before: Row | undefined, incoming: Row, local: Row): Compared[] {
  const columns: string[] = [];
  for (const r of [before, incoming, local]) for (const k of Object.keys(r ?? {})) if (!columns.includes(k)) columns.push(k);
  return columns.map((column) => {
    const b = cell(before, column);
    const i = cell(incoming, column);
    const l = cell(local, column);
    const differs = (incoming === null) !== (local === null) || !same(i, l);
    const changed = (side: Row, v: Json | undefined) =>
      before !== undefined && ((before === null) !== (side === null) || !same(b, v));
    return { column, before: b, incoming: i, local: l, differs, incomingChanged: changed(incoming, i), localChanged: changed(local, l) };
  });
}

export type ConflictLike = { target: string; id: number; origin: string; detected_at: string; schema: string; table: string };

/** `2026-01-31T13:45` / `2026-01-31 13:45:00.123` → comparable text (space separator, no Z). */
export function normalTime(t: string): string {
  return t.trim().replace(/Z$/, "").replace("T", " ");
}

export type LocalFilter = { origin: string; from: string; to: string };

/** The filters the listing API lacks: origin, from ≤ detected_at < to (as listed, server time). */
export function filterLocal<C extends ConflictLike>(list: C[], f: LocalFilter): C[] {
  const from = f.from ? normalTime(f.from) : "";
  const to = f.to ? normalTime(f.to) : "";
  return list.filter(
    (c) =>
      (!f.origin.trim() || c.origin === f.origin.trim()) &&
      (!from || normalTime(c.detected_at) >= from) &&
      (!to || normalTime(c.detected_at) < to),
  );
}

/** The deep link of a conflict. */
export function conflictHref(target: string, id: number | string): string {
  return `#/conflicts/${encodeURIComponent(target)}/${encodeURIComponent(String(id))}`;
}

/** The conflict a sub-path names (`["dst", "7"]`), or null. */
export function selected(sub: string[]): { target: string; id: number } | null {
  if (sub.length < 2 || !/^\d+$/.test(sub[1])) return null;
  return { target: sub[0], id: Number(sub[1]) };
}

/** One field of the merged-row form: the text typed, or NULL. */
export type MergedField = { text: string; isNull: boolean };

/** A form field prefilled from a value. */
export function fieldOf(v: Json | undefined): MergedField {
  if (v === undefined || v === null) return { text: "", isNull: true };
  return { text: typeof v === "string" ? v : JSON.stringify(v), isNull: false };
}

/**
 * The JSON value of a merged field: NULL; the value of a side when the text shows it exactly
 * (so a side's number stays a number); a number when the sides hold numbers and the text is
 * one; JSON when the sides hold objects/arrays and the text parses; else the text.
 */
export function mergedValue(f: MergedField, sides: (Json | undefined)[]): Json {
  if (f.isNull) return null;
  for (const s of sides) if (s !== undefined && s !== null && show(s) === f.text) return s;
  const kinds = sides.filter((s) => s !== undefined && s !== null).map((s) => (Array.isArray(s) ? "object" : typeof s));
  if (kinds.includes("number") && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(f.text.trim())) return Number(f.text.trim());
  if (kinds.includes("object")) {
    try {
      return JSON.parse(f.text) as Json;
    } catch {
      return f.text;
    }
  }
  return f.text;
}

/** The merged row of a form: every column, in the order of `columns`. */
export function mergedRow(columns: Compared[], fields: Record<string, MergedField>): Record<string, Json> {
  const row: Record<string, Json> = {};
  for (const c of columns) {
    const f = fields[c.column];
    if (f) row[c.column] = mergedValue(f, [c.incoming, c.local, c.before]);
  }
  return row;
}

/** A key object as `id=7, b=x`. */
export function keyWords(key: unknown): string {
  if (key && typeof key === "object") return Object.entries(key as Record<string, Json>).map(([k, v]) => `${k}=${show(v)}`).join(", ");
  return show(key as Json);
}
