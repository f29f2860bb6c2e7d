// Servers: every server (address without its password, TLS, where it is defined), add / edit
// (the password is write-only: empty on edit keeps the stored one), delete (confirmed; refused
// while a sync uses it), and Test connection with the preflight checks shown one by one.
import { useState } from "preact/hooks";
import type { Schemas } from "../api/client";
import { useLive } from "../live";
import type { PageProps } from "../main";
import { errorWords, serverBody, splitUrlPassword, type ServerForm } from "./syncs-logic";
import "./Syncs.css";

const TLS_MODES = ["disabled", "preferred", "required", "verify_ca", "verify_identity"];
const EMPTY: ServerForm = { name: "", url: "", password: "", tls: "preferred" };

type Test = Schemas["TestResult"] | { server: string; error: string };

export function Servers({ api, can }: PageProps) {
  const write = can("servers:write");
  const [form, setForm] = useState<ServerForm | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [tests, setTests] = useState<Record<string, Test>>({});
  const { data, error, reload } = useLive(api, () => api.get("/api/v1/servers"), {
    events: () => false,
    everyMs: 10_000,
  });

  const open = (s?: Schemas["ServerView"]) => {
    setFormError(null);
    setEditing(s ? s.name : null);
    setForm(s ? { name: s.name, url: s.url, password: "", tls: s.tls } : { ...EMPTY });
  };

  const save = async (e: Event) => {
    e.preventDefault();
    if (!form) return;
    setBusy(true);
    try {
      const body = serverBody(form, editing !== null);
      if (editing) await api.put("/api/v1/servers/{name}", { path: { name: editing } }, body);
      else await api.send("/api/v1/servers", {}, { ...body, name: form.name.trim() });
      setForm(null);
      setEditing(null);
      setNotice(null);
      reload();
    } catch (err) {
      setFormError(errorWords(err));
    } finally {
      setBusy(false);
    }
  };

  const remove = async (name: string) => {
    if (!confirm(`Delete server ${name}? Syncs can no longer use it (refused while one does).`)) return;
    try {
      await api.del("/api/v1/servers/{name}", { path: { name } });
      setNotice(null);
    } catch (err) {
      setNotice(`Delete ${name}: ${errorWords(err)}`);
    }
    reload();
  };

  const test = async (name: string) => {
    setTests((t) => ({ ...t, [name]: { server: name, error: "Testing…" } }));
    try {
      const r = await api.send("/api/v1/servers/{name}/test", { path: { name } });
      setTests((t) => ({ ...t, [name]: r as Schemas["TestResult"] }));
    } catch (err) {
      setTests((t) => ({ ...t, [name]: { server: name, error: errorWords(err) } }));
    }
  };

  if (!data) return <p aria-busy="true">{error ?? "Loading…"}</p>;
  return (
    <>
      <div class="page-head">
        <h2>Servers</h2>
        {write && !form && <button onClick={() => open()}>Add server</button>}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {notice && (
        <p class="error" role="alert" data-testid="notice">
          {notice}
        </p>
      )}
      {form && (
        <form class="card form-grid" onSubmit={save} data-testid="server-form">
          <h3>{editing ? `Edit server ${editing}` : "New server"}</h3>
          <label for="srv-name">Name</label>
          <input id="srv-name" value={form.name} disabled={editing !== null} required pattern="[A-Za-z0-9_\-]{1,64}" onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
          <label for="srv-url">URL</label>
          <input
            id="srv-url"
            value={form.url}
            required
            placeholder="mysql://user@host:3306"
            autocomplete="off"
            onInput={(e) => setForm({ ...form, url: e.currentTarget.value })}
            onBlur={() => {
              // A password typed into the URL moves to the password field (never shown back).
              const split = splitUrlPassword(form.url);
              if (split.password !== null) setForm({ ...form, url: split.url, password: split.password });
            }}
          />
          <label for="srv-password">Password</label>
          <input
            id="srv-password"
            type="password"
            autocomplete="new-password"
            value={form.password}
            placeholder={editing ? "empty: keep the stored password" : "none"}
            onInput={(e) => setForm({ ...form, password: e.currentTarget.value })}
          />
          <label for="srv-tls">TLS</label>
          <select id="srv-tls" value={form.tls} onChange={(e) => setForm({ ...form, tls: e.currentTarget.value })}>
            {TLS_MODES.map((m) => (
              <option value={m}>{m.replace("_", " ")}</option>
            ))}
          </select>
          <p class="muted span">The password is stored encrypted and never shown again.</p>
          {formError && (
            <p class="error span" role="alert">
              {formError}
            </p>
          )}
          <div class="actions span">
            <button type="submit" disabled={busy}>
              Save server
            </button>
            <button type="button" class="link" onClick={() => setForm(null)}>
              Close form
            </button>
          </div>
        </form>
      )}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Address</th>
            <th>Password</th>
            <th>TLS</th>
            <th>Defined in</th>
            {write && <th>Actions</th>}
          </tr>
        </thead>
        <tbody>
          {data.map((s) => {
            const t = tests[s.name];
            return (
              <>
                <tr data-testid={`server-${s.name}`} data-origin={s.origin}>
                  <td>{s.name}</td>
                  <td>
                    <code>{s.url}</code>
                  </td>
                  <td>{s.password ? "set" : "none"}</td>
                  <td>{s.tls}</td>
                  <td>{s.origin === "file" ? "config file (read-only)" : "API"}</td>
                  {write && (
                    <td>
                      <span class="actions">
                      <button onClick={() => test(s.name)}>Test connection</button>
                      {s.origin === "api" && (
                        <>
                          <button onClick={() => open(s)}>Edit</button>
                          <button class="danger" onClick={() => remove(s.name)}>
                            Delete
                          </button>
                        </>
                      )}
                      </span>
                    </td>
                  )}
                </tr>
                {t && (
                  <tr>
                    <td colSpan={6} data-testid={`test-${s.name}`} aria-live="polite">
                      {"error" in t ? (
                        <span class={t.error === "Testing…" ? "muted" : "error"}>{t.error}</span>
                      ) : (
                        <ul class="checks">
                          {t.checks.map((c) => (
                            <li data-testid={`check-${c.check}`} data-ok={String(c.ok)}>
                              <span class={`badge ${c.ok ? "good" : "bad"}`}>{c.ok ? "ok" : "failed"}</span> <strong>{c.check}</strong>: {c.message}
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                  </tr>
                )}
              </>
            );
          })}
        </tbody>
      </table>
    </>
  );
}
