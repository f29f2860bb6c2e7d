// Conflicts: the manual conflict queue of every target. The log with filters (status, target,
// table, origin, detection time), one conflict's three images (before, incoming, local) with
// the differing columns marked, resolution by a side or a merged row (dry-run plan first,
// then a confirmation), and bulk resolution by a rule (preview of every row, then apply).
// Deep links: `#/conflicts/<target>/<id>`. Resolving needs `conflicts:resolve`.
import { useEffect, useState } from "preact/hooks";
import { problemText, type Api, type Schemas } from "../api/client";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { subPath } from ".";
import {
  compare,
  conflictHref,
  fieldOf,
  filterLocal,
  keyWords,
  mergedRow,
  selected,
  show,
  type Compared,
  type Json,
  type MergedField,
  type Row,
} from "./conflicts-logic";
import "./Conflicts.css";

type ConflictDoc = Schemas["ConflictDoc"];
type BulkReport = Schemas["BulkResolveReport"];
type Filters = { status: "open" | "resolved" | "all"; target: string; table: string; origin: string; from: string; to: string };

const NO_FILTERS: Filters = { status: "open", target: "", table: "", origin: "", from: "", to: "" };

const words = problemText;

export function Conflicts({ api, can }: PageProps) {
  const [sub, setSub] = useState(subPath(location.hash));
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  useEffect(() => {
    const onHash = () => setSub(subPath(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  const sel = selected(sub);
  const { data, error, reload } = useLive(
    api,
    async () => {
      const list = await api.query("/api/v1/conflicts", {
        query: { status: filters.status, target: filters.target.trim() || undefined, table: filters.table.trim() || undefined },
      });
      let detail: ConflictDoc | null = null;
      let detailError: string | null = null;
      if (sel) {
        try {
          detail = await api.get("/api/v1/conflicts/{target}/{id}", { target: sel.target, id: sel.id });
        } catch (e) {
          detailError = words(e);
        }
      }
      return { list, detail, detailError };
    },
    { events: (e) => e.event === "conflict", everyMs: 5000 },
  );
  useEffect(reload, [filters, sel?.target, sel?.id]);
  const set = (k: keyof Filters) => (e: { currentTarget: { value: string } }) => setFilters({ ...filters, [k]: e.currentTarget.value });
  const shown = data ? filterLocal(data.list, filters) : [];
  const detail = data?.detail && sel && data.detail.target === sel.target && data.detail.id === sel.id ? data.detail : null;

  return (
    <>
      <h2>Conflicts</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {sel && (
        <section class="card" aria-label={`conflict ${sel.id} on ${sel.target}`}>
          <p>
            <a href="#/conflicts">← All conflicts</a>
          </p>
          {data?.detailError && <p class="error" role="alert">{data.detailError}</p>}
          {detail ? <Detail api={api} c={detail} canResolve={can("conflicts:resolve")} onDone={reload} /> : !data?.detailError && <p aria-busy="true">Loading…</p>}
        </section>
      )}
      <section class="card" aria-labelledby="conflict-log">
        <h3 id="conflict-log">Conflict log</h3>
        <form class="cx-filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Status
            <select value={filters.status} onChange={set("status")} data-testid="filter-status">
              <option value="open">open</option>
              <option value="resolved">resolved</option>
              <option value="all">all</option>
            </select>
          </label>
          <label>
            Target
            <input value={filters.target} onInput={set("target")} placeholder="any" />
          </label>
          <label>
            Table
            <input value={filters.table} onInput={set("table")} placeholder="schema.table" />
          </label>
          <label>
            Origin
            <input value={filters.origin} onInput={set("origin")} placeholder="any" />
          </label>
          <label>
            Detected from
            <input type="datetime-local" step={1} value={filters.from} onInput={set("from")} />
          </label>
          <label>
            Detected before
            <input type="datetime-local" step={1} value={filters.to} onInput={set("to")} />
          </label>
          <button type="button" class="link" onClick={() => setFilters(NO_FILTERS)}>
            Clear filters
          </button>
        </form>
        {!data ? (
          <p aria-busy="true">Loading…</p>
        ) : shown.length === 0 ? (
          <p class="muted" data-testid="no-conflicts">
            No conflict matches.
          </p>
        ) : (
          <table data-testid="conflict-list" data-count={shown.length}>
            <thead>
              <tr>
                <th scope="col">Conflict</th>
                <th scope="col">Table</th>
                <th scope="col">Key</th>
                <th scope="col">From</th>
                <th scope="col">Detected</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((c) => (
                <tr data-testid={`conflict-${c.target}-${c.id}`} data-state={c.status} aria-current={sel?.target === c.target && sel.id === c.id ? "true" : undefined}>
                  <td>
                    <a href={conflictHref(c.target, c.id)}>
                      #{c.id} on {c.target}
                    </a>
                  </td>
                  <td>
                    {c.schema}.{c.table}
                  </td>
                  <td>{keyWords(c.key)}</td>
                  <td>{c.origin}</td>
                  <td class="muted">{c.detected_at}</td>
                  <td>
                    <span class={`badge ${c.status === "open" ? "warn" : "good"}`}>{c.status}</span>
                    {c.resolution && <div class="muted">{c.resolution}</div>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      {can("conflicts:resolve") && filters.status === "open" && data && (
        <Bulk api={api} filters={filters} count={shown.length} onDone={reload} />
      )}
    </>
  );
}

function Cell({ side, value, row, col }: { side: string; value: Json | undefined; row: Row | undefined; col: Compared }) {
  const changed = side === "incoming" ? col.incomingChanged : side === "local" ? col.localChanged : false;
  const cls = [side !== "before" && col.differs ? "cx-differs" : "", changed ? "cx-changed" : ""].join(" ").trim();
  let text: string;
  if (row === undefined) text = "not recorded";
  else if (row === null) text = side === "incoming" ? "(deleted)" : "(no row)";
  else text = show(value);
  return (
    <td class={cls || undefined} data-testid={`${side}-${col.column}`} data-value={text}>
      {text}
      {changed && <span class="cx-mark"> (changed)</span>}
    </td>
  );
}

type Plan = { label: string; body: Schemas["ResolveRequest"]; statement: string | null; resolution: string };

function Detail({ api, c, canResolve, onDone }: { api: Api; c: ConflictDoc; canResolve: boolean; onDone: () => void }) {
  const before: Row | undefined = c.before_recorded ? ((c.before ?? null) as Row) : undefined;
  const incoming = (c.incoming ?? null) as Row;
  const local = (c.local ?? null) as Row;
  const cols = compare(before, incoming, local);
  const keyCols = Object.keys((c.key ?? {}) as object);
  const [plan, setPlan] = useState<Plan | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [fields, setFields] = useState<Record<string, MergedField> | null>(null);
  const ident = `conflict ${c.id} on ${c.target}`;
  useEffect(() => {
    setPlan(null);
    setFields(null);
    setProblem(null);
    setNotice(null);
  }, [c.target, c.id]);

  const call = (dry: boolean, body: Plan["body"]) =>
    api.send("/api/v1/conflicts/{target}/{id}/resolve", { path: { target: c.target, id: c.id }, query: { dry_run: dry } }, body);

  const preview = async (label: string, body: Plan["body"]) => {
    setProblem(null);
    setNotice(null);
    try {
      const r = await call(true, body);
      setPlan({ label, body, statement: r.statement ?? null, resolution: r.resolution });
    } catch (e) {
      setPlan(null);
      setProblem(words(e));
    }
  };
  const apply = async () => {
    if (!plan) return;
    if (!confirm(`Resolve ${ident} (${c.schema}.${c.table}, ${keyWords(c.key)}): ${plan.label}? This writes on ${c.target}.`)) return;
    try {
      const r = await call(false, plan.body);
      setNotice(`Resolved: ${r.resolution}.`);
      setPlan(null);
      setFields(null);
    } catch (e) {
      setProblem(words(e));
    }
    onDone();
  };
  const startMerge = (from: "incoming" | "local") => {
    const f: Record<string, MergedField> = {};
    for (const col of cols) f[col.column] = fieldOf(from === "incoming" ? col.incoming : col.local);
    setFields(f);
    setPlan(null);
  };
  const setField = (column: string, v: MergedField) => {
    if (fields) setFields({ ...fields, [column]: v });
    setPlan(null);
  };

  return (
    <>
      <div class="card-head">
        <h3>
          Conflict {c.id} on {c.target}: {c.schema}.{c.table} ({keyWords(c.key)})
        </h3>
        <span class={`badge ${c.status === "open" ? "warn" : "good"}`} data-testid="detail-status" data-state={c.status}>
          {c.status}
        </span>
      </div>
      <p class="muted">
        Sync {c.sync}: a change from {c.origin} (at {c.source_position}) met a different row on {c.target}, detected {c.detected_at}.
        {c.resolution && ` ${c.resolution} at ${c.resolved_at ?? "?"}.`}
      </p>
      {!c.before_recorded && <p class="muted">The before image was not recorded for this conflict (parked by an older fleetsync).</p>}
      <div class="cx-scroll">
        <table class="cx-three" data-testid="three-way">
          <caption class="muted">Marked cells: incoming and local differ; "(changed)": that side changed the before value.</caption>
          <thead>
            <tr>
              <th scope="col">Column</th>
              <th scope="col">Before (both started from)</th>
              <th scope="col">Incoming (from {c.origin})</th>
              <th scope="col">Local (on {c.target})</th>
            </tr>
          </thead>
          <tbody>
            {cols.map((col) => (
              <tr
                data-testid={`col-${col.column}`}
                data-differs={String(col.differs)}
                data-incoming-changed={String(col.incomingChanged)}
                data-local-changed={String(col.localChanged)}
              >
                <th scope="row">
                  {col.column}
                  {keyCols.includes(col.column) && <span class="muted"> (key)</span>}
                </th>
                <Cell side="before" value={col.before} row={before} col={col} />
                <Cell side="incoming" value={col.incoming} row={incoming} col={col} />
                <Cell side="local" value={col.local} row={local} col={col} />
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {notice && (
        <p class="cx-notice" role="status" data-testid="resolve-notice">
          {notice}
        </p>
      )}
      {problem && <p class="error" role="alert">{problem}</p>}
      {canResolve && c.status === "open" && (
        <div class="cx-resolve">
          <div class="actions">
            <button onClick={() => preview(`take the incoming version from ${c.origin}`, { take: "incoming" })}>Take incoming…</button>
            <button onClick={() => preview(`keep the local row of ${c.target}`, { take: "local" })}>Keep local…</button>
            <button onClick={() => startMerge(incoming ? "incoming" : "local")}>Edit a merged row…</button>
          </div>
          {fields && (
            <form
              class="cx-merge"
              data-testid="merge-form"
              onSubmit={(e) => {
                e.preventDefault();
                void preview("write the merged row", { take: "merged", row: mergedRow(cols, fields) });
              }}
            >
              <p class="muted">
                Start from{" "}
                <button type="button" class="link" onClick={() => startMerge("incoming")} disabled={!incoming}>
                  the incoming row
                </button>{" "}
                or{" "}
                <button type="button" class="link" onClick={() => startMerge("local")} disabled={!local}>
                  the local row
                </button>
                ; pick or edit each column. Key columns stay.
              </p>
              {cols.map((col) => {
                const f = fields[col.column] ?? { text: "", isNull: true };
                const isKey = keyCols.includes(col.column);
                const id = `merged-${col.column}`;
                return (
                  <div class="cx-field" data-testid={`merge-${col.column}`}>
                    <label for={id}>Merged {col.column}</label>
                    <input
                      id={id}
                      value={f.text}
                      disabled={f.isNull}
                      readOnly={isKey}
                      onInput={(e) => setField(col.column, { text: e.currentTarget.value, isNull: false })}
                    />
                    <label>
                      <input type="checkbox" checked={f.isNull} disabled={isKey} onChange={(e) => setField(col.column, { text: f.text, isNull: e.currentTarget.checked })} />
                      NULL
                    </label>
                    {!isKey && (
                      <>
                        <button type="button" class="link" disabled={!incoming} onClick={() => setField(col.column, fieldOf(col.incoming))}>
                          use incoming<span class="cx-sr"> for {col.column}</span>
                        </button>
                        <button type="button" class="link" disabled={!local} onClick={() => setField(col.column, fieldOf(col.local))}>
                          use local<span class="cx-sr"> for {col.column}</span>
                        </button>
                      </>
                    )}
                  </div>
                );
              })}
              <div class="actions">
                <button type="submit">Check merged row…</button>
                <button type="button" class="link" onClick={() => setFields(null)}>
                  Close the merged row
                </button>
              </div>
            </form>
          )}
          {plan && (
            <div class="cx-plan" data-testid="resolve-plan" data-take={plan.body.take}>
              <p>
                Plan (dry run): {plan.resolution}. {plan.statement ? "This statement will run on " + c.target + ", with the conflict marked resolved in the same transaction:" : "Nothing is written on the table; the conflict is marked resolved."}
              </p>
              {plan.statement && <pre class="log">{plan.statement}</pre>}
              <button class="danger" onClick={apply}>
                Apply: {plan.label}
              </button>
            </div>
          )}
        </div>
      )}
    </>
  );
}

function Bulk({ api, filters, count, onDone }: { api: Api; filters: Filters; count: number; onDone: () => void }) {
  const [take, setTake] = useState<"incoming" | "local" | "newer" | "older">("newer");
  const [column, setColumn] = useState("updated_at");
  const [preview, setPreview] = useState<BulkReport | null>(null);
  const [done, setDone] = useState<BulkReport | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setPreview(null), [filters, take, column]);
  const compares = take === "newer" || take === "older";
  const body = (ids?: string[]) => ({
    filter: {
      target: filters.target.trim() || undefined,
      table: filters.table.trim() || undefined,
      origin: filters.origin.trim() || undefined,
      detected_from: filters.from || undefined,
      detected_to: filters.to || undefined,
      ids,
    },
    rule: take === "newer" || take === "older" ? { take, column: column.trim() } : { take },
    confirm: ids !== undefined,
  });
  const ruleWords =
    take === "incoming" ? "take the incoming version" : take === "local" ? "keep the local row" : `take the side with the ${take} ${column.trim()}`;
  const run = async (dry: boolean) => {
    setProblem(null);
    setBusy(true);
    try {
      if (dry) {
        setDone(null);
        setPreview(await api.send("/api/v1/conflicts/resolve-bulk", { query: { dry_run: true } }, body()));
      } else if (preview) {
        const ids = preview.items.filter((i) => i.outcome === "would_resolve").map((i) => `${i.target}/${i.id}`);
        if (!confirm(`Resolve ${ids.length} conflict(s) (${ruleWords}): this writes on the targets.`)) return;
        setDone(await api.send("/api/v1/conflicts/resolve-bulk", {}, body(ids)));
        setPreview(null);
        onDone();
      }
    } catch (e) {
      setProblem(words(e));
    } finally {
      setBusy(false);
    }
  };
  const report = preview ?? done;
  return (
    <section class="card" aria-labelledby="bulk-title">
      <h3 id="bulk-title">Resolve by a rule</h3>
      <p class="muted">Applies to the open conflicts the filters above select ({count} listed now).</p>
      <form
        class="cx-filters"
        onSubmit={(e) => {
          e.preventDefault();
          void run(true);
        }}
      >
        <label>
          Rule
          <select value={take} onChange={(e) => setTake(e.currentTarget.value as typeof take)} data-testid="bulk-rule">
            <option value="newer">the side with the newer value of a column</option>
            <option value="older">the side with the older value of a column</option>
            <option value="incoming">always the incoming version</option>
            <option value="local">always the local row</option>
          </select>
        </label>
        {compares && (
          <label>
            Column
            <input value={column} onInput={(e) => setColumn(e.currentTarget.value)} />
          </label>
        )}
        <button type="submit" disabled={busy}>
          Preview
        </button>
      </form>
      {problem && <p class="error" role="alert">{problem}</p>}
      {report && (
        <>
          <p data-testid={preview ? "bulk-preview" : "bulk-result"} data-resolved={report.resolved} data-skipped={report.skipped} data-failed={report.failed}>
            {preview ? "Dry run: " : "Done: "}
            {report.matched} conflict(s) selected, {report.resolved} {preview ? "would be resolved" : "resolved"}, {report.skipped} skipped
            {report.failed ? `, ${report.failed} failed` : ""}.
          </p>
          {report.items.length > 0 && (
            <div class="cx-scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Conflict</th>
                    <th scope="col">Key</th>
                    {compares && <th scope="col">Incoming {column}</th>}
                    {compares && <th scope="col">Local {column}</th>}
                    <th scope="col">Winner</th>
                    <th scope="col">Outcome</th>
                  </tr>
                </thead>
                <tbody>
                  {report.items.map((i) => (
                    <tr data-testid={`bulk-${i.target}-${i.id}`} data-winner={i.winner ?? ""} data-outcome={i.outcome}>
                      <td>
                        <a href={conflictHref(i.target, i.id)}>
                          #{i.id} on {i.target}
                        </a>{" "}
                        <span class="muted">{i.table}</span>
                      </td>
                      <td>{keyWords(i.key)}</td>
                      {compares && <td>{show((i.incoming_value ?? null) as Json)}</td>}
                      {compares && <td>{show((i.local_value ?? null) as Json)}</td>}
                      <td>{i.winner ?? "—"}</td>
                      <td>
                        {i.outcome.replace(/_/g, " ")}
                        {i.reason && <div class="muted">{i.reason}</div>}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {preview && preview.resolved > 0 && (
            <button class="danger" disabled={busy} onClick={() => run(false)}>
              Apply to {preview.resolved} conflict(s)
            </button>
          )}
        </>
      )}
    </section>
  );
}
