// Pure logic of the Overview, Jobs and Audit pages (unit-tested in test/overview.test.ts).
import type { Schemas } from "../api/client";
import { duration } from "../format";

/** A lag chart's data: [seconds since the epoch, lag seconds], oldest first. */
export type ChartData = [number[], number[]];

/** The chart's window: one hour, as `/metrics/summary` keeps. */
export const CHART_WINDOW_SECONDS = 3600;

/**
 * `data` with the points of `points` newer than its last one appended (the chart grows live,
 * nothing is redrawn from scratch), and the points older than the window before the newest
 * dropped. Returns the same arrays, changed in place, and how many points were added.
 */
export function appendPoints(data: ChartData, points: { time: string; lag_seconds: number }[]): number {
  const [xs, ys] = data;
  const last = xs.length ? xs[xs.length - 1] : -Infinity;
  let added = 0;
  for (const p of points) {
    const t = Date.parse(p.time) / 1000;
    if (!Number.isFinite(t) || t <= last) continue;
    xs.push(t);
    ys.push(p.lag_seconds);
    added++;
  }
  if (xs.length) {
    const from = xs[xs.length - 1] - CHART_WINDOW_SECONDS;
    let drop = 0;
    while (drop < xs.length && xs[drop] < from) drop++;
    if (drop) {
      xs.splice(0, drop);
      ys.splice(0, drop);
    }
  }
  return added;
}

/** A server's role in words: "source of s1; target of s2, s3" or "used by no sync". */
export function roleWords(s: { source_of: string[]; target_of: string[] }): string {
  const parts = [];
  if (s.source_of.length) parts.push(`source of ${s.source_of.join(", ")}`);
  if (s.target_of.length) parts.push(`target of ${s.target_of.join(", ")}`);
  return parts.length ? parts.join("; ") : "used by no sync";
}

/** Where a health verdict comes from and how old it is, in words. */
export function healthOrigin(h: Schemas["HealthSummary"]): string {
  if (h.source === "job") {
    const age = h.age_seconds === null || h.age_seconds === undefined ? "" : `, ${duration(Math.max(0, h.age_seconds))} ago`;
    return `health job ${h.job_id ?? ""}${age}`;
  }
  return h.every_seconds ? `periodic checks (every ${duration(h.every_seconds)})` : "periodic checks";
}

/** How long ago an RFC 3339 time was, from `now` (ms). */
export function ago(time: string, now: number = Date.now()): string {
  const t = Date.parse(time);
  if (!Number.isFinite(t)) return time;
  return `${duration(Math.max(0, (now - t) / 1000))} ago`;
}

/**
 * Whether a token with `permissions` is offered Approve / Reject for `job`: the job awaits an
 * approval, the token holds the permission its approver needs, and the token's role is not
 * read-only (a read-only role decides nothing, even where the API would let it). The API still
 * refuses the job's own requester (a second person is needed): the page shows that answer.
 */
export function canDecide(job: Schemas["JobDoc"], permissions: string[]): boolean {
  if (job.state !== "awaiting_approval" || !job.approval) return false;
  if (permissions.every((p) => p.endsWith(":read"))) return false;
  return permissions.includes(job.approval.permission);
}

/** Jobs matching the Jobs page's filters ("" = any). */
export function filterJobs<J extends { kind: string; state: string }>(jobs: J[], kind: string, state: string): J[] {
  return jobs.filter((j) => (!kind || j.kind === kind) && (!state || j.state === state));
}

/** A `datetime-local` input's value (local time) as RFC 3339 UTC; "" or invalid → undefined. */
export function localToRfc3339(value: string): string | undefined {
  if (!value) return undefined;
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

/** The Audit page's filters as `GET /api/v1/audit` query parameters (empty ones left out). */
export function auditQuery(f: { action: string; token: string; outcome: string; from: string; to: string; limit: number }): {
  action?: string;
  token?: string;
  outcome?: string;
  since?: string;
  until?: string;
  limit: number;
} {
  return {
    action: f.action.trim() || undefined,
    token: f.token.trim() || undefined,
    outcome: f.outcome || undefined,
    since: localToRfc3339(f.from),
    until: localToRfc3339(f.to),
    limit: f.limit,
  };
}
