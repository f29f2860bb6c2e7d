//! The bad-input catalogue: one table-driven test of every kind of bad input fleetsync must
//! refuse (config, servers, data, tasks, HTTP), run against three shared MariaDB servers.
//!
//! Each case (see `catalogue/config_cases.rs` and `catalogue/cases.rs`) says what to run (a `fleetsync` command line with the case's
//! own config file, or an HTTP request to a running `fleetsync run`), the exit code (or HTTP
//! status) it must give, key words the error must contain and words (passwords) that must
//! never appear in anything the command prints. Around every case the runner takes a
//! fingerprint of everything the command could have changed and requires it to be the same
//! afterwards:
//!
//! * every server: its databases, each table's type, engine, column list and
//!   `CHECKSUM TABLE ... EXTENDED`, its users, and the binlog's end (`SHOW MASTER STATUS`);
//! * the case's own directory (config, `state_dir`, `[backup] dir`, input and output
//!   directories): every path with its mode, size and a hash of its content.
//!
//! HTTP cases run against one `fleetsync run` (sync `a` -> `c`) started after the other cases;
//! there the fingerprint leaves out the target's `fleetsync` database (the running sync's own
//! progress) and the process's state dir, and adds the pipelines' states from `/health`
//! (a refused request must not pause or cancel anything).
//!
//! Every case runs, one after another; the test fails at the end with the list of every
//! failing case. Adding a case is one entry in one of those lists: a config mutation (a function of
//! the shared servers and the case dir), optional files to write and SQL to run first (undone
//! afterwards), the command, and the expectations.

mod cases;
mod config_cases;
mod http_cases;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::fleetsync::toml_str;
use fleetsync_tests::{
    fleetsync_cmd_with, quote_ident, quote_str, wait_synced, ConfigBuilder, Fleetsync, MariaDb,
};
use tempfile::TempDir;

use crate::support::dead_port;

/// Time one catalogue command may take (a refusal is expected within seconds).
const CASE_TIMEOUT: Duration = Duration::from_secs(45);
/// Time for the HTTP phase's sync to copy `app` and report healthy.
const HTTP_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The password of the sync user on server `a` (must never be printed).
pub const SYNC_PASSWORD: &str = "Sync-Pass-7f3a";
/// A password that is wrong for that user (must never be printed either).
pub const WRONG_PASSWORD: &str = "Wrong-Pass-91c2";
/// The password of the user with SELECT only.
pub const READER_PASSWORD: &str = "Reader-Pass-5d0e";

/// What a case is about (the five groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Config,
    Servers,
    Data,
    Tasks,
    Http,
}

/// A shared server, for a case's setup SQL.
#[derive(Clone, Copy, Debug)]
pub enum Srv {
    /// The source (ROW binlog, FULL image and metadata): `app.t`, `app.u`, users `syncer` and
    /// `reader`.
    A,
    /// A target holding `app.t` (other rows) and `keep.k`.
    B,
    /// A server with the binary log off.
    C,
}

/// What a case runs.
#[derive(Clone, Copy, Debug)]
pub enum Run {
    /// `fleetsync ARGS`. Placeholders: `{config}` (the case's config file), `{dir}` (the case
    /// dir), `{backup}` (the id of the shared good backup), `{http_config}` (the config of the
    /// HTTP phase's running `fleetsync run`).
    Cli(&'static [&'static str]),
    /// An HTTP request to the running `fleetsync run`'s metrics listener: method, path, body.
    Http(&'static str, &'static str, &'static str),
    /// A request to its API (`[api] listen`) with this token: method, path, body.
    Api(Tok, &'static str, &'static str, &'static str),
}

/// The bearer token of an [`Run::Api`] case.
#[derive(Clone, Copy, Debug)]
pub enum Tok {
    /// A token with role `owner`.
    Owner,
    /// A token with role `viewer`.
    Viewer,
    /// No `Authorization` header.
    Missing,
    /// A well-formed token that was never issued.
    Bogus,
}

/// One entry of the catalogue.
pub struct Case {
    pub name: &'static str,
    pub category: Category,
    /// The case's config file text, from the shared servers and the case dir.
    pub config: fn(&World, &Path) -> String,
    /// Files to write in the case dir before the fingerprint (a damaged backup, a bad CSV).
    pub files: fn(&World, &Path) -> Result<()>,
    /// SQL run before the fingerprint, and SQL that undoes it after the check.
    pub setup_sql: &'static [(Srv, &'static str)],
    pub cleanup_sql: &'static [(Srv, &'static str)],
    /// Extra environment variables of the command.
    pub env: &'static [(&'static str, &'static str)],
    pub run: Run,
    /// The exit code (CLI) or HTTP status.
    pub expect: i32,
    /// Each group needs one of its words in the error lines (HTTP: the body); case, `-`, `_`
    /// and spaces don't matter.
    pub mentions: &'static [&'static [&'static str]],
    /// Words that must appear nowhere in stdout, stderr or the body (checked exactly).
    pub never: &'static [&'static str],
    /// CLI: the error is one line (false for clap's usage errors, which add a usage block).
    pub one_line: bool,
    /// The record of the failure a command writes on purpose (path in the case dir, `{backup}`
    /// replaced; a word it must contain): it must appear, and is left out of "nothing changed"
    /// (a failed `backup verify` records that the backup failed its verification).
    pub records: &'static [(&'static str, &'static str)],
}

/// A case with the good config, no files, no SQL: the base of every entry.
pub const fn case(name: &'static str, category: Category, run: Run) -> Case {
    Case {
        name,
        category,
        config: World::good,
        files: no_files,
        setup_sql: &[],
        cleanup_sql: &[],
        env: &[],
        run,
        expect: 1,
        mentions: &[],
        never: &[SYNC_PASSWORD, WRONG_PASSWORD, READER_PASSWORD],
        one_line: true,
        records: &[],
    }
}

fn no_files(_: &World, _: &Path) -> Result<()> {
    Ok(())
}

/// The shared servers and files.
pub struct World {
    pub a: MariaDb,
    pub b: MariaDb,
    pub c: MariaDb,
    pub root: TempDir,
    /// Id of a good backup of `a`'s `app` (in `pristine/backups`).
    pub backup_id: String,
}

impl World {
    async fn start() -> Result<World> {
        let (a, b, c) = tokio::join!(
            MariaDb::start(11),
            MariaDb::start(12),
            MariaDb::start_with(13, &["--skip-log-bin"])
        );
        let (a, b, c) = (
            a.context("server a")?,
            b.context("server b")?,
            c.context("server c")?,
        );
        a.exec(
            "CREATE DATABASE app; \
             CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, n INT NOT NULL); \
             INSERT INTO app.t VALUES (1,'one',10),(2,'two',20),(3,'three',30); \
             CREATE TABLE app.u (k VARCHAR(10) PRIMARY KEY, at DATETIME(6)); \
             INSERT INTO app.u VALUES ('x','2024-01-02 03:04:05.123456');",
        )
        .await?;
        a.create_user(
            "syncer",
            SYNC_PASSWORD,
            &["SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.*"],
        )
        .await?;
        a.create_user("reader", READER_PASSWORD, &["SELECT ON *.*"])
            .await?;
        b.exec(
            "CREATE DATABASE app; \
             CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, n INT NOT NULL); \
             INSERT INTO app.t VALUES (7,'b-only',70); \
             CREATE DATABASE keep; CREATE TABLE keep.k (id INT PRIMARY KEY); \
             INSERT INTO keep.k VALUES (1),(2);",
        )
        .await?;
        let root = tempfile::Builder::new()
            .prefix("fleetsync-catalogue-")
            .tempdir()?;
        let mut world = World {
            a,
            b,
            c,
            root,
            backup_id: String::new(),
        };
        world.make_pristine().await?;
        Ok(world)
    }

    /// A good backup and good exports (SQL, JSON, CSV) of `a`'s `app`, for cases to copy and
    /// damage.
    async fn make_pristine(&mut self) -> Result<()> {
        let dir = self.pristine();
        std::fs::create_dir_all(&dir)?;
        let config = Fleetsync::write_config(&dir, &self.good(&dir))?;
        let c = path_str(&config)?;
        let out = cli_ok(&[
            "backup",
            "create",
            "--config",
            c,
            "--server",
            "src",
            "--include",
            "app\\..*",
            "--json",
        ])
        .await?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("backup create --json printed {out}"))?;
        self.backup_id = v["id"].as_str().context("backup id")?.to_string();
        for format in ["sql", "json", "csv"] {
            let out_dir = dir.join(format!("export-{format}"));
            cli_ok(&[
                "export",
                "--config",
                c,
                "--server",
                "src",
                "--format",
                format,
                "--out",
                path_str(&out_dir)?,
                "--include",
                "app\\..*",
            ])
            .await?;
        }
        Ok(())
    }

    pub fn pristine(&self) -> PathBuf {
        self.root.path().join("pristine")
    }

    /// state_dir and `[metrics]` in `dir`, servers `src` (a, root), `dst` (b) and `nolog` (c).
    pub fn servers(&self, dir: &Path) -> ConfigBuilder {
        self.servers_src(dir, &self.a.url_root())
    }

    /// [`World::servers`] with another URL for `src`.
    pub fn servers_src(&self, dir: &Path, src_url: &str) -> ConfigBuilder {
        ConfigBuilder::new(&dir.join("state"))
            .server("src", src_url)
            .server("dst", &self.b.url_root())
            .server("nolog", &self.c.url_root())
    }

    /// The good config: sync `s1` from `src` to `dst` (`app\..*`), `[backup] dir` in `dir`.
    pub fn good(&self, dir: &Path) -> String {
        self.sync_from(dir, &self.a.url_root())
    }

    /// The good config with another URL for `src`.
    pub fn sync_from(&self, dir: &Path, src_url: &str) -> String {
        self.servers_src(dir, src_url)
            .sync("s1", "src", &["dst"], &["app\\..*"], &[])
            .build()
            + &self.backup_section(dir)
    }

    pub fn backup_section(&self, dir: &Path) -> String {
        format!(
            "\n[backup]\ndir = {}\n",
            toml_str(&dir.join("backups").to_string_lossy())
        )
    }

    fn server(&self, s: Srv) -> &MariaDb {
        match s {
            Srv::A => &self.a,
            Srv::B => &self.b,
            Srv::C => &self.c,
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("path is not UTF-8")
}

async fn cli_ok(args: &[&str]) -> Result<String> {
    let out = fleetsync_cmd_with(args, &[("RUST_LOG", "warn")], CASE_TIMEOUT).await?;
    ensure!(
        out.status.success(),
        "`fleetsync {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Everything on one server a command could change. `skip_fleetsync` leaves out the
/// `fleetsync` database (a running sync's own progress).
async fn server_print(db: &MariaDb, skip_fleetsync: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for schema in db.user_databases().await? {
        if skip_fleetsync && schema == "fleetsync" {
            continue;
        }
        out.push(format!("database {schema}"));
        let s = quote_str(&schema);
        let tables = db
            .query_strings(&format!(
                "SELECT TABLE_NAME, TABLE_TYPE, ENGINE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = {s} ORDER BY TABLE_NAME"
            ))
            .await?;
        let columns = db
            .query_strings(&format!(
                "SELECT TABLE_NAME, GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE, ' ', \
                 IS_NULLABLE, ' ', COLUMN_KEY) ORDER BY ORDINAL_POSITION SEPARATOR ', ') \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {s} \
                 GROUP BY TABLE_NAME ORDER BY TABLE_NAME"
            ))
            .await?;
        out.push(format!("tables {tables:?}"));
        out.push(format!("columns {columns:?}"));
        for row in &tables {
            let (Some(Some(name)), Some(Some(kind))) = (row.first(), row.get(1)) else {
                continue;
            };
            if kind == "BASE TABLE" {
                let sql = format!(
                    "CHECKSUM TABLE {}.{} EXTENDED",
                    quote_ident(&schema),
                    quote_ident(name)
                );
                out.push(format!("{:?}", db.query_strings(&sql).await?));
            }
        }
    }
    let users = db
        .query_strings("SELECT User, Host FROM mysql.user ORDER BY User, Host")
        .await?;
    out.push(format!("users {users:?}"));
    let binlog = db.query_strings("SHOW MASTER STATUS").await?;
    out.push(format!("binlog {binlog:?}"));
    Ok(out)
}

/// Every path under `dir` with its mode, and for files their size and a content hash.
fn disk_print(dir: &Path) -> Result<BTreeMap<String, String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(dir)?.to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_dir() {
                stack.push(path);
                format!("dir {mode:o}")
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path)?.hash(&mut h);
                format!("file {mode:o} {} bytes {:016x}", meta.len(), h.finish())
            };
            out.insert(rel, what);
        }
    }
    Ok(out)
}

/// What must stay the same around one case.
#[derive(PartialEq, Debug)]
struct Print {
    servers: Vec<Vec<String>>,
    disk: BTreeMap<String, String>,
    pipelines: Option<String>,
}

/// The running `fleetsync run` of the HTTP cases.
struct HttpRig {
    /// Kept for its drop (SIGKILL).
    _proc: Fleetsync,
    port: u16,
    api_port: u16,
    config: PathBuf,
    owner: String,
    viewer: String,
}

impl HttpRig {
    /// `fleetsync run` syncing `a`'s `app` to `c` as user `syncer` (whose password the HTTP
    /// answers must never show), listening on a fixed port.
    async fn start(world: &World) -> Result<HttpRig> {
        let dir = world.root.path().join("http");
        std::fs::create_dir_all(&dir)?;
        let port = dead_port()?;
        let api_port = dead_port()?;
        let text = ConfigBuilder::new(&dir.join("state"))
            .server("src", &world.a.url_user("syncer", SYNC_PASSWORD))
            .server("nolog", &world.c.url_root())
            .sync("s1", "src", &["nolog"], &["app\\..*"], &[])
            .build()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
        let config = Fleetsync::write_config(&dir, &text)?;
        let owner = crate::api::create_token(&config, "catalogue-owner", "owner", None).await?;
        let viewer = crate::api::create_token(&config, "catalogue-viewer", "viewer", None).await?;
        let proc = Fleetsync::run(&config)?;
        let rig = HttpRig {
            _proc: proc,
            port,
            api_port,
            config,
            owner,
            viewer,
        };
        wait_synced(&world.a, &world.c, "app", HTTP_READY_TIMEOUT)
            .await
            .context("the HTTP phase's sync a -> c")?;
        let deadline = Instant::now() + HTTP_READY_TIMEOUT;
        loop {
            match http(port, "GET", "/health", "").await {
                Ok((200, _)) => return Ok(rig),
                _ if Instant::now() > deadline => bail!("/health not 200 after the sync caught up"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The (sync, target, state) of every pipeline (from `/health`'s list).
    async fn pipelines(&self) -> Result<String> {
        let (code, body) = http(self.port, "GET", "/health", "").await?;
        ensure!(code == 200, "/health answered {code}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let mut states: Vec<String> = v["pipelines"]
            .as_array()
            .context("/health has no pipeline list")?
            .iter()
            .map(|p| format!("{} -> {}: {}", p["sync"], p["target"], p["state"]))
            .collect();
        states.sort();
        Ok(states.join("; "))
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port`: (status, body).
async fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(i32, String)> {
    let (code, body) = crate::support::http_request(port, method, path, body).await?;
    Ok((i32::from(code), body))
}

fn normalize(s: &str) -> String {
    s.to_lowercase().replace(['-', ' '], "_")
}

/// The text the case's key words are looked for in, and everything printed.
struct Outcome {
    code: i32,
    /// CLI: stderr from its first `error:` line on; HTTP: the body.
    message: String,
    everything: String,
}

async fn take_print(
    world: &World,
    case: &Case,
    dir: &Path,
    rig: Option<&HttpRig>,
) -> Result<Print> {
    let http = case.category == Category::Http;
    let mut servers = Vec::new();
    for s in [Srv::A, Srv::B, Srv::C] {
        servers.push(server_print(world.server(s), http).await?);
    }
    Ok(Print {
        servers,
        disk: disk_print(dir)?,
        pipelines: match rig {
            Some(r) => Some(r.pipelines().await?),
            None => None,
        },
    })
}

async fn execute(world: &World, case: &Case, dir: &Path, rig: Option<&HttpRig>) -> Result<Outcome> {
    match case.run {
        Run::Cli(args) => {
            let api_rig = rig.filter(|_| args.iter().any(|a| a.contains("{http_config}")));
            let config = dir.join("fleetsync.toml");
            let http_config = rig.map(|r| r.config.clone()).unwrap_or_default();
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    a.replace("{config}", &config.to_string_lossy())
                        .replace("{http_config}", &http_config.to_string_lossy())
                        .replace("{dir}", &dir.to_string_lossy())
                        .replace("{backup}", &world.backup_id)
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut env = vec![("RUST_LOG", "warn")];
            env.extend(case.env.iter().copied());
            // A command against the running fleetsync's API gets its owner token.
            if let Some(r) = api_rig {
                env.push(("FLEETSYNC_TOKEN", r.owner.as_str()));
            }
            let out = fleetsync_cmd_with(&args, &env, CASE_TIMEOUT).await?;
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            // From the first `error:` line on (log lines come before it; clap's usage
            // errors and import's list of problems span several lines).
            let message = stderr
                .match_indices("error:")
                .find(|(at, _)| *at == 0 || stderr[..*at].ends_with('\n'))
                .map(|(at, _)| stderr[at..].to_string())
                .unwrap_or_default();
            Ok(Outcome {
                code: out.status.code().unwrap_or(-1),
                message,
                everything: format!("{stdout}\n{stderr}"),
            })
        }
        Run::Http(method, path, body) => {
            let port = rig.context("HTTP case without the running fleetsync")?.port;
            let (code, body) = http(port, method, path, body).await?;
            Ok(Outcome {
                code,
                message: body.clone(),
                everything: body,
            })
        }
        Run::Api(tok, method, path, body) => {
            let rig = rig.context("API case without the running fleetsync")?;
            let token = match tok {
                Tok::Owner => Some(rig.owner.as_str()),
                Tok::Viewer => Some(rig.viewer.as_str()),
                Tok::Missing => None,
                Tok::Bogus => Some("fst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            };
            let client = fleetsync_tests::api::ApiClient::http(rig.api_port);
            let resp = client.request(method, path, token, body).await?;
            // Every API refusal is problem+json (RFC 9457) with type, title and detail.
            if resp.status >= 400 {
                let p = resp.json()?;
                ensure!(
                    resp.content_type == "application/problem+json"
                        && ["type", "title", "detail"].iter().all(|k| p[k].is_string()),
                    "not a problem+json answer: {} {}",
                    resp.content_type,
                    resp.body
                );
            }
            Ok(Outcome {
                code: i32::from(resp.status),
                message: resp.body.clone(),
                everything: resp.body,
            })
        }
    }
}

/// Runs one case; the error line (or body) it produced.
async fn run_case(world: &World, case: &Case, dir: &Path, rig: Option<&HttpRig>) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    Fleetsync::write_config(dir, &(case.config)(world, dir))?;
    (case.files)(world, dir).context("writing the case's files")?;
    for (s, sql) in case.setup_sql {
        world.server(*s).exec(sql).await.context("setup SQL")?;
    }
    let result = check_case(world, case, dir, rig).await;
    for (s, sql) in case.cleanup_sql {
        world.server(*s).exec(sql).await.context("cleanup SQL")?;
    }
    result
}

async fn check_case(
    world: &World,
    case: &Case,
    dir: &Path,
    rig: Option<&HttpRig>,
) -> Result<String> {
    let before = take_print(world, case, dir, rig).await?;
    let out = execute(world, case, dir, rig).await?;
    let shown = out.message.trim().to_string();
    let mut problems = Vec::new();
    if out.code != case.expect {
        problems.push(format!(
            "exit/status {} instead of {}",
            out.code, case.expect
        ));
    }
    if matches!(case.run, Run::Cli(_)) && case.expect != 0 && shown.is_empty() {
        problems.push("no `error:` line on stderr".to_string());
    }
    if matches!(case.run, Run::Cli(_)) && case.one_line && shown.lines().count() > 1 {
        problems.push("the error spans several lines".to_string());
    }
    let norm = normalize(&shown);
    for group in case.mentions {
        if !group.iter().any(|w| norm.contains(&normalize(w))) {
            problems.push(format!("does not mention any of {group:?}"));
        }
    }
    for secret in case.never {
        if out.everything.contains(secret) {
            problems.push(format!("shows {secret:?}"));
        }
    }
    let mut after = take_print(world, case, dir, rig).await?;
    for (path, word) in case.records {
        let path = path.replace("{backup}", &world.backup_id);
        let text = std::fs::read_to_string(dir.join(&path)).unwrap_or_default();
        if before.disk.contains_key(&path) || !text.contains(word) {
            problems.push(format!("{path} does not record {word:?}: {text:?}"));
        }
        after.disk.remove(&path);
    }
    if after != before {
        problems.push(format!(
            "something changed: {}",
            print_diff(&before, &after)
        ));
    }
    if !problems.is_empty() {
        let everything = out.everything.trim();
        bail!("{}; output: {everything}", problems.join("; "));
    }
    Ok(shown)
}

fn print_diff(before: &Print, after: &Print) -> String {
    let mut out = Vec::new();
    for (i, (b, a)) in before.servers.iter().zip(&after.servers).enumerate() {
        if b != a {
            let gone: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
            let new: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
            out.push(format!("server {} {gone:?} -> {new:?}", ["a", "b", "c"][i]));
        }
    }
    if before.disk != after.disk {
        let mut keys: Vec<&String> = before.disk.keys().chain(after.disk.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if before.disk.get(k) != after.disk.get(k) {
                out.push(format!(
                    "disk {k}: {:?} -> {:?}",
                    before.disk.get(k),
                    after.disk.get(k)
                ));
            }
        }
    }
    if before.pipelines != after.pipelines {
        out.push(format!(
            "pipelines {:?} -> {:?}",
            before.pipelines, after.pipelines
        ));
    }
    out.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_of_bad_inputs() -> Result<()> {
    use Category::{Config, Data, Http, Servers, Tasks};
    let started = Instant::now();
    let world = World::start().await?;
    let cases = cases::cases();
    let only = std::env::var("FLEETSYNC_CATALOGUE_ONLY").ok();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    ensure!(
        names.len() == cases.len(),
        "two catalogue cases share a name"
    );
    let mut rig: Option<HttpRig> = None;
    let mut failures = Vec::new();
    let mut ran = 0;
    for (i, case) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        if case.category == Category::Http && rig.is_none() {
            rig = Some(HttpRig::start(&world).await?);
        }
        ran += 1;
        let dir = world.root.path().join(format!("case-{i:03}"));
        let t = Instant::now();
        let rig_ref = if case.category == Category::Http {
            rig.as_ref()
        } else {
            None
        };
        match run_case(&world, case, &dir, rig_ref).await {
            Ok(line) => println!(
                "ok   {:<38} {:?} {:>5} ms  {line}",
                case.name,
                case.category,
                t.elapsed().as_millis()
            ),
            Err(e) => {
                println!("FAIL {:<38} {:?}: {e:#}", case.name, case.category);
                failures.push(format!("{} ({:?}): {e:#}", case.name, case.category));
            }
        }
    }
    let per_category: Vec<String> = [Config, Servers, Data, Tasks, Http]
        .iter()
        .map(|c| {
            let n = cases.iter().filter(|x| x.category == *c).count();
            format!("{c:?} {n}")
        })
        .collect();
    println!(
        "bad-input catalogue: {ran} cases run ({} in the table: {}), {} failed, {:.1} s",
        cases.len(),
        per_category.join(", "),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    ensure!(
        failures.is_empty(),
        "{} of {ran} catalogue cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
