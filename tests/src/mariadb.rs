//! A private MariaDB server per test: its own temp dir (`data/` with the socket, binlogs and
//! `error.log`; `tmp/`), port and server id.
//!
//! Invariants:
//! - The server binds 127.0.0.1 only, on a port the OS handed out, never 3306: a MariaDB that
//!   may already run on this machine is never touched.
//! - Defaults are what fleetsync needs from a source (ROW binlog, FULL row image and metadata,
//!   GTID domain = server id); `start_with` overrides any of them by option name, and
//!   `--skip-NAME` removes the default `--NAME`.
//! - Dropping a `MariaDb` SIGKILLs the server and removes the data dir.
//! - `kill9`/`stop` take the server down keeping its data dir and port; `start_again` brings
//!   the same server back (for target-outage tests).
//! - `query_rows` reads through connections set to `SET NAMES binary` and `time_zone='+00:00'`,
//!   so string cells are the stored bytes and TIMESTAMPs print the same on every server.
//! - `start_tls` starts a server with the test's certificates (`--ssl-cert`, `--ssl-key`,
//!   `--ssl-ca`) and `--require-secure-transport=ON`: the harness's own connections (pools,
//!   the `mariadb` client) then use TLS too, without verifying the certificate.

use crate::ports::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolOpts, Row, SslOpts, Value};
use tempfile::TempDir;

use crate::certs::Certs;

/// How long a freshly started server may take to accept connections (usually 1–2 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts when another process grabbed the port between our probe and the bind.
const PORT_ATTEMPTS: usize = 3;
/// Lines of the error log shown when a server fails.
const LOG_TAIL_LINES: usize = 30;

/// A running private MariaDB server.
pub struct MariaDb {
    child: Child,
    port: u16,
    server_id: u32,
    pool: Pool,
    /// Connections that read raw bytes (`SET NAMES binary`, UTC time zone).
    raw_pool: Pool,
    dir: TempDir,
    /// mariadbd's arguments, for `start_again`.
    args: Vec<String>,
    /// Whether the server requires TLS (the harness's connections use it).
    tls: bool,
}

impl MariaDb {
    /// Starts a server with the default source settings (ROW binlog, FULL metadata).
    pub async fn start(server_id: u32) -> Result<MariaDb> {
        Self::start_with(server_id, &[]).await
    }

    /// Starts a server whose default options are overridden by `extra_args`
    /// (`--binlog-format=STATEMENT` replaces `--binlog-format=ROW`, `--skip-log-bin` drops
    /// `--log-bin=...`; new options are appended).
    pub async fn start_with(server_id: u32, extra_args: &[&str]) -> Result<MariaDb> {
        Self::start_inner(server_id, extra_args, false).await
    }

    /// Starts a server that requires TLS (`--require-secure-transport=ON`) with `certs`'s
    /// server certificate and CA (the CA also verifies client certificates), plus `extra_args`.
    /// Fails unless the server reports `have_ssl = YES`.
    pub async fn start_tls(server_id: u32, certs: &Certs, extra_args: &[&str]) -> Result<MariaDb> {
        let tls_args = [
            format!("--ssl-cert={}", certs.server.cert.display()),
            format!("--ssl-key={}", certs.server.key.display()),
            format!("--ssl-ca={}", certs.ca.display()),
            "--require-secure-transport=ON".to_string(),
        ];
        let mut args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
        args.extend(extra_args);
        let db = Self::start_inner(server_id, &args, true).await?;
        let have_ssl = db.query_value("SELECT @@have_ssl").await?;
        if have_ssl.as_deref() != Some("YES") {
            bail!(
                "{}: have_ssl is {have_ssl:?} (is mariadbd built with TLS?)",
                db.ctx("starting with TLS")
            );
        }
        Ok(db)
    }

    async fn start_inner(server_id: u32, extra_args: &[&str], tls: bool) -> Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-mariadb-")
            .tempdir()
            .context("creating a temp dir for a MariaDB data dir")?;
        let (data, tmp) = (dir.path().join("data"), dir.path().join("tmp"));
        for d in [&data, &tmp] {
            std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
        }
        install_db(&data, &tmp).await?;
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let args = server_args(&data, &tmp, port, server_id, extra_args);
            let mut child = Command::new(tool("mariadbd"))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning mariadbd (is MariaDB installed? scripts/test.sh installs it)")?;
            match wait_ready(&mut child, &data, port, tls).await {
                Ok(()) => {
                    let (pool, raw_pool) = pools(port, tls);
                    return Ok(MariaDb {
                        child,
                        port,
                        server_id,
                        pool,
                        raw_pool,
                        dir,
                        args,
                        tls,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let taken = "Address already in use";
                    let port_taken = format!("{e:#}").contains(taken)
                        || error_log_tail(&data, LOG_TAIL_LINES).contains(taken);
                    if !port_taken {
                        return Err(e);
                    }
                    // Start afresh on another port; the old error log would confuse the next try.
                    let _ = std::fs::remove_file(data.join("error.log"));
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port found for mariadbd")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILLs the server (a crash), keeping its data dir and port for [`MariaDb::start_again`].
    pub fn kill9(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill().context(self.ctx("SIGKILL"))?;
        }
        self.child.wait().context(self.ctx("reaping mariadbd"))?;
        Ok(())
    }

    /// SIGTERM (a clean shutdown) and waits up to `timeout` for the exit, keeping the data dir
    /// and port for [`MariaDb::start_again`]; SIGKILLs and fails after `timeout`.
    pub async fn stop(&mut self, timeout: Duration) -> Result<()> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), Signal::SIGTERM).context(self.ctx("SIGTERM"))?;
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.kill9()?;
                bail!("{} after {timeout:?}", self.ctx("no exit on SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts the stopped server again on the same data dir and port (crash recovery runs when
    /// it was SIGKILLed). Connections from [`MariaDb::pool`] taken before are stale: take a new
    /// pool.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!(
                "{}",
                self.ctx("still running; stop it before starting it again")
            );
        }
        let data = self.data_dir();
        let mut child = Command::new(tool("mariadbd"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning mariadbd")?;
        if let Err(e) = wait_ready(&mut child, &data, self.port, self.tls).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.context(self.ctx("starting again")));
        }
        self.child = child;
        let (pool, raw_pool) = pools(self.port, self.tls);
        self.pool = pool;
        self.raw_pool = raw_pool;
        Ok(())
    }

    /// The pid of the running mariadbd (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The data dir (also holds `error.log`, `mysql.sock` and the binlogs).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `mysql://root@127.0.0.1:PORT`
    pub fn url_root(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT` (names and passwords must be URL-safe).
    pub fn url_user(&self, user: &str, password: &str) -> String {
        format!("mysql://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// A root connection pool (utf8mb4, server time zone).
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Runs one or more `;`-separated statements on one connection (session settings made at
    /// the start of `sql` hold for the rest of it).
    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.pool.get_conn().await.context(self.ctx("connecting"))?;
        conn.query_drop(sql)
            .await
            .with_context(|| format!("{}: {}", self.ctx("executing SQL"), truncate(sql, 400)))
    }

    /// Runs a query over the text protocol with `SET NAMES binary` and a UTC session time zone:
    /// every cell is the raw bytes the server prints, `None` for NULL.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
        let mut conn = self
            .raw_pool
            .get_conn()
            .await
            .context(self.ctx("connecting"))?;
        let rows: Vec<Row> = conn
            .query(sql)
            .await
            .with_context(|| format!("{}: {}", self.ctx("querying"), truncate(sql, 400)))?;
        Ok(rows
            .into_iter()
            .map(|row| row.unwrap().into_iter().map(cell_bytes).collect())
            .collect())
    }

    /// Runs a query and returns every cell as lossy UTF-8 text (`None` for NULL): for
    /// information_schema look-ups and counters.
    pub async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self
            .query_rows(sql)
            .await?
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
                    .collect()
            })
            .collect())
    }

    /// The first cell of the first row as text (`None` when there is no row or it is NULL).
    pub async fn query_value(&self, sql: &str) -> Result<Option<String>> {
        let rows = self.query_strings(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    /// `SELECT COUNT(*)` of a table.
    pub async fn count(&self, schema: &str, table: &str) -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {}.{}",
            quote_ident(schema),
            quote_ident(table)
        );
        let value = self.query_value(&sql).await?.unwrap_or_default();
        value
            .parse()
            .with_context(|| format!("COUNT(*) of {schema}.{table} returned {value:?}"))
    }

    /// Databases other than the server's own (`mysql`, `sys`, the schemas).
    pub async fn user_databases(&self) -> Result<Vec<String>> {
        let rows = self
            .query_strings(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
                 ('mysql','sys','information_schema','performance_schema') ORDER BY SCHEMA_NAME",
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    /// `(file, position)` from `SHOW MASTER STATUS`.
    pub async fn binlog_position(&self) -> Result<(String, u64)> {
        let rows = self.query_strings("SHOW MASTER STATUS").await?;
        let row = rows
            .into_iter()
            .next()
            .context(self.ctx("binary log is off"))?;
        let file = row.first().cloned().flatten().unwrap_or_default();
        let pos = row.get(1).cloned().flatten().unwrap_or_default();
        Ok((file, pos.parse().context("SHOW MASTER STATUS position")?))
    }

    /// `@@gtid_binlog_pos`.
    pub async fn gtid_binlog_pos(&self) -> Result<String> {
        Ok(self
            .query_value("SELECT @@gtid_binlog_pos")
            .await?
            .unwrap_or_default())
    }

    /// `FLUSH BINARY LOGS`, then purges every binlog before the new one. MariaDB keeps a file
    /// until its binlog checkpoint is written and while a dump thread reads it, so the purge is
    /// retried until only the current file is left (up to `timeout`). Returns that file.
    pub async fn purge_binlogs(&self, timeout: Duration) -> Result<String> {
        self.exec("FLUSH BINARY LOGS").await?;
        let (current, _) = self.binlog_position().await?;
        let deadline = Instant::now() + timeout;
        loop {
            self.exec(&format!("PURGE BINARY LOGS TO {}", quote_str(&current)))
                .await?;
            let first = self
                .query_value("SHOW BINARY LOGS")
                .await?
                .unwrap_or_default();
            if first == current {
                return Ok(current);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {first} still there after {timeout:?}",
                    self.ctx("purging binlogs")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pipes a SQL file into the `mariadb` client (no default database).
    pub async fn load_sql_file(&self, path: &Path) -> Result<()> {
        self.load_sql_file_into(None, path).await
    }

    /// Pipes a SQL file into the `mariadb` client, like `mariadb DB < file`.
    pub async fn load_sql_file_into(&self, db: Option<&str>, path: &Path) -> Result<()> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening SQL file {}", path.display()))?;
        let mut cmd = tokio::process::Command::new(tool("mariadb"));
        cmd.arg("--no-defaults")
            .arg("--host=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg("--user=root")
            .arg("--default-character-set=utf8mb4")
            .arg("--batch");
        if self.tls {
            cmd.arg("--ssl");
        }
        if let Some(db) = db {
            cmd.arg(db);
        }
        let out = cmd
            .stdin(Stdio::from(file))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .context("running the mariadb client")?;
        if !out.status.success() {
            bail!(
                "loading {} into {} failed ({}): {}",
                path.display(),
                db.unwrap_or("(no database)"),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Creates `'name'@'%'` with a password and runs `GRANT g TO 'name'@'%'` for each grant,
    /// e.g. `create_user("fs", "pw", &["SELECT, REPLICATION SLAVE ON *.*"])`.
    pub async fn create_user(&self, name: &str, password: &str, grants: &[&str]) -> Result<()> {
        let user = format!("{}@'%'", quote_str(name));
        let mut sql = format!("CREATE USER {user} IDENTIFIED BY {};", quote_str(password));
        for grant in grants {
            sql.push_str(&format!("GRANT {grant} TO {user};"));
        }
        self.exec(&sql).await
    }

    /// The last lines of the server's error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        error_log_tail(&self.data_dir(), lines)
    }

    fn ctx(&self, what: &str) -> String {
        format!(
            "{what} on MariaDB server {} (port {})",
            self.server_id, self.port
        )
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGKILL is enough: the data dir is thrown away with the TempDir right after.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal (default sql_mode: backslash escapes are on).
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A hex literal for arbitrary bytes (`X''` for empty).
pub fn hex_literal(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 3);
    s.push_str("X'");
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s.push('\'');
    s
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

fn cell_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(b),
        // The text protocol only yields bytes; keep anything else printable all the same.
        other => Some(other.as_sql(true).into_bytes()),
    }
}

/// The root pool and the raw-bytes pool of a server.
fn pools(port: u16, tls: bool) -> (Pool, Pool) {
    let pool = Pool::new(opts(port, &[], tls));
    let raw_pool = Pool::new(opts(
        port,
        &["SET NAMES binary", "SET time_zone = '+00:00'"],
        tls,
    ));
    (pool, raw_pool)
}

/// The harness's root connections; with `tls`, encrypted but not verified (fleetsync's own
/// connections are what the TLS tests verify).
fn opts(port: u16, setup: &[&str], tls: bool) -> Opts {
    let pool_opts = PoolOpts::default().with_reset_connection(setup.is_empty());
    let ssl = tls.then(|| SslOpts::default().with_danger_accept_invalid_certs(true));
    OptsBuilder::default()
        .ssl_opts(ssl)
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .pool_opts(pool_opts)
        .setup(setup.to_vec())
        .into()
}

/// Creates the system tables. Each server has its own tmpdir: bootstraps running at the same
/// time in a shared /tmp can trip over each other's temporary tables.
async fn install_db(data: &Path, tmp: &Path) -> Result<()> {
    let out = tokio::process::Command::new(tool("mariadb-install-db"))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context(
            "running mariadb-install-db (is MariaDB installed? scripts/test.sh installs it)",
        )?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A MariaDB program: from PATH, else from the Debian locations (`mariadbd` is in /usr/sbin,
/// which a non-root PATH lacks).
fn tool(name: &str) -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !in_path {
        for dir in ["/usr/sbin", "/usr/bin"] {
            let candidate = Path::new(dir).join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(name)
}

/// Asks the OS for a free port on 127.0.0.1 and releases it for mariadbd to bind.
fn server_args(data: &Path, tmp: &Path, port: u16, server_id: u32, extra: &[&str]) -> Vec<String> {
    let d = data.display();
    let defaults = vec![
        "--user=root".to_string(),
        format!("--datadir={d}"),
        format!("--port={port}"),
        format!("--socket={d}/mysql.sock"),
        format!("--pid-file={d}/mariadbd.pid"),
        format!("--log-error={d}/error.log"),
        format!("--tmpdir={}", tmp.display()),
        "--bind-address=127.0.0.1".to_string(),
        format!("--server-id={server_id}"),
        format!("--gtid-domain-id={server_id}"),
        format!("--log-bin={d}/binlog"),
        "--binlog-format=ROW".to_string(),
        "--binlog-row-image=FULL".to_string(),
        "--binlog-row-metadata=FULL".to_string(),
        "--log-slave-updates=ON".to_string(),
        "--character-set-server=utf8mb4".to_string(),
        "--skip-name-resolve".to_string(),
        "--innodb-buffer-pool-size=64M".to_string(),
        "--innodb-log-file-size=48M".to_string(),
        // Test servers trade durability for speed; a killed server is thrown away anyway.
        "--innodb-flush-log-at-trx-commit=2".to_string(),
        "--sync-binlog=0".to_string(),
        "--innodb-doublewrite=0".to_string(),
        // Many servers at once can exhaust the kernel's AIO contexts.
        "--innodb-use-native-aio=0".to_string(),
        "--max-connections=300".to_string(),
    ];
    merge_args(defaults, extra)
}

/// `--no-defaults` first, then the defaults less those `extra` overrides, then `extra`.
fn merge_args(defaults: Vec<String>, extra: &[&str]) -> Vec<String> {
    let overridden: Vec<String> = extra.iter().map(|a| option_name(a)).collect();
    let mut args = vec!["--no-defaults".to_string()];
    args.extend(
        defaults
            .into_iter()
            .filter(|d| !overridden.contains(&option_name(d))),
    );
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// `--skip-log-bin` and `--log_bin=x` both name `log-bin`.
fn option_name(arg: &str) -> String {
    let name = arg.trim_start_matches('-');
    let name = name.split('=').next().unwrap_or(name);
    let name = name.strip_prefix("skip-").unwrap_or(name);
    name.replace('_', "-")
}

async fn wait_ready(child: &mut Child, dir: &Path, port: u16, tls: bool) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "mariadbd on port {port} exited early ({status}); error log {}:\n{}",
                dir.join("error.log").display(),
                error_log_tail(dir, LOG_TAIL_LINES)
            );
        }
        let attempt = tokio::time::timeout(Duration::from_secs(2), Conn::new(opts(port, &[], tls)));
        if let Ok(Ok(mut conn)) = attempt.await {
            // Another server may have grabbed the port first: make sure it is ours.
            let datadir: Option<String> = conn.query_first("SELECT @@datadir").await?;
            let _ = conn.disconnect().await;
            let ours = datadir
                .as_deref()
                .map(|d| Path::new(d.trim_end_matches('/')) == dir);
            if ours != Some(true) {
                bail!(
                    "port {port} answered with another server (datadir {datadir:?}): \
                     Address already in use"
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "mariadbd on port {port} did not accept connections within {READY_TIMEOUT:?}; \
                 error log {}:\n{}",
                dir.join("error.log").display(),
                error_log_tail(dir, LOG_TAIL_LINES)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn error_log_tail(dir: &Path, lines: usize) -> String {
    file_tail(&dir.join("error.log"), lines)
}

/// The last `n` lines of a log file (lossy UTF-8), or why it cannot be read.
pub fn file_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes), n),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `n` lines of a text.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_override_defaults_by_name() {
        let defaults = vec![
            "--log-bin=/d/binlog".to_string(),
            "--binlog-format=ROW".to_string(),
        ];
        let args = merge_args(defaults, &["--skip-log-bin", "--binlog_format=STATEMENT"]);
        assert_eq!(
            args,
            [
                "--no-defaults",
                "--skip-log-bin",
                "--binlog_format=STATEMENT"
            ]
        );
    }

    #[test]
    fn literals_escape() {
        assert_eq!(quote_str("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(hex_literal(&[0, 0xff]), "X'00FF'");
        assert_eq!(hex_literal(&[]), "X''");
    }
}
