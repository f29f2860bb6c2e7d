// A job started by the Backups or Export / Import page, followed until it ends: its progress
// bar, state and a link to the Jobs page; `onDone` gets the finished job (report in `result`).
import { useEffect, useRef, useState } from "preact/hooks";
import type { Api, Schemas } from "../api/client";
import { asJob, problemText } from "../api/client";
import { jobProgress, stateTone } from "../format";

export type Job = Schemas["JobDoc"];
const ENDED = ["succeeded", "failed", "cancelled", "rejected"];

/** The text of an error in plain words (the API's problem `detail`). */
export const errorText = problemText;

/** Reads the JSON of a 202 answer of `api.raw` (a started job). */
export async function jobOf(resp: Response): Promise<Job> {
  return (await resp.json()) as Job;
}

export { asJob };

export function JobWatch({ api, job, label, onDone }: { api: Api; job: Job; label: string; onDone?: (job: Job) => void }) {
  const [current, setCurrent] = useState<Job>(job);
  const [error, setError] = useState<string | null>(null);
  const done = useRef(onDone);
  done.current = onDone;
  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const j = await api.get("/api/v1/jobs/{id}", { id: job.id });
        if (stop) return;
        setCurrent(j);
        setError(null);
        if (ENDED.includes(j.state)) {
          done.current?.(j);
          return;
        }
      } catch (e) {
        if (stop) return;
        setError(errorText(e));
      }
      timer = setTimeout(poll, 700);
    };
    void poll();
    return () => {
      stop = true;
      if (timer) clearTimeout(timer);
    };
  }, [api, job.id]);
  const p = jobProgress(current.progress);
  const percent = p.percent ?? (ENDED.includes(current.state) ? 100 : undefined);
  return (
    <div class="jobwatch" data-testid={`watch-${job.kind}`} data-state={current.state} data-job={job.id}>
      <span class={`badge ${stateTone(current.state)}`}>{current.state.replace(/_/g, " ")}</span>{" "}
      <progress max={100} value={percent} aria-label={`progress of ${label}`} /> {p.words}{" "}
      <a href="#/jobs">job {job.id}</a>
      {current.state === "awaiting_approval" && <p class="muted">This job waits for a second person's approval (Jobs page).</p>}
      {current.error && (
        <p class="error" role="alert">
          {current.error}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
