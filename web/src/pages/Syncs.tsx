// Syncs: every sync with its targets' state (and a progress bar while a target copies its
// initial snapshot), create / edit with the table filter previewed before saving (the API's
// dry run: matched tables, keyless ones, per target existing vs to create), and per sync
// pause / resume / cancel / run once / re-snapshot / delete with confirmations.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Schemas } from "../api/client";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { EMPTY_SYNC, errorWords, formOf, needsResnapshot, syncBody, type SyncForm } from "./syncs-logic";
import { TargetsTable } from "./TargetsTable";
import "./Syncs.css";

type Data = { syncs: Schemas["SyncView"][]; servers: string[] };
type SyncBody = Schemas["SyncBody"];
/** How long the form waits after the last edit before it asks for a preview. */
const PREVIEW_DEBOUNCE_MS = 600;
const CONFLICTS = ["", "source-wins", "target-wins", "newest-wins", "manual"];

export function Syncs(props: PageProps) {
  const { api, can } = props;
  const [notice, setNotice] = useState<string | null>(null);
  const [edit, setEdit] = useState<{ name: string | null; base: Record<string, unknown>; form: SyncForm } | null>(null);
  const { data, error, reload } = useLive<Data>(
    api,
    async () => {
      const [syncs, servers] = await Promise.all([
        api.get("/api/v1/syncs"),
        can("servers:read") ? api.get("/api/v1/servers") : Promise.resolve([]),
      ]);
      return { syncs, servers: servers.map((s) => s.name) };
    },
    { events: (e) => e.event === "sync_state", everyMs: 2000 },
  );

  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setNotice(null);
    } catch (e) {
      setNotice(`${what}: ${errorWords(e)}`);
    }
    reload();
  };

  const control = (name: string, action: "pause" | "resume" | "cancel" | "once") => {
    if (action === "cancel" && !confirm(`Cancel sync ${name}? Its pipelines stop until it is resumed.`)) return;
    const path = `/api/v1/syncs/{name}/${action}` as const;
    void act(`${action} ${name}`, () => api.send(path, { path: { name } }));
  };

  const resnapshot = (name: string) =>
    act(`re-snapshot ${name}`, async () => {
      const plan = await api.send("/api/v1/syncs/{name}/resnapshot", { path: { name }, query: { dry_run: true } });
      if (!confirm(`Re-snapshot ${name}? ${(plan as Schemas["OpResult"]).message}.`)) return;
      await api.send("/api/v1/syncs/{name}/resnapshot", { path: { name }, query: { confirm: true } });
    });

  const remove = (name: string) =>
    act(`delete ${name}`, async () => {
      await api.del("/api/v1/syncs/{name}", { path: { name }, query: { dry_run: true } });
      if (!confirm(`Delete sync ${name}? Its pipelines stop; the targets keep their rows.`)) return;
      await api.del("/api/v1/syncs/{name}", { path: { name }, query: { confirm: true } });
    });

  const openEdit = (name: string | null) =>
    act(name ? `edit ${name}` : "new sync", async () => {
      if (!name) return setEdit({ name: null, base: {}, form: { ...EMPTY_SYNC } });
      const def = await api.get("/api/v1/syncs/{name}/definition", { name });
      setEdit({ name, base: def.fields as Record<string, unknown>, form: formOf(def.fields as Record<string, unknown>) });
    });

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  const write = can("syncs:write");
  const ctl = can("syncs:control");
  return (
    <>
      <div class="page-head">
        <h2>Syncs</h2>
        {write && !edit && <button onClick={() => openEdit(null)}>New sync</button>}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && (
        <p class="error" role="alert" data-testid="notice">
          {notice}
        </p>
      )}
      {edit && (
        <SyncEditor
          {...props}
          servers={data.servers}
          editing={edit.name}
          base={edit.base}
          initial={edit.form}
          onDone={() => {
            setEdit(null);
            reload();
          }}
        />
      )}
      {data.syncs.length === 0 && <p class="muted">No sync is defined.</p>}
      {data.syncs.map((s) => (
        <article class="card" data-testid={`sync-${s.name}`} data-origin={s.origin}>
          <div class="card-head">
            <h3>
              {s.name} <span class="muted">from {s.source}</span>
            </h3>
            <span class="muted">{s.origin === "file" ? "config file (read-only)" : "made over the API"}</span>
            {s.schedule && <span class="muted">schedule {s.schedule}</span>}
            <span class="muted" data-testid="control" data-control={s.control ?? ""}>
              {s.control ?? "not running here"}
            </span>
            <span class="actions">
              {ctl && s.control && (
                <>
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
                  {s.schedule && <button onClick={() => control(s.name, "once")}>Run once</button>}
                  <button class="danger" onClick={() => resnapshot(s.name)}>
                    Re-snapshot
                  </button>
                </>
              )}
              {write && s.origin === "api" && !edit && (
                <>
                  <button onClick={() => openEdit(s.name)}>Edit</button>
                  <button class="danger" onClick={() => remove(s.name)}>
                    Delete
                  </button>
                </>
              )}
            </span>
          </div>
          <TargetsTable sync={s} />
        </article>
      ))}
    </>
  );
}


type EditorProps = PageProps & {
  servers: string[];
  editing: string | null;
  base: Record<string, unknown>;
  initial: SyncForm;
  onDone: () => void;
};

/** The create / edit form with the filter's preview (a dry run, debounced) and Save. */
function SyncEditor({ api, servers, editing, base, initial, onDone }: EditorProps) {
  const [form, setForm] = useState<SyncForm>(initial);
  const [preview, setPreview] = useState<Schemas["SyncTables"] | null>(null);
  const [previewError, setPreviewError] = useState<string | null>(null);
  const [saveError, setSaveError] = useState<string | null>(null);
  const [widened, setWidened] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const seq = useRef(0);
  const body = syncBody(form, base) as SyncBody | null;
  const key = JSON.stringify(body);

  // A preview of an edit is asked with `resnapshot` so that a widened filter still answers
  // with its tables (a dry run changes nothing); the tables the sync did not have are marked.
  const call = (dryRun: boolean, resnapshot = false, what: SyncBody | null = body) =>
    editing
      ? api.put("/api/v1/syncs/{name}", { path: { name: editing }, query: { dry_run: dryRun, resnapshot: resnapshot || dryRun } }, what as SyncBody)
      : api.send("/api/v1/syncs", { query: { dry_run: dryRun } }, what as SyncBody);
  const [had, setHad] = useState<string[] | null>(null);
  useEffect(() => {
    const start = syncBody(initial, base) as SyncBody | null;
    if (editing && start) call(true, false, start).then((plan) => setHad((plan as Schemas["Plan"]).tables?.matched ?? null), () => setHad(null));
  }, []);

  useEffect(() => {
    setPreview(null);
    setPreviewError(null);
    if (!body || (!editing && !form.name.trim())) return;
    const mine = ++seq.current;
    const timer = setTimeout(() => {
      call(true).then(
        (plan) => mine === seq.current && setPreview((plan as Schemas["Plan"]).tables ?? null),
        (e: unknown) => {
          if (mine !== seq.current) return;
          setPreviewError(errorWords(e));
        },
      );
    }, PREVIEW_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [key]);

  const save = async (resnapshot: boolean) => {
    if (!body) return;
    if (resnapshot && !confirm(`Save ${editing} and re-snapshot it? Every table of the sync is reloaded on ${form.targets.join(", ")} (their rows replaced).`)) return;
    setBusy(true);
    try {
      await call(false, resnapshot);
      onDone();
    } catch (e) {
      if (needsResnapshot(e)) setWidened(errorWords(e));
      else setSaveError(errorWords(e));
    } finally {
      setBusy(false);
    }
  };

  const set = (patch: Partial<SyncForm>) => {
    setSaveError(null);
    setWidened(null);
    setForm({ ...form, ...patch });
  };

  return (
    <form
      class="card form-grid"
      data-testid="sync-form"
      onSubmit={(e) => {
        e.preventDefault();
        void save(false);
      }}
    >
      <h3>{editing ? `Edit sync ${editing}` : "New sync"}</h3>
      <label for="sync-name">Name</label>
      <input id="sync-name" value={form.name} disabled={editing !== null} required pattern="[A-Za-z0-9_\-]{1,64}" onInput={(e) => set({ name: e.currentTarget.value })} />
      <label for="sync-source">Source</label>
      <select id="sync-source" value={form.source} required onChange={(e) => set({ source: e.currentTarget.value, targets: form.targets.filter((t) => t !== e.currentTarget.value) })}>
        <option value="">(choose a server)</option>
        {servers.map((s) => (
          <option value={s}>{s}</option>
        ))}
      </select>
      <span>Targets</span>
      <fieldset>
        <legend class="muted">servers that receive the changes</legend>
        {servers
          .filter((s) => s !== form.source)
          .map((s) => (
            <label>
              <input
                type="checkbox"
                checked={form.targets.includes(s)}
                onChange={(e) => set({ targets: e.currentTarget.checked ? [...form.targets, s] : form.targets.filter((t) => t !== s) })}
              />{" "}
              {s}
            </label>
          ))}
      </fieldset>
      <label for="sync-include">Include tables</label>
      <textarea id="sync-include" rows={2} placeholder={"schema\\.table regexes, one per line (none: every table)"} value={form.include} onInput={(e) => set({ include: e.currentTarget.value })} />
      <label for="sync-exclude">Exclude tables</label>
      <textarea id="sync-exclude" rows={2} value={form.exclude} onInput={(e) => set({ exclude: e.currentTarget.value })} />
      <label for="sync-schedule">Schedule (cron, optional)</label>
      <input id="sync-schedule" value={form.schedule} placeholder="empty: continuous" onInput={(e) => set({ schedule: e.currentTarget.value })} />
      <label for="sync-conflict">Conflicts</label>
      <select id="sync-conflict" value={form.conflict} onChange={(e) => set({ conflict: e.currentTarget.value })}>
        {CONFLICTS.map((c) => (
          <option value={c}>{c || "none (default)"}</option>
        ))}
      </select>
      <label for="sync-create">Create missing tables</label>
      <input id="sync-create" type="checkbox" checked={form.create_missing} onChange={(e) => set({ create_missing: e.currentTarget.checked })} />
      <label for="sync-ddl">Apply DDL</label>
      <input id="sync-ddl" type="checkbox" checked={form.apply_ddl} onChange={(e) => set({ apply_ddl: e.currentTarget.checked })} />
      <section class="preview span" data-testid="preview" aria-live="polite">
        <h4>What the filter selects</h4>
        {!body && <p class="muted">Choose a source and a target to see the tables.</p>}
        {body && !preview && !previewError && <p class="muted">Checking…</p>}
        {previewError && <p class="error">{previewError}</p>}
        {preview && (
          <>
            <p>
              {preview.matched.length} table(s) on {preview.source}
              {preview.keyless.length > 0 && `, ${preview.keyless.length} without a key (no conflict detection; updates match every column)`}:
            </p>
            <ul>
              {preview.matched.map((t) => (
                <li data-testid="preview-table" data-table={t} data-keyless={String(preview.keyless.includes(t))}>
                  <code>{t}</code> {preview.keyless.includes(t) && <span class="badge warn">no key</span>}{" "}
                  {had && !had.includes(t) && <span class="badge warn">new: saving needs a re-snapshot</span>}
                </li>
              ))}
            </ul>
            {preview.targets.map((t) => (
              <p data-testid={`preview-target-${t.target}`}>
                On {t.target}: {t.to_create.length} to create{t.to_create.length ? ` (${t.to_create.join(", ")})` : ""}, {t.existing.length} existing
                {t.existing.length ? ` (${t.existing.join(", ")}: rows replaced at the snapshot)` : ""}.
              </p>
            ))}
          </>
        )}
      </section>
      {saveError && (
        <p class="error span" role="alert">
          {saveError}
        </p>
      )}
      {widened && (
        <div class="resnapshot span" role="alert">
          <p>Not saved: {widened}</p>
          <p>
            The new filter selects tables the sync's initial snapshot did not copy, so their existing rows would never reach the targets. Save and
            re-snapshot copies every table of the sync again (their rows are replaced on {form.targets.join(", ")}).
          </p>
          <button type="button" class="danger" onClick={() => save(true)}>
            Save and re-snapshot
          </button>
        </div>
      )}
      <div class="actions span">
        <button type="submit" disabled={busy || !body}>
          Save sync
        </button>
        <button type="button" class="link" onClick={onDone}>
          Close form
        </button>
      </div>
    </form>
  );
}
