// Overview: alerts firing (at the top), every sync's targets (state, lag with a live chart of
// the last hour, rows/s, last error in plain words and what to do), every server (reachable,
// role, binlog positions, health verdict), open conflicts, recent jobs. Live: syncs and jobs
// reload on their events and every 2 s; the chart feed every 5 s (a point per 5 s); servers
// and conflicts on their events and every 10 s (the API probes servers at most that often).
import { useState } from "preact/hooks";
import { ApiError, type Schemas } from "../api/client";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { JobRow } from "./Jobs";
import { LagChart } from "./LagChart";
import { ago, healthOrigin, roleWords } from "./overview-logic";
import { TargetsTable } from "./TargetsTable";
import "./Overview.css";

type Data = {
  servers: Schemas["ServerView"][] | null;
  syncs: Schemas["SyncView"][];
  jobs: Schemas["JobDoc"][];
  alerts: Schemas["AlertsView"];
};
type Slow = { overview: Schemas["ServersOverview"] | null; conflicts: Schemas["ConflictDoc"][] | null; conflictsError: string | null };

/** Open conflicts shown per target on the Overview (the Conflicts page has them all). */
const NEWEST_CONFLICTS = 3;

export function Overview({ api, can }: PageProps) {
  const [notice, setNotice] = useState<string | null>(null);
  const { data, error, reload } = useLive<Data>(
    api,
    async () => {
      const [servers, syncs, jobs, alerts] = await Promise.all([
        can("servers:read") ? api.get("/api/v1/servers") : Promise.resolve(null),
        api.get("/api/v1/syncs"),
        api.get("/api/v1/jobs"),
        api.get("/api/v1/alerts"),
      ]);
      return { servers, syncs, jobs, alerts };
    },
    { events: (e) => e.event === "sync_state" || e.event === "job_progress", everyMs: 2000 },
  );
  const chart = useLive(api, () => api.get("/api/v1/metrics/summary"), { events: () => false, everyMs: 5000 });
  const slow = useLive<Slow>(
    api,
    async () => {
      const [overview, conflicts] = await Promise.all([
        can("servers:read") ? api.get("/api/v1/overview/servers") : Promise.resolve(null),
        // A target that cannot be read fails the listing: the rest of the page still shows.
        api.get("/api/v1/conflicts").then(
          (c) => ({ c, e: null }),
          (e: unknown) => ({ c: null, e: e instanceof ApiError ? e.detail : String(e) }),
        ),
      ]);
      return { overview, conflicts: conflicts.c, conflictsError: conflicts.e };
    },
    { events: (e) => e.event === "conflict" || e.event === "health", everyMs: 10000 },
  );
  const seriesOf = (sync: string, target: string) =>
    chart.data?.series.find((x) => x.sync === sync && x.target === target)?.points ?? [];

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
      <Alerts alerts={data.alerts} />
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
            <TargetsTable sync={s} />
            <div class="lag-charts">
              {s.targets.map((t) => (
                <LagChart id={`${s.name}-${t.target}`} label={`${s.name} → ${t.target}`} points={seriesOf(s.name, t.target)} />
              ))}
            </div>
          </article>
        ))}
      </section>
      {data.servers && <Servers servers={data.servers} overview={slow.data?.overview ?? null} />}
      <Conflicts conflicts={slow.data?.conflicts ?? null} error={slow.data?.conflictsError ?? null} />
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

function Alerts({ alerts }: { alerts: Schemas["AlertsView"] }) {
  return (
    <section aria-labelledby="alerts-title">
      <h2 id="alerts-title">Alerts firing</h2>
      {alerts.alerts.length === 0 ? (
        <p class="muted" data-testid="no-alerts">
          None (checked {ago(alerts.evaluated_at)}).
        </p>
      ) : (
        <ul class="alerts">
          {alerts.alerts.map((a) => (
            <li class={`alert ${a.severity}`} data-testid={`alert-${a.name}`} data-severity={a.severity}>
              <span class={`badge ${a.severity === "critical" ? "bad" : "warn"}`}>{a.severity}</span> <strong>{a.subject}</strong>:{" "}
              {a.summary} <span class="muted">(since {new Date(a.since).toLocaleString()}, {ago(a.since)}; {a.name})</span>
              <br />
              <span class="muted">What to do: {a.todo}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Servers({ servers, overview }: { servers: Schemas["ServerView"][]; overview: Schemas["ServersOverview"] | null }) {
  return (
    <section>
      <h2>Servers</h2>
      {overview && <p class="muted">Reachability and binlog positions are probed at most every {overview.probe_every_seconds} s.</p>}
      <table class="servers">
        <thead>
          <tr>
            <th>Name</th>
            <th>Reachable</th>
            <th>Role</th>
            <th>Binlog position</th>
            <th>Health</th>
            <th>Address</th>
          </tr>
        </thead>
        <tbody>
          {servers.map((s) => {
            const o = overview?.servers.find((x) => x.name === s.name);
            return (
              <tr data-testid={`server-${s.name}`}>
                <td data-label="Name">
                  {s.name}
                  <div class="muted">{s.origin === "file" ? "config file" : "API"}</div>
                </td>
                <td data-label="Reachable" data-testid="reachable" data-value={o ? String(o.reachable) : undefined}>
                  {!o ? (
                    <span class="muted">checking…</span>
                  ) : o.reachable ? (
                    <span class="badge good">yes</span>
                  ) : (
                    <>
                      <span class="badge bad">no</span> <span class="error">{o.error}</span>
                    </>
                  )}
                </td>
                <td data-label="Role">{o ? roleWords(o) : ""}</td>
                <td data-label="Binlog position">
                  {o?.binlog_position && (
                    <>
                      <code data-testid="binlog-position">{o.binlog_position}</code>
                      {o.gtid_position && <div class="muted">GTID {o.gtid_position}</div>}
                    </>
                  )}
                  {o?.applied.map((a) => (
                    <div class="muted" data-testid={`applied-${a.sync}-${a.target}`}>
                      {a.sync} → {a.target} applied: <code>{a.position ?? "none yet"}</code>
                    </div>
                  ))}
                </td>
                <td data-label="Health" data-testid="health">
                  {o?.health ? (
                    <>
                      <span class={`badge ${o.health.status === "healthy" ? "good" : o.health.status === "degraded" ? "warn" : "bad"}`}>
                        {o.health.status}
                      </span>{" "}
                      {o.health.problems.join(", ")}
                      <div class="muted">from {healthOrigin(o.health)}</div>
                    </>
                  ) : (
                    <span class="muted">{o ? "not checked yet" : ""}</span>
                  )}
                </td>
                <td data-label="Address">
                  <code>{s.url}</code>
                  <div class="muted">TLS {s.tls}</div>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

function Conflicts({ conflicts, error }: { conflicts: Schemas["ConflictDoc"][] | null; error: string | null }) {
  const byTarget = new Map<string, Schemas["ConflictDoc"][]>();
  for (const c of conflicts ?? []) byTarget.set(c.target, [...(byTarget.get(c.target) ?? []), c]);
  return (
    <section>
      <h2>Open conflicts</h2>
      {error && <p class="error" role="alert">Conflicts cannot be read: {error}</p>}
      {conflicts && conflicts.length === 0 && <p class="muted">None: every change was applied.</p>}
      {[...byTarget].map(([target, list]) => (
        <div data-testid={`conflicts-${target}`} data-value={list.length}>
          <h3>
            {target}: {list.length} open
          </h3>
          <ul>
            {[...list]
              .sort((a, b) => b.id - a.id)
              .slice(0, NEWEST_CONFLICTS)
              .map((c) => (
                <li>
                  <a href={`#/conflicts/${encodeURIComponent(c.target)}/${c.id}`}>
                    #{c.id} {c.schema}.{c.table}
                  </a>{" "}
                  <span class="muted">
                    sync {c.sync}, from {c.origin}, {c.detected_at}
                  </span>
                </li>
              ))}
          </ul>
        </div>
      ))}
      <a href="#/conflicts">All conflicts</a>
    </section>
  );
}
