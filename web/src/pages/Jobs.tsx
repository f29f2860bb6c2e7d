// Jobs: every job with its progress, filters (kind, state), the selected job's live log, cancel
// (with the permission `cancel_job` needs), approve / reject a job awaiting a second person's
// approval (`[api] require_approval`; the API refuses the requester's own approval and the
// page shows its answer).
import { useState } from "preact/hooks";
import { ApiError, type Schemas } from "../api/client";
import { jobProgress, stateTone } from "../format";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { canDecide, filterJobs } from "./overview-logic";

import "./Jobs.css";

const STATES = ["awaiting_approval", "queued", "running", "succeeded", "failed", "cancelled"];

const ACTIVE = ["queued", "running", "awaiting_approval"];

export function JobRow({ job, onSelect, selected }: { job: Schemas["JobDoc"]; onSelect?: () => void; selected?: boolean }) {
  const p = jobProgress(job.progress);
  // A finished job without a known total shows a full bar, a running one an indeterminate bar.
  const percent = p.percent ?? (ACTIVE.includes(job.state) ? undefined : 100);
  return (
    <tr data-testid={`job-${job.id}`} aria-selected={selected}>
      <td>
        {onSelect ? (
          <button class="link" onClick={onSelect}>
            {job.kind}
          </button>
        ) : (
          job.kind
        )}
      </td>
      <td>
        <span class={`badge ${stateTone(job.state)}`}>{job.state.replace(/_/g, " ")}</span>
      </td>
      <td>
        <progress max={100} value={percent} aria-label={`progress of job ${job.id}`} /> {p.words}
        {job.error && <div class="error">{job.error}</div>}
        {job.state === "awaiting_approval" && job.approval && (
          <div class="muted">needs the approval of another token holding {job.approval.permission}</div>
        )}
      </td>
      <td class="muted">
        {new Date(job.created_at).toLocaleString()} by {job.created_by}
      </td>
    </tr>
  );
}

export function Jobs({ api, can, me }: PageProps) {
  const [selected, setSelected] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [kind, setKind] = useState("");
  const [state, setState] = useState("");
  const { data, error, reload } = useLive(
    api,
    async () => {
      const jobs = await api.get("/api/v1/jobs");
      const log = selected ? await api.get("/api/v1/jobs/{id}/log", { id: selected }) : null;
      return { jobs: [...jobs].sort((a, b) => b.created_at.localeCompare(a.created_at)), log };
    },
    { events: (e) => e.event === "job_progress", everyMs: 3000 },
  );
  const job = data?.jobs.find((j) => j.id === selected);

  const cancel = async (id: string) => {
    if (!confirm(`Cancel job ${id}?`)) return;
    try {
      await api.post("/api/v1/jobs/{id}/cancel", { id });
    } catch (e) {
      setNotice(e instanceof ApiError ? e.detail : String(e));
    }
    reload();
  };

  const decide = async (id: string, approve: boolean) => {
    if (!approve && !confirm(`Reject job ${id}? It ends cancelled and never runs.`)) return;
    try {
      await api.post(approve ? "/api/v1/jobs/{id}/approve" : "/api/v1/jobs/{id}/reject", { id });
      setNotice(null);
    } catch (e) {
      setNotice(e instanceof ApiError ? `${approve ? "Approve" : "Reject"} ${id}: ${e.detail}` : String(e));
    }
    reload();
  };

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  const kinds = [...new Set(data.jobs.map((j) => j.kind))].sort();
  const shown = filterJobs(data.jobs, kind, state);
  return (
    <>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && <p class="error" role="alert">{notice}</p>}
      <h2>Jobs</h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Kind{" "}
          <select value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
            <option value="">any</option>
            {kinds.map((k) => (
              <option value={k}>{k}</option>
            ))}
          </select>
        </label>
        <label>
          State{" "}
          <select value={state} onChange={(e) => setState(e.currentTarget.value)}>
            <option value="">any</option>
            {STATES.map((k) => (
              <option value={k}>{k.replace(/_/g, " ")}</option>
            ))}
          </select>
        </label>
        <span class="muted" data-testid="jobs-shown">
          {shown.length} of {data.jobs.length} jobs
        </span>
      </form>
      {shown.length === 0 ? (
        <p class="muted">{data.jobs.length === 0 ? "No job yet." : "No job matches the filters."}</p>
      ) : (
        <table>
          <tbody>
            {shown.map((j) => (
              <JobRow
                job={j}
                selected={j.id === selected}
                onSelect={() => {
                  setSelected(j.id);
                  setTimeout(reload);
                }}
              />
            ))}
          </tbody>
        </table>
      )}
      {job && (
        <section class="card">
          <div class="card-head">
            <h3>
              {job.kind} <span class="muted">{job.id}</span>
            </h3>
            {canDecide(job, me.permissions) && (
              <span class="actions">
                <button onClick={() => decide(job.id, true)}>Approve</button>
                <button class="danger" onClick={() => decide(job.id, false)}>
                  Reject
                </button>
              </span>
            )}
            {can("validation:run") && ACTIVE.includes(job.state) && (
              <button class="danger" onClick={() => cancel(job.id)}>
                Cancel job
              </button>
            )}
          </div>
          {canDecide(job, me.permissions) && job.created_by === me.name && (
            <p class="muted">You requested this job: another person must approve it (you may reject it to withdraw it).</p>
          )}
          {job.approval?.approved_by && (
            <p class="muted" data-testid="approved-by">
              Approved by {job.approval.approved_by}
              {job.approval.approved_at ? ` at ${new Date(job.approval.approved_at).toLocaleString()}` : ""}
            </p>
          )}
          {job.approval?.rejected_by && <p class="muted">Rejected by {job.approval.rejected_by}</p>}
          <pre class="log" aria-live="polite">
            {(data.log ?? []).map((l) => `${l.time}  ${l.message}`).join("\n") || "(no log line yet)"}
          </pre>
        </section>
      )}
    </>
  );
}
