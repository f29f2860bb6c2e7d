// Audit (owner/admin: `audit:read`): the API's audit log, newest first, filtered by action,
// token name, outcome and time range, capped at the chosen number of entries (the API's
// `limit`, at most 1000). Reloaded when the filters are applied and every 10 s.
import { useState } from "preact/hooks";
import type { Schemas } from "../api/client";
import { stateTone } from "../format";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { auditQuery } from "./overview-logic";
import "./Jobs.css";

const LIMITS = [50, 100, 500, 1000];
const OUTCOMES = ["ok", "failed", "dry_run", "unauthenticated", "denied"];
type Filters = { action: string; token: string; outcome: string; from: string; to: string; limit: number };
const NONE: Filters = { action: "", token: "", outcome: "", from: "", to: "", limit: 100 };

function outcomeTone(o: string): string {
  return o === "ok" ? "good" : o === "dry_run" ? "idle" : o === "failed" ? "warn" : stateTone("failed");
}

export function Audit({ api }: PageProps) {
  const [draft, setDraft] = useState<Filters>(NONE);
  const [applied, setApplied] = useState<Filters>(NONE);
  const { data, error, reload } = useLive<Schemas["AuditEntry"][]>(
    api,
    () => api.query("/api/v1/audit", { query: auditQuery(applied) }),
    { events: () => false, everyMs: 10000 },
  );
  const set = (k: keyof Filters) => (e: { currentTarget: { value: string } }) =>
    setDraft({ ...draft, [k]: k === "limit" ? Number(e.currentTarget.value) : e.currentTarget.value });
  const actions = [...new Set((data ?? []).map((e) => e.action))].sort();

  return (
    <>
      <h2>Audit log</h2>
      <form
        class="filters"
        aria-label="Audit filters"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(draft);
          setTimeout(reload);
        }}
      >
        <label>
          Action
          <input list="audit-actions" value={draft.action} onInput={set("action")} placeholder="e.g. pause_sync" />
          <datalist id="audit-actions">
            {actions.map((a) => (
              <option value={a} />
            ))}
          </datalist>
        </label>
        <label>
          Token name
          <input value={draft.token} onInput={set("token")} />
        </label>
        <label>
          Outcome
          <select value={draft.outcome} onChange={set("outcome")}>
            <option value="">any</option>
            {OUTCOMES.map((o) => (
              <option value={o}>{o.replace(/_/g, " ")}</option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" step={1} value={draft.from} onInput={set("from")} />
        </label>
        <label>
          To
          <input type="datetime-local" step={1} value={draft.to} onInput={set("to")} />
        </label>
        <label>
          At most
          <select value={String(draft.limit)} onChange={set("limit")}>
            {LIMITS.map((n) => (
              <option value={String(n)}>{n} entries</option>
            ))}
          </select>
        </label>
        <button type="submit">Apply filters</button>
        <button
          type="button"
          class="link"
          onClick={() => {
            setDraft(NONE);
            setApplied(NONE);
            setTimeout(reload);
          }}
        >
          Clear
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!data ? (
        <p aria-busy="true">Loading…</p>
      ) : data.length === 0 ? (
        <p class="muted">No entry matches the filters.</p>
      ) : (
        <>
          <p class="muted" data-testid="audit-count" data-value={data.length}>
            {data.length === 1 ? "1 entry" : `${data.length} entries`}, newest first{data.length >= applied.limit ? ` (capped at ${applied.limit}: narrow the filters or the time range to see older ones)` : ""}.
          </p>
          <table>
            <thead>
              <tr>
                <th>Time</th>
                <th>Token</th>
                <th>Action</th>
                <th>Resource</th>
                <th>Outcome</th>
                <th>Client</th>
              </tr>
            </thead>
            <tbody>
              {data.map((e) => (
                <tr data-testid="audit-row" data-action={e.action} data-token={e.token ?? ""}>
                  <td>{new Date(e.time).toLocaleString()}</td>
                  <td>
                    {e.token ?? <span class="muted">no valid token</span>}
                    {e.role && <div class="muted">{e.role}</div>}
                  </td>
                  <td>
                    <code>{e.action}</code>
                    {e.job_id && <div class="muted">job {e.job_id}</div>}
                  </td>
                  <td>
                    <code>
                      {e.method} {e.resource}
                    </code>
                  </td>
                  <td>
                    <span class={`badge ${outcomeTone(e.outcome)}`}>{e.outcome.replace(/_/g, " ")}</span> <span class="muted">{e.status}</span>
                  </td>
                  <td class="muted">{e.client}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </>
  );
}
