// Overview: servers, every sync's targets (state, lag, rows/s, last error in plain words and
// what to do), recent jobs. Live: reloaded on sync and job events, and every 2 s for rows/s.
import { useState } from "preact/hooks";
import { ApiError, type Schemas } from "../api/client";
import { duration, failureWords, rate, stateTone, stateWords } from "../format";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { JobRow } from "./Jobs";

type Data = { servers: Schemas["ServerView"][] | null; syncs: Schemas["SyncView"][]; jobs: Schemas["JobDoc"][] };

export function Overview({ api, can }: PageProps) {
  const [notice, setNotice] = useState<string | null>(null);
  const { data, error, reload } = useLive<Data>(
    api,
    async () => {
      const [servers, syncs, jobs] = await Promise.all([
        can("servers:read") ? api.get("/api/v1/servers") : Promise.resolve(null),
        api.get("/api/v1/syncs"),
        api.get("/api/v1/jobs"),
      ]);
      return { servers, syncs, jobs };
    },
    { events: (e) => e.event === "sync_state" || e.event === "job_progress", everyMs: 2000 },
  );

  const control = async (sync: string, action: "pause" | "resume" | "cancel") => {
    if (action === "cancel" && !confirm(`Cancel sync ${sync}? Its pipelines stop until it is resumed.`)) return;
    try {
      const path = `/api/v1/syncs/{name}/${action}` as const;
      await api.post(path, { name: sync });
      setNotice(null);
    } catch (e) {
      setNotice(e instanceof ApiError ? `${action} ${sync}: ${e.detail}` : String(e));
    }
    reload();
  };

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  return (
    <>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && <p class="error" role="alert">{notice}</p>}
      <section>
        <h2>Syncs</h2>
        {data.syncs.length === 0 && <p class="muted">No sync is defined.</p>}
        {data.syncs.map((s) => (
          <article class="card" data-testid={`sync-${s.name}`}>
            <div class="card-head">
              <h3>
                {s.name} <span class="muted">from {s.source}</span>
              </h3>
              <span class="muted" data-testid="control">{s.control ?? "not running here"}</span>
              {can("syncs:control") && s.control && (
                <span class="actions">
                  {s.control === "running" ? (
                    <button onClick={() => control(s.name, "pause")}>Pause</button>
                  ) : (
                    <button onClick={() => control(s.name, "resume")}>Resume</button>
                  )}
                  {s.control !== "cancelled" && (
                    <button class="danger" onClick={() => control(s.name, "cancel")}>
                      Cancel
                    </button>
                  )}
                </span>
              )}
            </div>
            <table>
              <thead>
                <tr>
                  <th>Target</th>
                  <th>State</th>
                  <th class="num">Lag</th>
                  <th class="num">Rows/s</th>
                  <th class="num">Rows applied</th>
                  <th>Last error</th>
                </tr>
              </thead>
              <tbody>
                {s.targets.map((t) => {
                  const f = failureWords(t.failure);
                  return (
                    <tr data-testid={`target-${s.name}-${t.target}`}>
                      <td>{t.target}</td>
                      <td>
                        <span class={`badge ${stateTone(t.state)}`} data-testid="state" data-state={t.state}>
                          {stateWords(t.state)}
                        </span>
                      </td>
                      <td class="num">{duration(t.lag_seconds)}</td>
                      <td class="num" data-testid="rows-per-second" data-value={t.rows_per_second}>
                        {rate(t.rows_per_second)}
                      </td>
                      <td class="num" data-testid="rows-applied" data-value={t.rows_applied}>
                        {t.rows_applied.toLocaleString("en-US")}
                      </td>
                      <td>
                        {f ? (
                          <>
                            <span class="error">{f.what}</span>
                            <br />
                            <span class="muted">What to do: {f.todo}</span>
                          </>
                        ) : (
                          <span class="muted">none</span>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </article>
        ))}
      </section>
      {data.servers && (
        <section>
          <h2>Servers</h2>
          <table>
            <thead>
              <tr>
                <th>Name</th>
                <th>Address</th>
                <th>TLS</th>
                <th>Defined in</th>
              </tr>
            </thead>
            <tbody>
              {data.servers.map((s) => (
                <tr>
                  <td>{s.name}</td>
                  <td>
                    <code>{s.url}</code>
                  </td>
                  <td>{s.tls}</td>
                  <td>{s.origin === "file" ? "config file" : "API"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      <section>
        <h2>Recent jobs</h2>
        {data.jobs.length === 0 ? (
          <p class="muted">No job yet.</p>
        ) : (
          <table>
            <tbody>
              {[...data.jobs]
                .sort((a, b) => b.created_at.localeCompare(a.created_at))
                .slice(0, 5)
                .map((j) => (
                  <JobRow job={j} />
                ))}
            </tbody>
          </table>
        )}
        <a href="#/jobs">All jobs</a>
      </section>
    </>
  );
}
