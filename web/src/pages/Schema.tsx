// Schema & migrations: pick two sides, run the schema diff (a job) and read it per table;
// generate the migration (a job, verified on scratch copies), read its up/down SQL with the
// VERIFIED / NOT VERIFIED badge and why; apply it (confirmation); the target's migration
// history and rollback of the latest applied one (confirmation). Viewers see the results only.
import { useEffect, useState } from "preact/hooks";
import type { Api, Schemas } from "../api/client";
import type { PageProps } from "../main";
import { isActive, JobLine, problemText, useJobs, useJobStarter, type JobDoc } from "./jobpanel";
import { groupByTable, kindWords, objectWords, side, type SchemaDifference } from "./schema-logic";
import "./Schema.css";

type Report = { source: string; target: string; equal: boolean; differences: SchemaDifference[]; notes: string[] };
type Generated = Report & { verified: boolean; problems: string[]; warnings: string[]; up_steps: number; down_steps: number };

/** Servers for the side pickers (a free text field without `servers:read`). */
export function useServers(api: Api, can: (p: string) => boolean): string[] {
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    if (!can("servers:read")) return;
    api.get("/api/v1/servers").then(
      (list: Schemas["ServerView"][]) => setNames(list.map((s) => s.name)),
      () => setNames([]),
    );
  }, [api]);
  return names;
}

/** A server picker (a select of the configured servers, or a text field) and a database field. */
export function SidePicker(props: {
  id: string;
  legend: string;
  servers: string[];
  server: string;
  database: string;
  onServer: (v: string) => void;
  onDatabase: (v: string) => void;
  databaseHint?: string;
}) {
  const { id, servers } = props;
  return (
    <fieldset class="side">
      <legend>{props.legend}</legend>
      <label for={`${id}-server`}>Server</label>
      {servers.length ? (
        <select id={`${id}-server`} value={props.server} onChange={(e) => props.onServer(e.currentTarget.value)}>
          {servers.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
      ) : (
        <input id={`${id}-server`} value={props.server} onInput={(e) => props.onServer(e.currentTarget.value)} />
      )}
      <label for={`${id}-db`}>Database {props.databaseHint && <span class="muted">({props.databaseHint})</span>}</label>
      <input id={`${id}-db`} value={props.database} onInput={(e) => props.onDatabase(e.currentTarget.value)} />
    </fieldset>
  );
}

function DiffTables({ diffs }: { diffs: SchemaDifference[] }) {
  return (
    <>
      {groupByTable(diffs).map((g) => (
        <article class="card" data-testid={`diff-table-${g.key}`}>
          <h4>{g.table === null ? `database ${g.database}` : `table ${g.key}`}</h4>
          <table class="diff">
            <thead>
              <tr>
                <th scope="col">Object</th>
                <th scope="col">Name</th>
                <th scope="col">Difference</th>
                <th scope="col">On the target now</th>
                <th scope="col">On the source (after the migration)</th>
              </tr>
            </thead>
            <tbody>
              {g.items.map((d) => {
                const k = kindWords(d.kind);
                return (
                  <tr data-testid="difference" data-object={d.object} data-name={d.name} data-kind={d.kind}>
                    <td data-label="Object">{objectWords(d.object)}</td>
                    <td data-label="Name">
                      <code>{d.name}</code>
                    </td>
                    <td data-label="Difference">
                      <span class={`badge ${k.tone}`}>{k.words}</span>
                    </td>
                    <td data-label="On the target now">{d.target ? <code class="before">{d.target}</code> : <span class="muted">(absent)</span>}</td>
                    <td data-label="On the source">{d.source ? <code class="after">{d.source}</code> : <span class="muted">(absent)</span>}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </article>
      ))}
    </>
  );
}

/** The up/down SQL of a generate job (its files; reading them needs `backup:create`). */
function useSql(api: Api, job: JobDoc | undefined, allowed: boolean) {
  const [sql, setSql] = useState<{ id: string; up: string; down: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!job || job.state !== "succeeded" || !allowed || sql?.id === job.id) return;
    const file = (name: string) =>
      api.raw("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}/files/${name}`).then((r) => r.text());
    Promise.all([file("up.sql"), file("down.sql")]).then(
      ([up, down]) => {
        setSql({ id: job.id, up, down });
        setError(null);
      },
      (e: unknown) => setError(problemText(e)),
    );
  }, [api, job?.id, job?.state, allowed]);
  return { sql: sql && job && sql.id === job.id ? sql : null, error };
}

export function Schema({ api, can }: PageProps) {
  const servers = useServers(api, can);
  const [src, setSrc] = useState({ server: "", db: "app" });
  const [dst, setDst] = useState({ server: "", db: "app" });
  const [history, setHistory] = useState<Schemas["MigrationStatusDoc"] | null>(null);
  const [historyError, setHistoryError] = useState<string | null>(null);
  const { data: jobs, error, reload } = useJobs(api, ["schema_diff", "migrate_generate", "migrate_apply", "migrate_rollback"]);
  const { ids, notice, start } = useJobStarter(reload);

  useEffect(() => {
    if (servers.length && !src.server) setSrc({ ...src, server: servers[0] });
    if (servers.length && !dst.server) setDst({ ...dst, server: servers[1] ?? servers[0] });
  }, [servers]);

  // The job shown per kind: the one started here, else the newest (what a viewer reads).
  const shown = (kind: string) => (ids[kind] ? jobs?.find((j) => j.id === ids[kind]) : jobs?.find((j) => j.kind === kind));
  const diffJob = shown("schema_diff");
  const genJob = shown("migrate_generate");
  const applyJob = shown("migrate_apply");
  const rollbackJob = shown("migrate_rollback");
  const { sql, error: sqlError } = useSql(api, genJob, can("backup:create"));

  const source = side(src.server, src.db);
  const target = side(dst.server, dst.db);

  // The history of the target as selected now: an answer for an earlier selection (a slower
  // request that finishes last) is dropped, never shown over the current one.
  useEffect(() => {
    if (!dst.server) return;
    let current = true;
    api.query("/api/v1/migrations", { query: { server: dst.server, database: dst.db.trim() || undefined } }).then(
      (h) => {
        if (!current) return;
        setHistory(h);
        setHistoryError(null);
      },
      (e: unknown) => {
        if (!current) return;
        setHistory(null);
        setHistoryError(problemText(e));
      },
    );
    return () => {
      current = false;
    };
  }, [dst.server, dst.db, applyJob?.state, rollbackJob?.state]);


  const diff = () => start("schema_diff", () => api.send("/api/v1/jobs/schema-diff", {}, { source, target }));
  const generate = () => start("migrate_generate", () => api.send("/api/v1/jobs/migrate-generate", {}, { source, target }));
  const gen = genJob?.result as Generated | null | undefined;
  const genTarget = (genJob?.params as { target?: string } | undefined)?.target ?? target;
  const apply = () => {
    if (!genJob || !gen) return;
    const what = `Apply migration ${genJob.id} to ${genTarget}? It runs ${gen.up_steps} DDL step(s) (the up SQL shown) that change the target's schema; DDL is not transactional.`;
    if (!confirm(what)) return;
    void start("migrate_apply", () =>
      api.send("/api/v1/jobs/migrate-apply", {}, { target: genTarget, migration_job: genJob.id, confirm: true }),
    );
  };
  // An apply of this migration that succeeded: it cannot be applied again (the target changed).
  const appliedHere = jobs?.find(
    (j) => j.kind === "migrate_apply" && j.state === "succeeded" && (j.params as { migration_job?: string }).migration_job === genJob?.id,
  );
  const applied = history?.migrations.filter((m) => m.status === "applied") ?? [];
  const latest = applied[applied.length - 1];
  const rollback = () => {
    if (!latest) return;
    if (!confirm(`Roll back migration ${latest.name} (history id ${latest.id}) on ${history?.target}? Its down steps change the target's schema.`)) return;
    void start("migrate_rollback", () => api.send("/api/v1/jobs/migrate-rollback", {}, { target: history?.target ?? target, confirm: true }));
  };

  const report = diffJob?.result as Report | null | undefined;
  return (
    <div class="schema-page">
      <h2>Schema diff &amp; migrations</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && (
        <p class="error" role="alert">
          {notice}
        </p>
      )}
      <section class="card">
        <div class="sides">
          <SidePicker id="src" legend="Source (the schema wanted)" servers={servers} server={src.server} database={src.db}
            onServer={(v) => setSrc({ ...src, server: v })} onDatabase={(v) => setSrc({ ...src, db: v })} databaseHint="empty: every database" />
          <SidePicker id="dst" legend="Target (the schema to change)" servers={servers} server={dst.server} database={dst.db}
            onServer={(v) => setDst({ ...dst, server: v })} onDatabase={(v) => setDst({ ...dst, db: v })} databaseHint="empty: every database" />
        </div>
        {can("migration:read") && (
          <div class="actions">
            <button onClick={diff} disabled={isActive(diffJob)}>
              Compare schemas
            </button>
            <button onClick={generate} disabled={isActive(genJob)}>
              Generate migration
            </button>
          </div>
        )}
      </section>

      <section aria-labelledby="diff-h">
        <h3 id="diff-h">Schema diff</h3>
        {!diffJob && <p class="muted">No schema diff yet.</p>}
        {diffJob && <JobLine job={diffJob} label={`schema diff ${(diffJob.params as { source?: string }).source ?? ""} → ${(diffJob.params as { target?: string }).target ?? ""}`} />}
        {report && (
          <div data-testid="schema-diff" data-equal={String(report.equal)}>
            <p>
              {report.equal ? "The schemas are equal." : `${report.differences.length} difference(s) between ${report.source} (source) and ${report.target} (target):`}
            </p>
            <DiffTables diffs={report.differences} />
            {report.notes.map((n) => (
              <p class="muted">note: {n}</p>
            ))}
          </div>
        )}
      </section>

      <section aria-labelledby="gen-h">
        <h3 id="gen-h">Migration</h3>
        {!genJob && <p class="muted">No migration generated yet.</p>}
        {genJob && <JobLine job={genJob} label={`migration for ${genTarget}`} />}
        {gen && (
          <div data-testid="migration" data-job={genJob?.id}>
            <p>
              <span class={`badge ${gen.verified ? "good" : "bad"} verify`} data-testid="verified" data-value={String(gen.verified)}>
                {gen.verified ? "VERIFIED" : "NOT VERIFIED"}
              </span>{" "}
              {gen.verified
                ? "applied up to a scratch copy of the target, the copy equals the source; applied down, it equals the target again."
                : `apply refuses it: ${gen.problems.join("; ")}`}
            </p>
            <p>
              {gen.up_steps} up step(s), {gen.down_steps} down step(s), {gen.differences.length} difference(s).
            </p>
            {gen.warnings.map((w) => (
              <p class="warn-text">warning: {w}</p>
            ))}
            {sqlError && <p class="error" role="alert">{sqlError}</p>}
            {!can("backup:create") && <p class="muted">Reading the SQL files needs the backup:create permission.</p>}
            {sql && (
              <div class="sql-pair">
                <figure>
                  <figcaption>up.sql (makes the target equal the source)</figcaption>
                  <pre class="log" data-testid="up-sql" tabIndex={0}>{sql.up}</pre>
                </figure>
                <figure>
                  <figcaption>down.sql (undoes it)</figcaption>
                  <pre class="log" data-testid="down-sql" tabIndex={0}>{sql.down}</pre>
                </figure>
              </div>
            )}
            {appliedHere && <p data-testid="applied-note">Applied to {genTarget} (job {appliedHere.id}).</p>}
            {can("migration:execute") && gen.verified && gen.up_steps > 0 && genJob?.state === "succeeded" && !appliedHere && (
              <div class="actions">
                <button class="danger" onClick={apply} disabled={isActive(applyJob)}>
                  Apply migration to {genTarget}
                </button>
              </div>
            )}
          </div>
        )}
        {applyJob && <JobLine job={applyJob} label={`apply to ${(applyJob.params as { target?: string }).target ?? ""}`} />}
      </section>

      <section aria-labelledby="hist-h">
        <h3 id="hist-h">History of {target}</h3>
        {historyError && <p class="error" role="alert">{historyError}</p>}
        {history && history.migrations.length === 0 && <p class="muted">No migration recorded on {history.target}.</p>}
        {history && history.migrations.length > 0 && (
          <>
            <table data-testid="history">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Migration</th>
                  <th scope="col">Status</th>
                  <th scope="col">Applied</th>
                  <th scope="col">Rolled back</th>
                </tr>
              </thead>
              <tbody>
                {[...history.migrations].reverse().map((m) => (
                  <tr data-testid={`migration-${m.id}`} data-status={m.status} data-name={m.name}>
                    <td class="num">{m.id}</td>
                    <td>
                      <code>{m.name}</code>
                      {m.error && <div class="error">{m.error}</div>}
                    </td>
                    <td>
                      <span class={`badge ${m.status === "applied" ? "good" : m.status.includes("fail") ? "bad" : "idle"}`}>{m.status.replace(/_/g, " ")}</span>
                    </td>
                    <td>{m.applied_at}</td>
                    <td>{m.rolled_back_at ?? "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <p class="muted" data-testid="matches-last" data-value={String(history.matches_last_applied)}>
              {history.matches_last_applied === true && "The schema is as the last applied migration left it."}
              {history.matches_last_applied === false && "The schema CHANGED since the last applied migration (rollback refuses)."}
            </p>
          </>
        )}
        {can("migration:rollback") && latest && (
          <div class="actions">
            <button class="danger" onClick={rollback} disabled={isActive(rollbackJob)}>
              Roll back migration {latest.id}
            </button>
          </div>
        )}
        {rollbackJob && <JobLine job={rollbackJob} label={`rollback on ${(rollbackJob.params as { target?: string }).target ?? ""}`} />}
      </section>
    </div>
  );
}
