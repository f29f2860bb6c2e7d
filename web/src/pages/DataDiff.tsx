// Data diff: pick source, target and tables, run the diff (a job), read the results per table
// (status, chunks compared, rows on each side) and the differing rows (their keys), preview
// and download the repair SQL the job wrote (a read-only artefact: running it against the
// target stays a person's decision, outside the dashboard).
import { useEffect, useState } from "preact/hooks";
import { saveAs, type Api } from "../api/client";
import type { PageProps } from "../main";
import { asJob, isActive, JobLine, problemText, useJobs, type JobDoc } from "./jobpanel";
import { diffRows, healthTone, side } from "./schema-logic";
import { SidePicker, useServers } from "./Schema";
import "./Schema.css";

type TableReport = {
  schema: string;
  table: string;
  target_schema?: string | null;
  status: string;
  method: string;
  skipped?: string | null;
  chunks: number;
  rows_source: number;
  rows_target: number;
  only_in_source: unknown[];
  only_in_target: unknown[];
  different: unknown[];
  seconds: number;
};
type Report = {
  source: string;
  target: string;
  equal: boolean;
  complete: boolean;
  tables: TableReport[];
  chunks: number;
  differing_rows: number;
  skipped_tables: string[];
  pauses: number;
  seconds: number;
};

const STATUS_TONE: Record<string, string> = { equal: "pass", different: "fail", only_in_source: "fail", only_in_target: "fail", skipped: "warn" };
const REPAIR_FILE = "repair.sql";

/** The repair SQL a succeeded job wrote (needs `backup:create`, the job files' permission). */
function useRepair(api: Api, job: JobDoc | undefined, allowed: boolean) {
  const [text, setText] = useState<{ id: string; sql: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const wanted = !!job && job.state === "succeeded" && allowed && (job.params as { repair_sql?: boolean }).repair_sql === true;
  useEffect(() => {
    if (!wanted || !job || text?.id === job.id) return;
    api.raw("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}/files/${REPAIR_FILE}`).then(
      (r) => r.text().then((sql) => setText({ id: job.id, sql })),
      (e: unknown) => setError(problemText(e)),
    );
  }, [api, job?.id, wanted]);
  return { repair: wanted && text && job && text.id === job.id ? text.sql : null, error, wanted };
}

export function DataDiff({ api, can }: PageProps) {
  const servers = useServers(api, can);
  const [src, setSrc] = useState({ server: "", db: "" });
  const [dst, setDst] = useState({ server: "", db: "" });
  const [tables, setTables] = useState("");
  const [repairSql, setRepairSql] = useState(true);
  const [id, setId] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const { data: jobs, error, reload } = useJobs(api, ["data_diff"]);

  useEffect(() => {
    if (servers.length && !src.server) setSrc({ ...src, server: servers[0] });
    if (servers.length && !dst.server) setDst({ ...dst, server: servers[1] ?? servers[0] });
  }, [servers]);

  const job = id ? jobs?.find((j) => j.id === id) : jobs?.[0];
  const report = job?.result as Report | null | undefined;
  const { repair, error: repairError } = useRepair(api, job, can("backup:create"));

  const run = async () => {
    const include = tables
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
    try {
      const answer = await api.send("/api/v1/jobs/data-diff", {}, {
        source: side(src.server, src.db),
        target: side(dst.server, dst.db),
        include,
        repair_sql: repairSql,
      });
      setId(asJob(answer).id);
      setNotice(null);
    } catch (e) {
      setNotice(problemText(e));
    }
    reload();
  };

  const download = async () => {
    if (!job) return;
    try {
      const resp = await api.raw("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}/files/${REPAIR_FILE}`);
      await saveAs(resp, `repair-${job.id}.sql`);
    } catch (e) {
      setNotice(problemText(e));
    }
  };

  return (
    <div class="schema-page">
      <h2>Data diff</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && (
        <p class="error" role="alert">
          {notice}
        </p>
      )}
      {can("validation:run") && (
        <section class="card">
          <div class="sides">
            <SidePicker id="dd-src" legend="Source" servers={servers} server={src.server} database={src.db}
              onServer={(v) => setSrc({ ...src, server: v })} onDatabase={(v) => setSrc({ ...src, db: v })} databaseHint="empty: every database" />
            <SidePicker id="dd-dst" legend="Target" servers={servers} server={dst.server} database={dst.db}
              onServer={(v) => setDst({ ...dst, server: v })} onDatabase={(v) => setDst({ ...dst, db: v })} databaseHint="empty: every database" />
          </div>
          <p>
            <label for="dd-tables">Tables (regexes on database.table, comma-separated; empty: all)</label>
            <br />
            <input id="dd-tables" value={tables} placeholder="app\.items, app\.orders" onInput={(e) => setTables(e.currentTarget.value)} />
          </p>
          <p>
            <input id="dd-repair" type="checkbox" checked={repairSql} onChange={(e) => setRepairSql(e.currentTarget.checked)} />{" "}
            <label for="dd-repair">Also write the repair SQL (a file to review; nothing is changed)</label>
          </p>
          <div class="actions">
            <button onClick={run} disabled={isActive(job)}>
              Run data diff
            </button>
          </div>
        </section>
      )}

      <section aria-labelledby="dd-h">
        <h3 id="dd-h">Results</h3>
        {!job && <p class="muted">No data diff yet.</p>}
        {job && <JobLine job={job} label={`data diff ${(job.params as { source?: string }).source ?? ""} → ${(job.params as { target?: string }).target ?? ""}`} />}
        {report && (
          <div data-testid="data-diff" data-equal={String(report.equal)} data-differing={report.differing_rows}>
            <p>
              {report.equal
                ? "Every table is equal."
                : `${report.differing_rows} differing row(s)${report.complete ? "" : ", some tables not compared"}.`}{" "}
              <span class="muted">
                {report.tables.length} table(s), {report.chunks} chunk(s) compared in {report.seconds.toFixed(1)} s
                {report.pauses ? `, paused ${report.pauses} time(s) for lag or load` : ""}.
              </span>
            </p>
            <table>
              <thead>
                <tr>
                  <th scope="col">Table</th>
                  <th scope="col">Result</th>
                  <th scope="col" class="num">Chunks</th>
                  <th scope="col" class="num">Rows (source / target)</th>
                  <th scope="col" class="num">Differing rows</th>
                </tr>
              </thead>
              <tbody>
                {report.tables.map((t) => {
                  const n = t.only_in_source.length + t.only_in_target.length + t.different.length;
                  return (
                    <tr data-testid={`dd-table-${t.schema}.${t.table}`} data-status={t.status} data-differing={n}>
                      <td>
                        {t.schema}.{t.table}
                        {t.target_schema && <span class="muted"> (target {t.target_schema})</span>}
                      </td>
                      <td>
                        <span class={`badge ${healthTone(STATUS_TONE[t.status] ?? "")}`}>{t.status.replace(/_/g, " ")}</span>{" "}
                        <span class="muted">{t.method.replace(/_/g, " ")}</span>
                        {t.skipped && <div class="muted">{t.skipped}</div>}
                      </td>
                      <td class="num">
                        {t.chunks} ({t.status === "equal" ? "all equal" : n ? "some differ" : "–"})
                      </td>
                      <td class="num">
                        {t.rows_source} / {t.rows_target}
                      </td>
                      <td class="num">{n}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            {report.tables
              .filter((t) => diffRows(t).length > 0)
              .map((t) => (
                <article class="card" data-testid={`dd-rows-${t.schema}.${t.table}`}>
                  <h4>
                    Differing rows of {t.schema}.{t.table}
                  </h4>
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Row (key)</th>
                        <th scope="col">Difference</th>
                      </tr>
                    </thead>
                    <tbody>
                      {diffRows(t).map((r) => (
                        <tr data-testid="dd-row" data-kind={r.kind} data-key={r.key}>
                          <td>
                            {r.columns.map(([c, v]) => (
                              <span class="kv">
                                <span class="muted">{c}</span>=<code>{v}</code>{" "}
                              </span>
                            ))}
                          </td>
                          <td>{r.words}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </article>
              ))}
            {repairError && <p class="error" role="alert">{repairError}</p>}
            {repair !== null && (
              <section aria-labelledby="repair-h">
                <h4 id="repair-h">Repair SQL (makes the target equal the source; review it, then run it yourself)</h4>
                <div class="actions">
                  <button onClick={download}>Download repair SQL</button>
                </div>
                <pre class="log" data-testid="repair-sql" tabIndex={0}>
                  {repair}
                </pre>
              </section>
            )}
            {!can("backup:create") && (job?.params as { repair_sql?: boolean }).repair_sql && (
              <p class="muted">Downloading the repair SQL needs the backup:create permission.</p>
            )}
          </div>
        )}
      </section>
    </div>
  );
}
