//! Fixtures shared by the e2e tests: a fresh source/target pair with its own temp dir, and the
//! checks for a `fleetsync run` that must refuse bad input.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fleetsync_tests::{
    fleetsync_cmd_with, simple_config, wait_until, Fleetsync, KafkaCluster, MariaDb,
};
use tempfile::TempDir;

/// Server ids (and GTID domains) of the pair.
pub const SOURCE_ID: u32 = 1;
pub const TARGET_ID: u32 = 2;
/// Time for a small data set to reach the target.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
/// Time for a graceful stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a `fleetsync run` given bad input may take to give up.
pub const REFUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A source and a target server, fresh for one test, plus a temp dir for config and state.
pub struct Pair {
    pub src: MariaDb,
    pub dst: MariaDb,
    pub dir: TempDir,
}

impl Pair {
    /// Both servers with the default source settings, started concurrently.
    pub async fn start() -> Result<Pair> {
        Self::start_with(&[], &[]).await
    }

    /// Servers with extra mariadbd options (see `MariaDb::start_with`).
    pub async fn start_with(src_args: &[&str], dst_args: &[&str]) -> Result<Pair> {
        let (src, dst) = tokio::join!(
            MariaDb::start_with(SOURCE_ID, src_args),
            MariaDb::start_with(TARGET_ID, dst_args)
        );
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-e2e-")
            .tempdir()?;
        Ok(Pair {
            src: src.context("source server")?,
            dst: dst.context("target server")?,
            dir,
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the usual config (`src` → `dst`, sync `s1`) with these include regexes.
    pub fn config(&self, include: &[&str]) -> Result<PathBuf> {
        let text = simple_config(
            &self.state_dir(),
            &self.src.url_root(),
            &self.dst.url_root(),
            include,
        );
        Fleetsync::write_config(self.dir.path(), &text)
    }

    /// Writes the usual config with the HTTP listener (`/health`, `/metrics`) on
    /// `port`, so that tests and `fleetsync status` can reach the running process.
    pub fn config_listening(&self, include: &[&str], port: u16) -> Result<PathBuf> {
        let text = simple_config(
            &self.state_dir(),
            &self.src.url_root(),
            &self.dst.url_root(),
            include,
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        Fleetsync::write_config(self.dir.path(), &text)
    }
}

/// Runs `sql` on the source in a session with `sql_mode=''` and a UTC time zone (zero dates,
/// invalid ENUM values and TIMESTAMP literals mean the same on every server).
pub async fn exec_lenient(db: &MariaDb, sql: &str) -> Result<()> {
    db.exec(&format!(
        "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00'; {sql}"
    ))
    .await
}

/// What must hold for a refused `fleetsync run`.
pub struct Refusal<'a> {
    /// Each group needs one of its words in stderr (case, `-`, `_` and spaces don't matter).
    pub mentions: &'a [&'a [&'a str]],
    /// Strings that must not appear in stderr (a password).
    pub never: &'a [&'a str],
}

/// Runs `fleetsync run --config CONFIG` (logging off) and checks that it exits non-zero with a
/// one-line error on stderr that satisfies `refusal`. Returns the error line.
pub async fn expect_refusal(config: &Path, refusal: &Refusal<'_>) -> Result<String> {
    let config_s = config.to_str().context("config path is not UTF-8")?;
    let out = fleetsync_cmd_with(
        &["run", "--config", config_s],
        &[("RUST_LOG", "off")],
        REFUSE_TIMEOUT,
    )
    .await
    .context("fleetsync run must give up on bad input instead of running on")?;
    check_refusal(&out, refusal)
}

/// The checks of [`expect_refusal`] on any command's output.
pub fn check_refusal(out: &Output, refusal: &Refusal<'_>) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "fleetsync run exited successfully on bad input; stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1,
        "expected a one-line error on stderr, got {} lines:\n{stderr}",
        lines.len()
    );
    let line = lines[0].to_string();
    let norm = normalize(&line);
    for group in refusal.mentions {
        if !group.iter().any(|word| norm.contains(&normalize(word))) {
            bail!("the error should mention one of {group:?}: {line}");
        }
    }
    for secret in refusal.never {
        ensure!(
            !line.contains(secret),
            "the error must not show {secret:?}: {line}"
        );
    }
    println!("refused as expected: {line}");
    Ok(line)
}

fn normalize(s: &str) -> String {
    s.to_lowercase().replace(['-', ' '], "_")
}

/// Fails unless the target has exactly the databases it had before (`fleetsync` included:
/// a refused run must not even create its progress database).
pub async fn assert_target_untouched(dst: &MariaDb, before: &[String]) -> Result<()> {
    let after = dst.user_databases().await?;
    ensure!(
        after == before,
        "the target changed: databases {before:?} before, {after:?} after"
    );
    Ok(())
}

/// A port on 127.0.0.1 with nothing listening (bound, read and released).
pub fn dead_port() -> Result<u16> {
    fleetsync_tests::free_port()
}

/// GET `path` from 127.0.0.1:`port`: (HTTP status code, body).
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    http_request(port, "GET", path, "").await
}

/// One HTTP/1.0 request to 127.0.0.1:`port` (a JSON `body` when not empty): (status, body).
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut response = String::new();
    s.read_to_string(&mut response).await?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The one target of sync `s1` in `fleetsync status --json`.
pub async fn status_target(config: &Path) -> Result<serde_json::Value> {
    let status = fleetsync_tests::status_json(config).await?;
    Ok(status["syncs"][0]["targets"][0].clone())
}

/// A number from the environment (a test's knob, e.g. `FLEETSYNC_STRESS_SEEDS`), or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fleetsync processes of a test of several servers: `fleetsync run` (embedded bus), or
/// agent + coordinator over a Kafka broker (kept alive by the value).
pub struct Procs {
    pub procs: Vec<Fleetsync>,
    pub broker: Option<KafkaCluster>,
}

impl Procs {
    /// Starts `fleetsync run` on `config`, or `agent` and `coordinator` when there is a broker.
    pub fn start(config: &Path, broker: Option<KafkaCluster>) -> Result<Procs> {
        let procs = match &broker {
            None => vec![Fleetsync::run(config)?],
            Some(_) => vec![
                Fleetsync::spawn("agent", config, &[])?,
                Fleetsync::spawn("coordinator", config, &[])?,
            ],
        };
        Ok(Procs { procs, broker })
    }

    pub fn log_tail(&self, n: usize) -> String {
        let mut tails: Vec<String> = self.procs.iter().map(|p| p.log_tail(n)).collect();
        if let Some(b) = &self.broker {
            tails.push(b.log_tail(n.min(40)));
        }
        tails.join("\n---\n")
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        self.procs.iter_mut().try_for_each(|p| p.ensure_running())
    }

    pub async fn stop(&mut self) -> Result<()> {
        for p in &mut self.procs {
            p.stop(STOP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// SIGKILL process `i`, then start it again half a second later.
    pub async fn kill_restart(&mut self, i: usize) -> Result<()> {
        self.procs[i].kill9()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.procs[i].restart()
    }
}

/// Waits until every pipeline between `servers` streams: a row written in `app.ping` on each
/// server reaches every other. The initial snapshots recreate target tables while they start,
/// so pings are written again (every `pause`) until they stay.
pub async fn wait_pings_everywhere(
    servers: &[MariaDb],
    pause: Duration,
    procs: &Procs,
) -> Result<()> {
    wait_until(
        Duration::from_secs(90),
        "pings to reach every server",
        || async {
            for (i, s) in servers.iter().enumerate() {
                s.exec(&format!("INSERT IGNORE INTO app.ping VALUES ({i})"))
                    .await?;
            }
            tokio::time::sleep(pause).await;
            for s in servers {
                ensure!(
                    s.count("app", "ping").await? == servers.len() as u64,
                    "pings missing"
                );
            }
            Ok(())
        },
    )
    .await
    .with_context(|| procs.log_tail(40))
}
