// Backups: the list (size, rows, binlog position, verified state), take a backup, verify,
// download, the restore wizard (target and rename, point in time, dry run first, confirmation),
// backup schedules, the retention settings and a prune previewed before it deletes.
import { useState } from "preact/hooks";
import { saveAs, type Schemas } from "../api/client";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { isGtid, localToUtc, patterns, size, verifiedWords } from "./backups-logic";
import { asJob, errorText, JobWatch, type Job } from "./JobWatch";
import "./Backups.css";

type Backup = Schemas["BackupListEntryDoc"];

/** What a restore's dry run reports (`BackupRestoreReport`, the parts shown). */
type RestoreReport = {
  plan: {
    position?: string | null;
    databases: [string, string][];
    tables: { database: string; target_database: string; table: string; rows: number; files: number }[];
    views: [string, string][];
    existing: [string, string, string][];
    rows: number;
    bytes: number;
  };
  replay_plan?: { transactions: number; rows: number; start: string; last?: string | null } | null;
  restored?: { tables: number; rows: number } | null;
};
type PruneReport = { dry_run: boolean; rules: boolean; deleted: { id: string; reason: string }[] };

export function Backups({ api, can }: PageProps) {
  const mayRead = can("backup:create");
  const { data, error, reload } = useLive(
    api,
    async () => {
      const [backups, settings, schedules, servers] = await Promise.all([
        mayRead ? api.get("/api/v1/backups") : Promise.resolve(null),
        mayRead ? api.get("/api/v1/backup-settings") : Promise.resolve(null),
        can("syncs:read") ? api.get("/api/v1/schedules") : Promise.resolve([]),
        can("servers:read") ? api.get("/api/v1/servers") : Promise.resolve([]),
      ]);
      return { backups, settings, schedules: schedules.filter((s) => s.kind === "backup"), servers: servers.map((s) => s.name) };
    },
    { events: (e) => e.event === "job_progress", everyMs: 5000 },
  );
  const [jobs, setJobs] = useState<{ job: Job; label: string }[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const [restoreId, setRestoreId] = useState<string | null>(null);

  const started = (job: Job, label: string) => setJobs((js) => [{ job, label }, ...js.filter((j) => j.job.id !== job.id)].slice(0, 6));

  const verify = async (id: string) => {
    setNotice(null);
    try {
      started(asJob(await api.send("/api/v1/jobs/backup-verify", {}, { id })), `verify of ${id}`);
    } catch (e) {
      setNotice(errorText(e));
    }
  };
  const download = async (id: string) => {
    setNotice(null);
    try {
      await saveAs(await api.raw("GET", `/api/v1/backups/${encodeURIComponent(id)}/download`), `${id}.tar`);
    } catch (e) {
      setNotice(errorText(e));
    }
  };

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  return (
    <div class="backups">
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {notice && (
        <p class="error" role="alert">
          {notice}
        </p>
      )}
      <h2>Backups</h2>
      {jobs.length > 0 && (
        <section class="card" aria-label="Jobs started here">
          {jobs.map(({ job, label }) => (
            <div key={job.id}>
              <strong>{label}</strong> <JobWatch api={api} job={job} label={label} onDone={() => reload()} />
            </div>
          ))}
        </section>
      )}
      {!mayRead ? (
        <p class="muted" data-testid="backups-denied">
          Your role may not read backups (it needs the backup:create permission).
        </p>
      ) : (
        <>
          {data.settings && !data.settings.configured && <p class="muted">Backups are not configured: set <code>[backup] dir</code> in the configuration file.</p>}
          <CreateBackup api={api} servers={data.servers} onStarted={(j) => started(j, `backup of ${String(j.params.server ?? "")}`)} />
          <BackupList
            backups={data.backups ?? []}
            canRestore={can("backup:restore")}
            onVerify={verify}
            onDownload={download}
            onRestore={(id) => {
              setRestoreId(id);
              setTimeout(() => document.getElementById("restore-wizard")?.scrollIntoView());
            }}
          />
          {can("backup:restore") && restoreId !== null && (
            <RestoreWizard
              key={restoreId}
              api={api}
              backups={(data.backups ?? []).filter((b) => b.status === "complete")}
              servers={data.servers}
              initial={restoreId}
              onClose={() => setRestoreId(null)}
            />
          )}
        </>
      )}
      <Schedules api={api} can={can} schedules={data.schedules} servers={data.servers} settings={data.settings} onChange={reload} onStarted={started} />
    </div>
  );
}

function CreateBackup({ api, servers, onStarted }: { api: PageProps["api"]; servers: string[]; onStarted: (j: Job) => void }) {
  const [server, setServer] = useState("");
  const [include, setInclude] = useState("");
  const [error, setError] = useState<string | null>(null);
  const chosen = server || servers[0] || "";
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      onStarted(asJob(await api.send("/api/v1/jobs/backup-create", {}, { server: chosen, include: patterns(include) })));
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <form class="card form-grid" onSubmit={submit} aria-label="Take a backup">
      <h3>Take a backup</h3>
      <label for="bk-server">Server</label>
      <select id="bk-server" value={chosen} onChange={(e) => setServer(e.currentTarget.value)}>
        {servers.map((s) => (
          <option value={s}>{s}</option>
        ))}
      </select>
      <label for="bk-include">Tables (optional: <code>schema\.table</code> regexes, one per line; empty = every table)</label>
      <textarea id="bk-include" rows={2} value={include} onInput={(e) => setInclude(e.currentTarget.value)} placeholder="app\..*" />
      <div>
        <button type="submit" disabled={!chosen}>
          Take backup
        </button>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

function BackupList(props: {
  backups: Backup[];
  canRestore: boolean;
  onVerify: (id: string) => void;
  onDownload: (id: string) => void;
  onRestore: (id: string) => void;
}) {
  if (props.backups.length === 0) return <p class="muted">No backup yet.</p>;
  return (
    <section class="card" aria-label="Backups">
      <table class="backup-list">
        <thead>
          <tr>
            <th scope="col">Backup</th>
            <th scope="col">Server</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">Size</th>
            <th scope="col" class="num">Rows</th>
            <th scope="col">Binlog position</th>
            <th scope="col">Finished</th>
            <th scope="col">Verified</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {[...props.backups].reverse().map((b) => {
            const complete = b.status === "complete";
            return (
              <tr key={b.id} data-testid={`backup-${b.id}`} data-status={b.status} data-verified={b.verified.state} data-server={b.server ?? ""}>
                <td data-label="Backup">
                  <code>{b.id}</code>
                </td>
                <td data-label="Server">{b.server ?? "–"}</td>
                <td data-label="Status">
                  <span class={`badge ${complete ? "good" : b.status === "running" ? "warn" : "bad"}`}>{b.status}</span>
                  {b.error && <div class="error">{b.error}</div>}
                </td>
                <td data-label="Size" class="num">{size(b.bytes)}</td>
                <td data-label="Rows" class="num" data-value={b.rows ?? ""}>
                  {b.rows?.toLocaleString("en-US") ?? "–"}
                  {b.tables !== null && b.tables !== undefined && <div class="muted">{b.tables} tables</div>}
                </td>
                <td data-label="Binlog position">
                  <code>{b.position ?? "–"}</code>
                </td>
                <td data-label="Finished">{b.finished ? new Date(b.finished).toLocaleString() : "–"}</td>
                <td data-label="Verified" data-testid="verified">
                  <span class={`badge ${b.verified.state === "verified" ? "good" : b.verified.state === "failed" ? "bad" : "idle"}`}>
                    {verifiedWords(b.verified)}
                  </span>
                </td>
                <td data-label="Actions">
                  {complete && (
                    <div class="actions">
                      <button type="button" onClick={() => props.onVerify(b.id)}>
                        Verify
                      </button>
                      <button type="button" onClick={() => props.onDownload(b.id)}>
                        Download
                      </button>
                      {props.canRestore && (
                        <button type="button" class="danger" onClick={() => props.onRestore(b.id)}>
                          Restore…
                        </button>
                      )}
                    </div>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

type Pit = "none" | "time" | "gtid";

function RestoreWizard(props: { api: PageProps["api"]; backups: Backup[]; servers: string[]; initial: string; onClose: () => void }) {
  const { api } = props;
  const [id, setId] = useState(props.initial);
  const [target, setTarget] = useState("");
  const [rename, setRename] = useState("");
  const [pit, setPit] = useState<Pit>("none");
  const [time, setTime] = useState("");
  const [gtid, setGtid] = useState("");
  const [planJob, setPlanJob] = useState<Job | null>(null);
  const [plan, setPlan] = useState<RestoreReport | null>(null);
  const [typed, setTyped] = useState("");
  const [runJob, setRunJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const chosenTarget = target || props.servers[0] || "";
  const renames = patterns(rename);

  const request = (): Schemas["BackupRestoreRequest"] | string => {
    const badRename = renames.find((r) => !/^[^=\s]+=[^=\s]+$/.test(r));
    if (badRename) return `rename ${JSON.stringify(badRename)}: write OLD=NEW`;
    const req: Schemas["BackupRestoreRequest"] = { id, to_server: chosenTarget, rename_db: renames };
    if (pit === "time") {
      const t = localToUtc(time);
      if (!t) return "choose a date and time to restore to";
      req.to_time = t;
    }
    if (pit === "gtid") {
      if (!isGtid(gtid)) return "a GTID position looks like 0-1-1234 (several separated by commas)";
      req.to_gtid = gtid.trim();
    }
    return req;
  };
  // Any change to steps 1–2 invalidates the dry run.
  const changed = <T,>(set: (v: T) => void) => (v: T) => {
    set(v);
    setPlan(null);
    setPlanJob(null);
    setRunJob(null);
  };

  const dryRun = async () => {
    setError(null);
    const req = request();
    if (typeof req === "string") return setError(req);
    try {
      setPlan(null);
      setPlanJob(asJob(await api.send("/api/v1/jobs/backup-restore", {}, { ...req, plan_only: true })));
    } catch (e) {
      setError(errorText(e));
    }
  };
  const run = async () => {
    setError(null);
    const req = request();
    if (typeof req === "string" || !plan) return setError(typeof req === "string" ? req : "run the dry run first");
    const replaced = plan.plan.existing.length;
    const what =
      `Restore backup ${id} to server ${chosenTarget}` +
      (renames.length ? ` (renamed: ${renames.join(", ")})` : "") +
      (replaced ? `, dropping and replacing ${replaced} existing table(s)/view(s)` : "") +
      "?";
    if (!confirm(what)) return;
    try {
      setRunJob(asJob(await api.send("/api/v1/jobs/backup-restore", {}, { ...req, confirm: replaced > 0 })));
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <section class="card wizard" id="restore-wizard" aria-label="Restore wizard">
      <div class="card-head">
        <h3>Restore a backup</h3>
        <button type="button" class="link" onClick={props.onClose}>
          Close the wizard
        </button>
      </div>
      <fieldset>
        <legend>1. Backup and target</legend>
        <div class="form-grid">
          <label for="rs-backup">Backup</label>
          <select id="rs-backup" value={id} onChange={(e) => changed(setId)(e.currentTarget.value)}>
            {props.backups.map((b) => (
              <option value={b.id}>
                {b.id} ({b.server}, {b.rows?.toLocaleString("en-US")} rows)
              </option>
            ))}
          </select>
          <label for="rs-target">Target server</label>
          <select id="rs-target" value={chosenTarget} onChange={(e) => changed(setTarget)(e.currentTarget.value)}>
            {props.servers.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
          <label for="rs-rename">Rename databases (optional, OLD=NEW, comma separated)</label>
          <input id="rs-rename" value={rename} onInput={(e) => changed(setRename)(e.currentTarget.value)} placeholder="app=app_restored" />
        </div>
      </fieldset>
      <fieldset>
        <legend>2. Point in time</legend>
        <div class="choices">
          {(
            [
              ["none", "The backup as it was taken"],
              ["time", "A date and time (binlog archive replay)"],
              ["gtid", "A GTID position (binlog archive replay)"],
            ] as [Pit, string][]
          ).map(([v, text]) => (
            <label>
              <input type="radio" name="rs-pit" value={v} checked={pit === v} onChange={() => changed(setPit)(v)} /> {text}
            </label>
          ))}
        </div>
        {pit === "time" && (
          <div class="form-grid">
            <label for="rs-time">Restore up to (your local time; sent as UTC)</label>
            <input id="rs-time" type="datetime-local" step={1} value={time} onInput={(e) => changed(setTime)(e.currentTarget.value)} />
            <span class="muted">UTC: {localToUtc(time) ?? "–"}</span>
          </div>
        )}
        {pit === "gtid" && (
          <div class="form-grid">
            <label for="rs-gtid">GTID position (up to and including)</label>
            <input id="rs-gtid" value={gtid} onInput={(e) => changed(setGtid)(e.currentTarget.value)} placeholder="0-1-1234" />
          </div>
        )}
      </fieldset>
      <fieldset>
        <legend>3. Dry run</legend>
        <button type="button" onClick={dryRun}>
          Plan the restore (dry run)
        </button>
        {planJob && (
          <JobWatch
            key={planJob.id}
            api={api}
            job={planJob}
            label="the restore's dry run"
            onDone={(j) => j.state === "succeeded" && setPlan(j.result as unknown as RestoreReport)}
          />
        )}
        {plan && <RestorePlan report={plan} />}
      </fieldset>
      {plan && (
        <fieldset>
          <legend>4. Confirm and restore</legend>
          <div class="form-grid">
            <label for="rs-confirm">Type the target server's name ({chosenTarget}) to confirm</label>
            <input id="rs-confirm" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} autocomplete="off" />
          </div>
          <button type="button" class="danger" disabled={typed !== chosenTarget || runJob !== null} onClick={run}>
            Restore to {chosenTarget}
          </button>
          {runJob && <JobWatch key={runJob.id} api={api} job={runJob} label="the restore" />}
        </fieldset>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function RestorePlan({ report }: { report: RestoreReport }) {
  const p = report.plan;
  return (
    <div data-testid="restore-plan" data-rows={p.rows} data-existing={p.existing.length}>
      <p>
        Restores {p.tables.length} table(s) and {p.views.length} view(s), {p.rows.toLocaleString("en-US")} rows ({size(p.bytes)}), position{" "}
        <code>{p.position ?? "–"}</code>, databases {p.databases.map(([a, b]) => (a === b ? a : `${a} → ${b}`)).join(", ")}.
      </p>
      {p.existing.length > 0 ? (
        <p class="error">
          Replaces what exists on the target: {p.existing.map(([db, name, kind]) => `${db}.${name} (${kind.toLowerCase()})`).join(", ")}
        </p>
      ) : (
        <p class="muted">Nothing on the target is replaced.</p>
      )}
      {report.replay_plan && (
        <p>
          Then replays {report.replay_plan.transactions} transaction(s), {report.replay_plan.rows} row(s) from the binlog archive, from{" "}
          <code>{report.replay_plan.start}</code> to <code>{report.replay_plan.last ?? "–"}</code>.
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Table</th>
            <th scope="col">Restored as</th>
            <th scope="col" class="num">Rows</th>
          </tr>
        </thead>
        <tbody>
          {p.tables.map((t) => (
            <tr>
              <td>
                {t.database}.{t.table}
              </td>
              <td>
                {t.target_database}.{t.table}
              </td>
              <td class="num">{t.rows.toLocaleString("en-US")}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Schedules(props: {
  api: PageProps["api"];
  can: PageProps["can"];
  schedules: Schemas["Schedule"][];
  servers: string[];
  settings: Schemas["BackupSettingsDoc"] | null;
  onChange: () => void;
  onStarted: (j: Job, label: string) => void;
}) {
  const { api, can, settings } = props;
  const [name, setName] = useState("");
  const [cron, setCron] = useState("0 3 * * *");
  const [server, setServer] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [pruneJob, setPruneJob] = useState<Job | null>(null);
  const [prunePlan, setPrunePlan] = useState<PruneReport | null>(null);
  const chosen = server || props.servers[0] || "";
  const manage = can("schedule:manage");

  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await api.send("/api/v1/schedules", {}, { name, cron, kind: "backup", target: chosen });
      setName("");
      props.onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const remove = async (n: string) => {
    if (!confirm(`Delete the backup schedule ${n}? No more backups are taken on it.`)) return;
    setError(null);
    try {
      await api.del("/api/v1/schedules/{name}", { path: { name: n } });
      props.onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const previewPrune = async () => {
    setError(null);
    setPrunePlan(null);
    try {
      setPruneJob(asJob(await api.send("/api/v1/jobs/backup-prune", {}, { plan_only: true })));
    } catch (err) {
      setError(errorText(err));
    }
  };
  const prune = async () => {
    if (!prunePlan) return;
    if (!confirm(`Delete ${prunePlan.deleted.length} backup(s): ${prunePlan.deleted.map((d) => d.id).join(", ")}?`)) return;
    setError(null);
    try {
      const j = asJob(await api.send("/api/v1/jobs/backup-prune", {}, { confirm: true }));
      setPrunePlan(null);
      setPruneJob(null);
      props.onStarted(j, "prune");
    } catch (err) {
      setError(errorText(err));
    }
  };
  const r = settings?.retention;
  return (
    <section class="card" aria-label="Schedules and retention">
      <h3>Schedules and retention</h3>
      {settings && (
        <dl class="settings" data-testid="backup-settings">
          <dt>Retention</dt>
          <dd data-testid="retention">
            {r && (r.keep_last || r.max_age_days)
              ? [r.keep_last ? `keep the last ${r.keep_last} per server` : "", r.max_age_days ? `delete after ${r.max_age_days} days` : ""].filter(Boolean).join(", ")
              : "keep every backup (no [backup.retention] rule)"}
          </dd>
          <dt>File schedule</dt>
          <dd>{settings.schedule ? <code>{settings.schedule}</code> : "none"}</dd>
          <dt>Storage</dt>
          <dd>
            {settings.compression}, {settings.encrypted ? "encrypted" : "not encrypted"}; binlog archive {settings.archive_binlog ? "on" : "off"}
          </dd>
        </dl>
      )}
      {props.schedules.length === 0 ? (
        <p class="muted">No backup schedule made over the API.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Schedule</th>
              <th scope="col">Cron (UTC)</th>
              <th scope="col">Server</th>
              {manage && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {props.schedules.map((s) => (
              <tr data-testid={`schedule-${s.name}`}>
                <td>{s.name}</td>
                <td>
                  <code>{s.cron}</code>
                </td>
                <td>{s.target}</td>
                {manage && (
                  <td>
                    <button type="button" class="danger" onClick={() => remove(s.name)}>
                      Delete schedule
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {manage && (
        <form class="form-grid" onSubmit={create} aria-label="New backup schedule">
          <label for="sc-name">Schedule name</label>
          <input id="sc-name" value={name} onInput={(e) => setName(e.currentTarget.value)} pattern="[A-Za-z0-9_\-]{1,64}" required />
          <label for="sc-cron">Cron (UTC, 5 or 6 fields)</label>
          <input id="sc-cron" value={cron} onInput={(e) => setCron(e.currentTarget.value)} required />
          <label for="sc-server">Server</label>
          <select id="sc-server" value={chosen} onChange={(e) => setServer(e.currentTarget.value)}>
            {props.servers.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
          <div>
            <button type="submit">Add schedule</button>
          </div>
        </form>
      )}
      {can("backup:create") && settings?.configured && (
        <div class="prune">
          <button type="button" onClick={previewPrune}>
            Preview prune
          </button>
          {pruneJob && (
            <JobWatch
              key={pruneJob.id}
              api={api}
              job={pruneJob}
              label="the prune preview"
              onDone={(j) => j.state === "succeeded" && setPrunePlan(j.result as unknown as PruneReport)}
            />
          )}
          {prunePlan && (
            <div data-testid="prune-plan" data-count={prunePlan.deleted.length}>
              {!prunePlan.rules ? (
                <p class="muted">No retention rule: a prune deletes nothing.</p>
              ) : prunePlan.deleted.length === 0 ? (
                <p class="muted">Every backup is within the retention rules: nothing to delete.</p>
              ) : (
                <>
                  <ul>
                    {prunePlan.deleted.map((d) => (
                      <li>
                        would delete <code>{d.id}</code>: {d.reason}
                      </li>
                    ))}
                  </ul>
                  <button type="button" class="danger" onClick={prune}>
                    Delete {prunePlan.deleted.length} backup(s)
                  </button>
                </>
              )}
            </div>
          )}
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
