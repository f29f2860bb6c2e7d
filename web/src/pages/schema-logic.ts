// Pure logic of the Schema & migrations, Data diff and Health pages (no DOM; Vitest in
// src/test/schema.test.ts): grouping a schema diff per table, the differing rows of a data
// diff, a health check's evidence as readable lines, the side names the job routes take.

/** One difference of a schema diff (`SchemaDifference` of proto/src/jobs.rs). */
export type SchemaDifference = {
  database: string;
  object: string;
  table?: string | null;
  name: string;
  kind: string;
  source?: string | null;
  target?: string | null;
};

/** The differences of one table (or of the database itself: `table` null). */
export type TableGroup = { key: string; database: string; table: string | null; items: SchemaDifference[] };

const OBJECT_ORDER = ["table", "table_option", "column", "index", "foreign_key", "check", "partitioning", "trigger", "view", "database"];

/** The differences grouped per table (database-level ones first), in a stable order. */
export function groupByTable(diffs: SchemaDifference[]): TableGroup[] {
  const groups = new Map<string, TableGroup>();
  for (const d of diffs) {
    // A table-level difference names the table in `name`.
    const table = d.table ?? (d.object === "table" || d.object === "table_option" || d.object === "partitioning" ? d.name : null);
    const key = table === null ? d.database : `${d.database}.${table}`;
    const g = groups.get(key) ?? { key, database: d.database, table, items: [] };
    g.items.push(d);
    groups.set(key, g);
  }
  const rank = (o: string) => {
    const i = OBJECT_ORDER.indexOf(o);
    return i < 0 ? OBJECT_ORDER.length : i;
  };
  for (const g of groups.values()) g.items.sort((a, b) => rank(a.object) - rank(b.object) || a.name.localeCompare(b.name));
  return [...groups.values()].sort((a, b) => (a.table === null ? 0 : 1) - (b.table === null ? 0 : 1) || a.key.localeCompare(b.key));
}

/** A difference's kind in words, from the target's point of view. */
export function kindWords(kind: string): { words: string; tone: "good" | "warn" | "bad" | "idle" } {
  switch (kind) {
    case "only_in_source":
      return { words: "missing on the target (added by the migration)", tone: "warn" };
    case "only_in_target":
      return { words: "only on the target (removed by the migration)", tone: "bad" };
    case "changed":
      return { words: "changed", tone: "warn" };
    case "renamed":
      return { words: "renamed", tone: "warn" };
    case "moved":
      return { words: "moved", tone: "warn" };
    default:
      return { words: kind.replace(/_/g, " "), tone: "idle" };
  }
}

/** An object kind in words (`foreign_key` → `foreign key`). */
export function objectWords(object: string): string {
  return object === "partitioning" ? "partitions" : object.replace(/_/g, " ");
}

/** `server` + optional `database` as a job route's side: `src/app` or `src`. */
export function side(server: string, database: string): string {
  const db = database.trim();
  return db ? `${server}/${db}` : server;
}

/** One differing row of a data diff. */
export type DiffRow = { kind: "only_in_source" | "only_in_target" | "different"; words: string; key: string; columns: [string, string][] };

const ROW_WORDS: Record<DiffRow["kind"], string> = {
  only_in_source: "missing on the target",
  only_in_target: "only on the target",
  different: "values differ",
};

/** A JSON value in one short line (strings unquoted, null as NULL). */
export function valueText(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** The differing rows of one table of a data-diff report (keys are `{column: value}`). */
export function diffRows(t: { only_in_source?: unknown[]; only_in_target?: unknown[]; different?: unknown[] }): DiffRow[] {
  const out: DiffRow[] = [];
  for (const kind of ["different", "only_in_source", "only_in_target"] as const) {
    for (const k of t[kind] ?? []) {
      const columns: [string, string][] =
        k && typeof k === "object" && !Array.isArray(k)
          ? Object.entries(k as Record<string, unknown>).map(([c, v]) => [c, valueText(v)])
          : [["key", valueText(k)]];
      out.push({ kind, words: ROW_WORDS[kind], key: columns.map(([c, v]) => `${c}=${v}`).join(", "), columns });
    }
  }
  return out;
}

/** A health check's evidence as `path: value` lines (nested objects and lists flattened). */
export function evidenceLines(evidence: unknown, limit = 40): string[] {
  const lines: string[] = [];
  const walk = (v: unknown, path: string) => {
    if (lines.length >= limit) return;
    if (Array.isArray(v)) {
      if (v.length === 0) lines.push(`${path}: none`);
      else if (v.every((x) => x === null || typeof x !== "object")) lines.push(`${path}: ${v.map(valueText).join(", ")}`);
      else v.forEach((x, i) => walk(x, `${path}[${i + 1}]`));
    } else if (v && typeof v === "object") {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 0 && path) lines.push(`${path}: none`);
      for (const [k, x] of entries) walk(x, path ? `${path}.${k}` : k);
    } else {
      lines.push(path ? `${path}: ${valueText(v)}` : valueText(v));
    }
  };
  walk(evidence, "");
  return lines;
}

/** Badge tone of a health check status or overall verdict. */
export function healthTone(status: string): "good" | "warn" | "bad" | "idle" {
  if (status === "pass" || status === "healthy") return "good";
  if (status === "warn" || status === "degraded") return "warn";
  if (status === "fail" || status === "critical") return "bad";
  return "idle";
}

/** Checks sorted worst first (fail, warn, pass, skipped), then by name. */
export function worstFirst<T extends { status: string; name: string }>(checks: T[]): T[] {
  const rank: Record<string, number> = { fail: 0, warn: 1, pass: 2, skipped: 3 };
  return [...checks].sort((a, b) => (rank[a.status] ?? 4) - (rank[b.status] ?? 4) || a.name.localeCompare(b.name));
}

/** The fix statements a `--fix --dry-run` preview would run (its safe fixes). */
export function safeFixes(fixes: { check: string; sql: string; note?: string | null }[]): { check: string; sql: string }[] {
  return fixes.filter((f) => f.note === "dry run").map(({ check, sql }) => ({ check, sql }));
}
