// The dashboard's shell: login with a token, then the pages (hash routes: only `/` is served).
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, ApiError, type Schemas } from "./api/client";
import { session } from "./session";
import { PAGES, pageFor, type Page } from "./pages";
import "./style.css";

export type Me = Schemas["WhoAmI"];
export type PageProps = { api: Api; me: Me; can: (permission: string) => boolean };

function Login({ onLogin, error }: { onLogin: (token: string) => void; error: string | null }) {
  const [token, setToken] = useState("");
  return (
    <main class="login">
      <h1>fleetsync</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onLogin(token.trim());
        }}
      >
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit">Log in</button>
        {error && <p class="error" role="alert">{error}</p>}
        <p class="muted">Create one with <code>fleetsync token create --name NAME --role viewer</code>. It is kept in this tab only.</p>
      </form>
    </main>
  );
}

/** The page named by the hash (`#/jobs`), its first segment: `#/conflicts/dst/7` is "conflicts". */
function currentPage(): Page {
  return pageFor(location.hash);
}

function App() {
  const [token, setToken] = useState<string | null>(session.get());
  const [me, setMe] = useState<Me | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [page, setPage] = useState<Page>(currentPage());

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  const logout = (why: string | null) => {
    session.clear();
    setToken(null);
    setMe(null);
    setError(why);
  };

  useEffect(() => {
    if (!token) return;
    new Api(token)
      .get("/api/v1/whoami")
      .then((who) => {
        session.set(token);
        setMe(who);
        setError(null);
      })
      .catch((e: unknown) => logout(e instanceof ApiError && e.status === 401 ? "That token is not valid (unknown, expired or revoked)." : String(e)));
  }, [token]);

  const api = useMemo(() => new Api(token ?? "", () => logout("Your token is no longer valid: log in again.")), [token]);
  if (!token || !me) return <Login onLogin={setToken} error={error} />;
  const can = (p: string) => me.permissions.includes(p);
  return (
    <>
      <header>
        <strong>fleetsync</strong>
        <nav>
          {PAGES.filter((p) => !p.needs || can(p.needs)).map((p) => (
            <a href={`#/${p.id}`} aria-current={p.id === page ? "page" : undefined}>
              {p.title}
            </a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {me.name} ({me.role})
        </span>
        <button class="link" onClick={() => logout(null)}>
          Log out
        </button>
      </header>
      <main>{(() => {
        const Current = (PAGES.find((p) => p.id === page && (!p.needs || can(p.needs))) ?? PAGES[0]).component;
        return <Current api={api} me={me} can={can} />;
      })()}</main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
