// Pure formatting of what the API reports into plain words (unit-testable, no DOM).
import type { Schemas } from "./api/client";

const STATES: Record<string, string> = {
  starting: "Starting",
  snapshotting: "Copying the initial snapshot",
  streaming: "Streaming changes",
  retrying: "Retrying after an error",
  paused: "Paused",
  cancelled: "Cancelled",
  failed: "Stopped by an error",
  stopped: "Stopped",
  done: "Done",
  standby: "Standby (another coordinator applies)",
  not_running: "Not running in this process",
};

/** A pipeline or job state in words. */
export function stateWords(state: string): string {
  return STATES[state] ?? state.replace(/_/g, " ");
}

/** good / warn / bad: the colour of a state badge. */
export function stateTone(state: string): "good" | "warn" | "bad" | "idle" {
  if (["streaming", "snapshotting", "done", "succeeded", "starting", "running"].includes(state)) return "good";
  if (["retrying", "paused", "awaiting_approval", "queued", "standby"].includes(state)) return "warn";
  if (["failed", "rejected"].includes(state)) return "bad";
  return "idle";
}

/** Seconds as `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** A rate with one decimal below 10, none above, thousands grouped. */
export function rate(perSecond: number): string {
  const digits = perSecond < 10 ? 1 : 0;
  return perSecond.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A failure in plain words: what happened, whether fleetsync retries, what to do. */
export function failureWords(f: Schemas["Failure"] | null | undefined): { what: string; todo: string } | null {
  if (!f) return null;
  const retry = f.retryable ? "fleetsync keeps retrying by itself" : "this stopped the sync";
  return {
    what: `${f.message} (${f.code}; ${retry}, since ${new Date(f.since).toLocaleString()})`,
    todo: f.hint ?? (f.retryable ? "Wait, or check the server it names." : "Fix the cause, then resume the sync."),
  };
}

/** A job's progress as a percentage (null: no total known) and a line of words. */
export function jobProgress(p: Schemas["JobProgressDoc"]): { percent: number | null; words: string } {
  const parts = [p.phase];
  if (p.tables_total) parts.push(`${p.tables_done}/${p.tables_total} tables`);
  if (p.rows) parts.push(`${p.rows.toLocaleString("en-US")}${p.rows_total ? `/${p.rows_total.toLocaleString("en-US")}` : ""} rows`);
  if (p.eta_seconds) parts.push(`ETA ${duration(p.eta_seconds)}`);
  const percent = p.percent === null || p.percent === undefined ? null : Math.max(0, Math.min(100, p.percent));
  return { percent, words: parts.filter(Boolean).join(" · ") };
}
