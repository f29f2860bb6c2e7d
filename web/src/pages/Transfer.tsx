// Export / Import: export tables chosen by pattern in SQL, JSON or CSV as a job and download the
// files; import by upload (a .tar of an export directory, or its files packed here into one),
// validated first (every problem with file, line and column, nothing written), then imported
// on confirmation.
import { useEffect, useState } from "preact/hooks";
import { saveAs, withQuery, type Api, type Schemas } from "../api/client";
import type { PageProps } from "../main";
import { formatOf, patterns, problemWhere, size, tarFiles, tarList, type ImportProblem } from "./backups-logic";
import { asJob, errorText, jobOf, JobWatch, type Job } from "./JobWatch";
import "./Backups.css";

type Format = Schemas["Format"];
type ExportReport = { tables: number; rows: number; bytes: number; files: string[]; format: string; binlog_file?: string; binlog_pos?: number; gtid?: string | null };
type ImportReport = {
  dry_run: boolean;
  tables: { file: string; source: string; target: string; rows: number; create: boolean }[];
  rows: number;
  errors: ImportProblem[];
  more_errors: number;
  warnings: number;
  first_warning?: string | null;
};
const FORMATS: [Format, string][] = [
  ["sql", "SQL"],
  ["json", "JSON Lines"],
  ["csv", "CSV"],
];

function useServers(api: Api, can: PageProps["can"]): { servers: string[]; error: string | null } {
  const [servers, setServers] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!can("servers:read")) return;
    api.get("/api/v1/servers").then(
      (list) => setServers(list.map((s) => s.name)),
      (e: unknown) => setError(errorText(e)),
    );
  }, [api]);
  return { servers, error };
}

export function Transfer({ api, can }: PageProps) {
  const { servers, error } = useServers(api, can);
  const mayExport = can("backup:create");
  const mayImport = can("backup:restore");
  return (
    <div class="transfer">
      <h2>Export / Import</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!mayExport && !mayImport && (
        <p class="muted" data-testid="transfer-denied">
          Your role may not export or import (exports need backup:create, imports backup:restore).
        </p>
      )}
      {mayExport && <Export api={api} servers={servers} />}
      {mayImport && <Import api={api} servers={servers} />}
    </div>
  );
}

function Export({ api, servers }: { api: Api; servers: string[] }) {
  const [server, setServer] = useState("");
  const [include, setInclude] = useState("");
  const [exclude, setExclude] = useState("");
  const [format, setFormat] = useState<Format>("sql");
  const [content, setContent] = useState<"both" | "schema" | "data">("both");
  const [job, setJob] = useState<Job | null>(null);
  const [report, setReport] = useState<{ id: string; r: ExportReport } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const chosen = server || servers[0] || "";

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setReport(null);
    try {
      setJob(
        asJob(
          await api.send(
            "/api/v1/jobs/export",
            {},
            { server: chosen, format, include: patterns(include), exclude: patterns(exclude), schema_only: content === "schema", data_only: content === "data" },
          ),
        ),
      );
    } catch (err) {
      setError(errorText(err));
    }
  };
  const download = async (id: string, file?: string) => {
    setError(null);
    try {
      const url = file ? `/api/v1/jobs/${encodeURIComponent(id)}/files/${encodeURIComponent(file)}` : `/api/v1/jobs/${encodeURIComponent(id)}/download`;
      await saveAs(await api.raw("GET", url), file ?? `export-${id}.tar`);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section class="card" aria-label="Export">
      <h3>Export</h3>
      <form class="form-grid" onSubmit={submit}>
        <label for="ex-server">Server</label>
        <select id="ex-server" value={chosen} onChange={(e) => setServer(e.currentTarget.value)}>
          {servers.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <label for="ex-include">Tables to export (<code>schema\.table</code> regexes, one per line; empty = every user table)</label>
        <textarea id="ex-include" rows={2} value={include} onInput={(e) => setInclude(e.currentTarget.value)} placeholder="app\..*" />
        <label for="ex-exclude">Tables to leave out (optional)</label>
        <textarea id="ex-exclude" rows={1} value={exclude} onInput={(e) => setExclude(e.currentTarget.value)} />
        <label for="ex-format">Format</label>
        <select id="ex-format" value={format} onChange={(e) => setFormat(e.currentTarget.value as Format)}>
          {FORMATS.map(([v, t]) => (
            <option value={v}>{t}</option>
          ))}
        </select>
        <label for="ex-content">Content</label>
        <select id="ex-content" value={content} onChange={(e) => setContent(e.currentTarget.value as "both" | "schema" | "data")}>
          <option value="both">Table definitions and rows</option>
          <option value="schema">Table definitions only</option>
          <option value="data">Rows only</option>
        </select>
        <div>
          <button type="submit" disabled={!chosen}>
            Export
          </button>
        </div>
      </form>
      {job && (
        <JobWatch
          key={job.id}
          api={api}
          job={job}
          label="the export"
          onDone={(j) => j.state === "succeeded" && setReport({ id: j.id, r: j.result as unknown as ExportReport })}
        />
      )}
      {report && (
        <div data-testid="export-result" data-job={report.id} data-rows={report.r.rows}>
          <p>
            Exported {report.r.tables} table(s), {report.r.rows.toLocaleString("en-US")} rows, {size(report.r.bytes)} as {report.r.format.toUpperCase()}
            {report.r.binlog_file && (
              <>
                {" "}
                at <code>{report.r.gtid || `${report.r.binlog_file}:${report.r.binlog_pos}`}</code>
              </>
            )}
            .
          </p>
          <button type="button" onClick={() => download(report.id)}>
            Download all (tar)
          </button>
          <ul class="files">
            {report.r.files.map((f) => (
              <li>
                <button type="button" class="link" onClick={() => download(report.id, f)}>
                  Download {f}
                </button>
              </li>
            ))}
          </ul>
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

type OnConflict = "error" | "skip" | "replace" | "update";

function Import({ api, servers }: { api: Api; servers: string[] }) {
  const [server, setServer] = useState("");
  const [format, setFormat] = useState<Format | "">("");
  const [rename, setRename] = useState("");
  const [onConflict, setOnConflict] = useState<OnConflict>("error");
  const [files, setFiles] = useState<File[]>([]);
  /** The entries of a picked .tar (to tell its format). */
  const [tarNames, setTarNames] = useState<string[]>([]);
  const [checkJob, setCheckJob] = useState<Job | null>(null);
  const [checked, setChecked] = useState<ImportReport | null>(null);
  const [runJob, setRunJob] = useState<Job | null>(null);
  const [done, setDone] = useState<ImportReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const chosen = server || servers[0] || "";
  const names = files.map((f) => f.name);
  const detected = formatOf(tarNames.length ? tarNames : names);
  const chosenFormat: Format | null = format || detected;
  const overwrites = onConflict === "replace" || onConflict === "update";
  const reset = () => {
    setCheckJob(null);
    setChecked(null);
    setRunJob(null);
    setDone(null);
  };

  /** The upload: the picked .tar as it is, or the picked files packed into one. */
  const body = async (): Promise<Uint8Array> => {
    if (files.length === 1 && files[0].name.endsWith(".tar")) return new Uint8Array(await files[0].arrayBuffer());
    const packed = await Promise.all(files.map(async (f) => ({ name: f.name, data: new Uint8Array(await f.arrayBuffer()) })));
    return tarFiles(packed, Math.floor(Date.now() / 1000));
  };
  const start = async (planOnly: boolean): Promise<Job | null> => {
    setError(null);
    if (!chosenFormat) {
      setError("choose the export's format");
      return null;
    }
    if (files.length === 0) {
      setError("pick the export's files (export.json and its data files) or one .tar of them");
      return null;
    }
    try {
      const url = withQuery("/api/v1/jobs/import", {
        server: chosen,
        format: chosenFormat,
        rename_db: patterns(rename).join(","),
        on_conflict: onConflict,
        plan_only: planOnly ? "true" : undefined,
        confirm: !planOnly && overwrites ? "true" : undefined,
      });
      const data = await body();
      return await jobOf(await api.raw("POST", url, new Blob([data as BlobPart]), "application/octet-stream"));
    } catch (err) {
      setError(errorText(err));
      return null;
    }
  };
  const validate = async () => {
    reset();
    setCheckJob(await start(true));
  };
  const run = async () => {
    if (!checked) return;
    const what = `Import ${checked.rows.toLocaleString("en-US")} rows into ${checked.tables.length} table(s) on server ${chosen}${
      overwrites ? `, overwriting existing rows (${onConflict})` : ""
    }?`;
    if (!confirm(what)) return;
    setRunJob(await start(false));
  };

  return (
    <section class="card" aria-label="Import">
      <h3>Import</h3>
      <div class="form-grid">
        <label for="im-files">Export files (export.json and its data files, or one .tar of them)</label>
        <input
          id="im-files"
          type="file"
          multiple
          onChange={(e) => {
            const picked = Array.from(e.currentTarget.files ?? []);
            setFiles(picked);
            setTarNames([]);
            reset();
            if (picked.length === 1 && picked[0].name.endsWith(".tar")) {
              picked[0].arrayBuffer().then(
                (b) => setTarNames(tarList(new Uint8Array(b)).map((f) => f.name)),
                () => setTarNames([]),
              );
            }
          }}
        />
        <label for="im-server">Target server</label>
        <select
          id="im-server"
          value={chosen}
          onChange={(e) => {
            setServer(e.currentTarget.value);
            reset();
          }}
        >
          {servers.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <label for="im-format">Format</label>
        <select
          id="im-format"
          value={format}
          onChange={(e) => {
            setFormat(e.currentTarget.value as Format | "");
            reset();
          }}
        >
          <option value="">{detected ? `From the file names (${detected.toUpperCase()})` : "From the file names"}</option>
          {FORMATS.map(([v, t]) => (
            <option value={v}>{t}</option>
          ))}
        </select>
        <label for="im-rename">Rename databases (optional, OLD=NEW, comma separated)</label>
        <input
          id="im-rename"
          value={rename}
          onInput={(e) => {
            setRename(e.currentTarget.value);
            reset();
          }}
        />
        <label for="im-conflict">A row whose key exists on the target</label>
        <select
          id="im-conflict"
          value={onConflict}
          onChange={(e) => {
            setOnConflict(e.currentTarget.value as OnConflict);
            reset();
          }}
        >
          <option value="error">Stop the import (nothing is written)</option>
          <option value="skip">Keep the target's row</option>
          <option value="replace">Replace the target's row</option>
          <option value="update">Update the target's row</option>
        </select>
        <div>
          <button type="button" onClick={validate} disabled={files.length === 0}>
            Validate (writes nothing)
          </button>
        </div>
      </div>
      {files.length > 0 && (
        <p class="muted">
          {files.length} file(s): {names.join(", ")}
        </p>
      )}
      {checkJob && (
        <JobWatch
          key={checkJob.id}
          api={api}
          job={checkJob}
          label="the validation"
          onDone={(j) => j.state === "succeeded" && setChecked(j.result as unknown as ImportReport)}
        />
      )}
      {checked && <ImportResult report={checked} testid="import-validation" />}
      {checked && checked.errors.length === 0 && (
        <button type="button" class="danger" onClick={run} disabled={runJob !== null}>
          Import into {chosen}
        </button>
      )}
      {runJob && (
        <JobWatch key={runJob.id} api={api} job={runJob} label="the import" onDone={(j) => j.state === "succeeded" && setDone(j.result as unknown as ImportReport)} />
      )}
      {done && <ImportResult report={done} testid="import-result" />}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function ImportResult({ report, testid }: { report: ImportReport; testid: string }) {
  const bad = report.errors.length > 0;
  return (
    <div data-testid={testid} data-errors={report.errors.length + report.more_errors} data-rows={report.rows}>
      {bad ? (
        <>
          <p class="error" role="alert">
            {report.errors.length + report.more_errors} problem(s) in the input: nothing was written.
          </p>
          <table class="problems">
            <thead>
              <tr>
                <th scope="col">File</th>
                <th scope="col" class="num">Line</th>
                <th scope="col">Column</th>
                <th scope="col">Problem</th>
              </tr>
            </thead>
            <tbody>
              {report.errors.map((p) => (
                <tr data-testid="import-problem" data-file={p.file} data-line={p.line ?? ""} data-column={p.column ?? ""} title={problemWhere(p)}>
                  <td>{p.file}</td>
                  <td class="num">
                    {p.line ?? "–"}
                    {p.row ? <div class="muted">row {p.row}</div> : null}
                  </td>
                  <td>{p.column ?? "–"}</td>
                  <td>{p.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {report.more_errors > 0 && <p class="muted">and {report.more_errors} more.</p>}
        </>
      ) : (
        <>
          <p>
            {report.dry_run ? "Valid: would import" : "Imported"} {report.rows.toLocaleString("en-US")} rows into {report.tables.length} table(s)
            {report.warnings > 0 ? ` (${report.warnings} warning(s), first: ${report.first_warning ?? ""})` : ""}.
          </p>
          <ul>
            {report.tables.map((t) => (
              <li>
                {t.file} → {t.target}: {t.rows.toLocaleString("en-US")} rows{t.create ? " (table created)" : ""}
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
