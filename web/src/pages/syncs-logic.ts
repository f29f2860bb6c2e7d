// Pure logic of the Servers and Syncs pages (unit-tested in src/test/syncs.test.ts, no DOM):
// the bodies sent to the definition routes, filter patterns, snapshot progress in words.
import { ApiError, problemText } from "../api/client";
import { duration } from "../format";

/** The server form. `password` empty: none on create, keep the stored one on edit. */
export type ServerForm = { name: string; url: string; password: string; tls: string };

/**
 * A URL with a password in it (`mysql://u:secret@h:3306`) split into the URL without it and the
 * password (percent-decoded): the API refuses passwords in URLs (they would be shown back).
 */
export function splitUrlPassword(url: string): { url: string; password: string | null } {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^:@/]*):([^@/]*)@(.*)$/i.exec(url.trim());
  if (!m) return { url: url.trim(), password: null };
  let password = m[3];
  try {
    password = decodeURIComponent(m[3]);
  } catch {
    // Not percent-encoded: as typed.
  }
  return { url: `${m[1]}${m[2]}@${m[4]}`, password };
}

/** The body of `POST /servers` (`editing`: `PUT /servers/{name}`, no name, empty password kept). */
export function serverBody(form: ServerForm, editing: boolean) {
  const split = splitUrlPassword(form.url);
  const password = form.password !== "" ? form.password : split.password;
  const body: { name?: string; url: string; password?: string; tls?: string } = { url: split.url };
  if (!editing) body.name = form.name.trim();
  if (password) body.password = password;
  if (form.tls) body.tls = form.tls;
  return body;
}

/** Patterns typed one per line (or comma-separated): trimmed, empties dropped. */
export function patterns(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

/** The sync form (the fields of a `[[syncs]]` entry the page edits). */
export type SyncForm = {
  name: string;
  source: string;
  targets: string[];
  include: string;
  exclude: string;
  schedule: string;
  conflict: string;
  create_missing: boolean;
  apply_ddl: boolean;
};

export const EMPTY_SYNC: SyncForm = {
  name: "",
  source: "",
  targets: [],
  include: "",
  exclude: "",
  schedule: "",
  conflict: "",
  create_missing: true,
  apply_ddl: true,
};

type Fields = Record<string, unknown>;

/** The form of an existing sync's definition (`GET /syncs/{name}/definition`'s fields). */
export function formOf(fields: Fields): SyncForm {
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  return {
    name: String(fields.name ?? ""),
    source: String(fields.source ?? ""),
    targets: list(fields.targets),
    include: list(fields.include).join("\n"),
    exclude: list(fields.exclude).join("\n"),
    schedule: typeof fields.schedule === "string" ? fields.schedule : "",
    conflict: typeof fields.conflict === "string" ? fields.conflict : "",
    create_missing: fields.create_missing !== false,
    apply_ddl: fields.apply_ddl !== false,
  };
}

/**
 * The body of `POST /syncs` / `PUT /syncs/{name}`: the form over `base` (the stored fields of
 * an edited sync, so the keys the form does not show are kept); empty optional fields are
 * left out (their defaults). `null`: the form is not complete enough to send.
 */
export function syncBody(form: SyncForm, base: Fields = {}): Fields | null {
  if (!form.source || form.targets.length === 0) return null;
  const body: Fields = { ...base, source: form.source, targets: [...form.targets] };
  delete body.name;
  if (form.name.trim()) body.name = form.name.trim();
  const set = (key: string, value: unknown, keep: boolean) => {
    if (keep) body[key] = value;
    else delete body[key];
  };
  const inc = patterns(form.include);
  const exc = patterns(form.exclude);
  set("include", inc, inc.length > 0);
  set("exclude", exc, exc.length > 0);
  set("schedule", form.schedule.trim(), form.schedule.trim() !== "");
  set("conflict", form.conflict, form.conflict !== "");
  set("create_missing", false, !form.create_missing);
  set("apply_ddl", false, !form.apply_ddl);
  return body;
}

/** A target's snapshot progress (`TargetView.snapshot`) as a bar value and words. */
export type SnapshotLike = {
  tables_done: number;
  tables_total: number;
  table?: string | null;
  rows: number;
  rows_estimate?: number | null;
  eta_seconds?: number | null;
};

export function snapshotProgress(p: SnapshotLike): { percent: number | null; words: string } {
  let percent: number | null = null;
  if (p.rows_estimate && p.rows_estimate > 0) percent = Math.min(99, (100 * p.rows) / p.rows_estimate);
  else if (p.tables_total > 0) percent = (100 * p.tables_done) / p.tables_total;
  const parts = [`${p.tables_done}/${p.tables_total} tables`];
  const est = p.rows_estimate ? ` of about ${p.rows_estimate.toLocaleString("en-US")}` : "";
  parts.push(`${p.rows.toLocaleString("en-US")}${est} rows`);
  if (p.table) parts.push(`copying ${p.table}`);
  if (p.eta_seconds !== null && p.eta_seconds !== undefined) parts.push(`ETA ${duration(p.eta_seconds)}`);
  return { percent: percent === null ? null : Math.round(percent), words: parts.join(" · ") };
}

/** True when a save was refused because the filter now selects tables the snapshot lacks. */
export function needsResnapshot(e: unknown): boolean {
  return e instanceof ApiError && e.status === 409 && e.field === "resnapshot";
}

/** An error in plain words (the problem's detail). */
export const errorWords = problemText;
