// Jobs: every job with its progress, the selected job's live log, cancel (with the permission
// `cancel_job` needs).
import { useState } from "preact/hooks";
import { ApiError, type Schemas } from "../api/client";
import { jobProgress, stateTone } from "../format";
import { useLive } from "../live";
import type { PageProps } from "../main";

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
      </td>
      <td class="muted">
        {new Date(job.created_at).toLocaleString()} by {job.created_by}
      </td>
    </tr>
  );
}

export function Jobs({ api, can }: PageProps) {
  const [selected, setSelected] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
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

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  return (
    <>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && <p class="error" role="alert">{notice}</p>}
      <h2>Jobs</h2>
      {data.jobs.length === 0 ? (
        <p class="muted">No job yet.</p>
      ) : (
        <table>
          <tbody>
            {data.jobs.map((j) => (
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
            {can("validation:run") && ACTIVE.includes(job.state) && (
              <button class="danger" onClick={() => cancel(job.id)}>
                Cancel job
              </button>
            )}
          </div>
          <pre class="log" aria-live="polite">
            {(data.log ?? []).map((l) => `${l.time}  ${l.message}`).join("\n") || "(no log line yet)"}
          </pre>
        </section>
      )}
    </>
  );
}
