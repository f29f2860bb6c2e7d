// Health: run a server's checks (a job), each check with its status, summary, evidence,
// suggestions and fix SQL; the fix preview (what `health --fix` would run: the dry-run plan of
// the `health-fix` job, `plan_only`) and applying the safe fixes after a confirmation.
import { useEffect, useState } from "preact/hooks";
import type { PageProps } from "../main";
import { isActive, JobLine, useJobs, useJobStarter } from "./jobpanel";
import { evidenceLines, healthTone, safeFixes, worstFirst } from "./schema-logic";
import { useServers } from "./Schema";
import "./Schema.css";

type Check = {
  name: string;
  category: string;
  status: string;
  summary: string;
  evidence: unknown;
  suggestions: string[];
  fix?: { sql: string[]; safe: boolean } | null;
};
type FixOutcome = { check: string; sql: string; applied: boolean; note?: string | null };
type Report = { server: string; status: string; checked_at: string; duration_ms: number; checks: Check[]; fixes?: FixOutcome[] };

function CheckItem({ c }: { c: Check }) {
  const lines = evidenceLines(c.evidence);
  return (
    <li class="card" data-testid={`check-${c.name}`} data-status={c.status}>
      <div class="checks-row">
        <strong>{c.name}</strong>
        <span class={`badge ${healthTone(c.status)}`}>{c.status}</span>
        <span class="muted">{c.category}</span>
      </div>
      <p>{c.summary}</p>
      {c.status !== "pass" && lines.length > 0 && (
        <details open={c.status === "fail" || c.status === "warn"}>
          <summary>Evidence</summary>
          <ul class="evidence" data-testid="evidence">
            {lines.map((l) => (
              <li>{l}</li>
            ))}
          </ul>
        </details>
      )}
      {c.suggestions.length > 0 && (
        <ul data-testid="suggestions">
          {c.suggestions.map((s) => (
            <li>{s}</li>
          ))}
        </ul>
      )}
      {c.fix && (
        <div>
          <span class={`badge ${c.fix.safe ? "good" : "warn"}`}>{c.fix.safe ? "safe fix" : "fix to review (not applied by fleetsync)"}</span>
          <pre class="log">{c.fix.sql.join(";\n")}</pre>
        </div>
      )}
    </li>
  );
}

export function Health({ api, can }: PageProps) {
  const servers = useServers(api, can);
  const [server, setServer] = useState("");
  const { data: jobs, error, reload } = useJobs(api, ["health", "health_fix"]);
  const { ids, notice, start } = useJobStarter(reload);

  useEffect(() => {
    if (servers.length && !server) setServer(servers[0]);
  }, [servers]);

  const onServer = (j: { params: unknown }) => !server || (j.params as { server?: string }).server === server;
  const planOnly = (j: { params: unknown }) => (j.params as { plan_only?: boolean }).plan_only === true;
  const pick = (key: string, match: (j: NonNullable<typeof jobs>[number]) => boolean) =>
    ids[key] ? jobs?.find((j) => j.id === ids[key]) : jobs?.find((j) => match(j) && onServer(j));
  const checkJob = pick("health", (j) => j.kind === "health");
  const previewJob = pick("preview", (j) => j.kind === "health_fix" && planOnly(j));
  const applyJob = pick("apply", (j) => j.kind === "health_fix" && !planOnly(j));
  const report = checkJob?.result as Report | null | undefined;
  const preview = previewJob?.result as Report | null | undefined;
  const applied = applyJob?.result as Report | null | undefined;
  const planned = safeFixes(preview?.fixes ?? []);

  const check = () => start("health", () => api.send("/api/v1/jobs/health", {}, { server }));
  const previewFixes = () => start("preview", () => api.send("/api/v1/jobs/health-fix", {}, { server, plan_only: true, confirm: false }));
  const applyFixes = () => {
    const target = (previewJob?.params as { server?: string }).server ?? server;
    const list = planned.map((f) => `  ${f.sql}`).join("\n");
    if (!confirm(`Apply ${planned.length} safe fix(es) on server ${target}? These statements run:\n${list}`)) return;
    void start("apply", () => api.send("/api/v1/jobs/health-fix", {}, { server: target, plan_only: false, confirm: true }));
  };

  return (
    <div class="schema-page">
      <h2>Health</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && (
        <p class="error" role="alert">
          {notice}
        </p>
      )}
      <section class="card">
        <label for="health-server">Server</label>{" "}
        {servers.length ? (
          <select id="health-server" value={server} onChange={(e) => setServer(e.currentTarget.value)}>
            {servers.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        ) : (
          <input id="health-server" value={server} onInput={(e) => setServer(e.currentTarget.value)} />
        )}
        <div class="actions">
          {can("validation:run") && (
            <button onClick={check} disabled={!server || isActive(checkJob)}>
              Run health checks
            </button>
          )}
          {can("integrity:repair") && (
            <button onClick={previewFixes} disabled={!server || isActive(previewJob)}>
              Preview fixes
            </button>
          )}
        </div>
      </section>

      <section aria-labelledby="checks-h">
        <h3 id="checks-h">Checks</h3>
        {!checkJob && <p class="muted">No health check of this server yet.</p>}
        {checkJob && <JobLine job={checkJob} label={`health of ${(checkJob.params as { server?: string }).server ?? ""}`} />}
        {report && (
          <div data-testid="health-report" data-status={report.status}>
            <p>
              Server <strong>{report.server}</strong>:{" "}
              <span class={`badge ${healthTone(report.status)}`} data-testid="overall">
                {report.status}
              </span>{" "}
              <span class="muted">
                checked {new Date(report.checked_at).toLocaleString()} in {report.duration_ms} ms
              </span>
            </p>
            <ul class="check-list">
              {worstFirst(report.checks).map((c) => (
                <CheckItem c={c} />
              ))}
            </ul>
          </div>
        )}
      </section>

      <section aria-labelledby="fix-h">
        <h3 id="fix-h">Fixes</h3>
        {!previewJob && <p class="muted">No fix preview yet{can("integrity:repair") ? ": press Preview fixes" : ""}.</p>}
        {previewJob && <JobLine job={previewJob} label={`fix preview of ${(previewJob.params as { server?: string }).server ?? ""}`} />}
        {preview && (
          <div data-testid="fix-preview" data-count={planned.length}>
            {(preview.fixes ?? []).length === 0 && <p>Nothing to fix.</p>}
            <table>
              <thead>
                <tr>
                  <th scope="col">Check</th>
                  <th scope="col">Statement</th>
                  <th scope="col">Would run</th>
                </tr>
              </thead>
              <tbody>
                {(preview.fixes ?? []).map((f) => (
                  <tr data-testid="fix" data-check={f.check} data-safe={String(f.note === "dry run")}>
                    <td>{f.check}</td>
                    <td>
                      <code>{f.sql}</code>
                    </td>
                    <td>{f.note === "dry run" ? "yes (safe)" : `no: ${f.note ?? ""}`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {can("integrity:repair") && planned.length > 0 && previewJob?.state === "succeeded" && (
              <div class="actions">
                <button class="danger" onClick={applyFixes} disabled={isActive(applyJob)}>
                  Apply {planned.length} safe fix(es)
                </button>
              </div>
            )}
          </div>
        )}
        {applyJob && <JobLine job={applyJob} label={`fixes on ${(applyJob.params as { server?: string }).server ?? ""}`} />}
        {applied && (
          <ul data-testid="fix-applied" data-status={applied.status}>
            {(applied.fixes ?? []).map((f) => (
              <li data-applied={String(f.applied)}>
                {f.applied ? "applied" : `not applied (${f.note ?? ""})`}: <code>{f.sql}</code>
              </li>
            ))}
            <li>
              After the fixes the server is <span class={`badge ${healthTone(applied.status)}`}>{applied.status}</span>
            </li>
          </ul>
        )}
      </section>
    </div>
  );
}
