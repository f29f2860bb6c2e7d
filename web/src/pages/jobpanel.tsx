// Shared by the Schema & migrations, Data diff and Health pages: the jobs of some kinds kept
// fresh (job events and a short timer), a job's state line with its progress bar and a link to
// the Jobs page, the problem detail of a failed call in plain words.
import { useState } from "preact/hooks";
import { asJob, problemText, type Api, type Schemas } from "../api/client";
import { jobProgress, stateTone } from "../format";
import { useLive } from "../live";

export type JobDoc = Schemas["JobDoc"];

const ACTIVE = ["queued", "running", "awaiting_approval"];

export const isActive = (j: JobDoc | null | undefined) => !!j && ACTIVE.includes(j.state);

/** The jobs of `kinds`, newest first, reloaded on job events and every 1.5 s. */
export function useJobs(api: Api, kinds: string[]) {
  return useLive(
    api,
    async () => {
      const jobs = await api.get("/api/v1/jobs");
      return jobs.filter((j) => kinds.includes(j.kind)).sort((a, b) => b.created_at.localeCompare(a.created_at));
    },
    { events: (e) => e.event === "job_state" || e.event === "job_progress", everyMs: 1500 },
  );
}

export { asJob, problemText };

/** One job: kind, state, progress bar, phase, error, link to the Jobs page. */
export function JobLine({ job, label }: { job: JobDoc; label: string }) {
  const p = jobProgress(job.progress);
  const percent = p.percent ?? (isActive(job) ? undefined : 100);
  return (
    <div class="job-line" data-testid="job-line" data-kind={job.kind} data-state={job.state} data-id={job.id}>
      <span>{label}</span>{" "}
      <span class={`badge ${stateTone(job.state)}`}>{job.state.replace(/_/g, " ")}</span>{" "}
      <progress max={100} value={percent} aria-label={`progress of ${label}`} /> <span class="muted">{p.words}</span>{" "}
      <a href="#/jobs">see in Jobs</a>
      {job.error && (
        <p class="error" role="alert">
          {job.error}
        </p>
      )}
    </div>
  );
}

/**
 * Starting jobs from a page: `start(key, call)` runs the job route's call, remembers the job's
 * id under `key` (`ids`), shows the API's refusal in `notice`, then reloads the page's jobs.
 */
export function useJobStarter(reload: () => void) {
  const [ids, setIds] = useState<Record<string, string>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const start = async (key: string, call: () => Promise<unknown>) => {
    try {
      const job = asJob(await call());
      setIds((prev) => ({ ...prev, [key]: job.id }));
      setNotice(null);
    } catch (e) {
      setNotice(problemText(e));
    }
    reload();
  };
  return { ids, notice, setNotice, start };
}
