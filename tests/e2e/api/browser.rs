//! Running a browser script of `web/tests/` (playwright-core driving Debian's chromium, see
//! web/tests/lib.mjs) against a live `fleetsync run`: the checks that what the script needs is
//! installed, the environment every script reads, the time bound, the failure report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::Fleetsync;

/// Upper bound for a whole browser script (each of its waits is 60 s at most).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// What a browser script needs, checked: chromium, web/node_modules, a binary with the built
/// dashboard embedded (checked on the live process by [`run_script`]).
pub struct Browser {
    chromium: String,
    root: PathBuf,
}

impl Browser {
    /// Fails (saying what to install) when chromium or web/node_modules is missing: the
    /// browser tests never skip.
    pub fn ready() -> Result<Browser> {
        let root = fleetsync_tests::repo_root();
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        ensure!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: install it (apt-get install -y chromium; scripts/test.sh does)"
        );
        ensure!(
            root.join("web/node_modules/playwright-core").is_dir(),
            "web/node_modules is missing: run `cd web && npm ci` (scripts/test.sh does)"
        );
        Ok(Browser { chromium, root })
    }

    /// Where the scripts save their screenshots.
    pub fn screenshots(&self) -> PathBuf {
        self.root.join("target/dashboard-screenshots")
    }

    /// Runs `web/tests/{script}` against the dashboard at `api_port` with `env` (plus DASH_URL,
    /// SCREENSHOTS, CHROMIUM); returns its stdout. Fails with the script's output and `fs`'s
    /// log tail when it fails or outlives [`SCRIPT_TIMEOUT`].
    pub async fn run_script(
        &self,
        script: &str,
        api_port: u16,
        env: &[(&str, &str)],
        fs: &Fleetsync,
    ) -> Result<String> {
        let api = fleetsync_tests::api::ApiClient::http(api_port);
        let index = api.get("/", None).await?;
        ensure!(
            index.status == 200 && index.body.contains("/assets/index-"),
            "GET / is not the built dashboard (run `cd web && npm run build`, then cargo build): {} {}",
            index.status,
            index.body
        );
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(self.root.join("web/tests").join(script))
            .current_dir(self.root.join("web"))
            .env("DASH_URL", format!("http://127.0.0.1:{api_port}/"))
            .env("SCREENSHOTS", self.screenshots())
            .env("CHROMIUM", &self.chromium)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
            .await
            .with_context(|| format!("{script} still runs after {SCRIPT_TIMEOUT:?}"))??;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{}", stdout.trim());
        ensure!(
            out.status.success(),
            "the browser script {script} failed ({}):\n{stdout}\n{stderr}\nfleetsync log:\n{}",
            out.status,
            fs.log_tail(40)
        );
        Ok(stdout)
    }

    /// Fails unless every `names` screenshot exists.
    pub fn ensure_screenshots(&self, names: &[&str]) -> Result<()> {
        for shot in names {
            let file = self.screenshots().join(format!("{shot}.png"));
            ensure!(file.is_file(), "no screenshot {}", file.display());
        }
        Ok(())
    }
}

/// Rows written to a source while a browser script watches: `sql` every `every`, on one
/// connection, until [`Writer::stop`].
pub struct Writer {
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Writer {
    pub fn start(pool: mysql_async::Pool, sql: &'static str, every: Duration) -> Writer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let writing = std::sync::Arc::new(AtomicBool::new(true));
        let flag = writing.clone();
        let task = tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await?;
            while flag.load(Ordering::Relaxed) {
                conn.query_drop(sql).await?;
                tokio::time::sleep(every).await;
            }
            drop(conn);
            pool.disconnect().await?;
            anyhow::Ok(())
        });
        Writer { writing, task }
    }

    /// Stops writing; fails if a write failed.
    pub async fn stop(self) -> Result<()> {
        self.writing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.task.await?
    }
}

/// The end of a browser test: no token in fleetsync's log, the process still running, then
/// stopped cleanly.
pub async fn finish(mut fs: Fleetsync, tokens: &[&str]) -> Result<()> {
    let log = fs.log_tail(500);
    ensure!(
        tokens.iter().all(|t| !log.contains(t)),
        "a token is in fleetsync's log"
    );
    fs.ensure_running()?;
    fs.stop(Duration::from_secs(30)).await?;
    Ok(())
}
