//! A real S3-compatible server for the backup tests: SeaweedFS's `weed mini` (master, volume,
//! filer and S3 gateway in one process), built once from the Go module proxy by
//! `tests/s3/fetch.sh` (or `FLEETSYNC_WEED_BIN`), started on free 127.0.0.1 ports with its own
//! data dir and one access key, with the buckets a test asks for.
//!
//! [`S3Server::stop`] / [`S3Server::kill9`] and [`S3Server::start_again`] (same ports, same
//! data) give the outage and crash cases; [`S3Server::store`] opens a bucket with fleetsync's
//! own store, for tests that list, read or tamper with objects directly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fleetsync_config::BackupConfig;
use fleetsync_store::Store;
use tempfile::TempDir;

use crate::fixtures::repo_root;
use crate::kafka_setup::{free_ports, temp_dir};

/// Path of a prebuilt `weed` binary (skips the build).
pub const WEED_BIN_ENV: &str = "FLEETSYNC_WEED_BIN";
/// The access key every test server accepts (with full rights).
pub const ACCESS_KEY: &str = "fleetsync-test-key";
/// Its secret. Tests assert it never appears in fleetsync's output.
pub const SECRET_KEY: &str = "fleetsync-test-secret-4f1d8c2e";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One `weed mini` process and its data.
pub struct S3Server {
    child: Option<Child>,
    dir: TempDir,
    ports: Vec<u16>,
    buckets: Vec<String>,
}

impl S3Server {
    /// Starts a server with `buckets` created, and waits until every bucket answers.
    pub async fn start(buckets: &[&str]) -> Result<S3Server> {
        let dir = temp_dir("fleetsync-s3-")?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let config = format!(
            r#"{{"identities":[{{"name":"fleetsync","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), config)?;
        std::fs::write(
            dir.path().join("credentials"),
            format!("[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
        )?;
        let mut s = S3Server {
            child: None,
            ports: free_ports(10)?,
            dir,
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
        };
        s.start_again().await?;
        Ok(s)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// A credentials file in AWS's format with the test key (for `s3_credentials_file`).
    pub fn credentials_file(&self) -> PathBuf {
        self.dir.path().join("credentials")
    }

    /// The `[backup]` lines for `s3://bucket/prefix` (credentials from [`Self::credentials_file`]).
    pub fn backup_toml(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "dir = \"s3://{bucket}/{prefix}\"\ns3_endpoint = \"{}\"\ns3_region = \"us-east-1\"\ns3_path_style = true\ns3_credentials_file = \"{}\"\n",
            self.endpoint(),
            self.credentials_file().display()
        )
    }

    /// The environment variables that carry the test key (instead of the file).
    pub fn credential_env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    /// fleetsync's store on `s3://bucket/prefix` of this server.
    pub fn store(&self, bucket: &str, prefix: &str) -> Result<Store> {
        let cfg = BackupConfig {
            dir: Some(format!("s3://{bucket}/{prefix}").into()),
            s3_endpoint: Some(self.endpoint()),
            s3_region: Some("us-east-1".into()),
            s3_path_style: true,
            s3_credentials_file: Some(self.credentials_file()),
            ..BackupConfig::default()
        };
        Store::open(&cfg).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The server's log (for a failing test's message).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// (Re)starts the server on the same ports and data dir; waits until it serves.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("the S3 server is already running");
        }
        let bin = weed_bin()?;
        let p = &self.ports;
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("weed.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("mini")
            .arg(format!("-dir={}", d.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", p[0]))
            .arg(format!("-s3.port.grpc={}", p[1]))
            .arg(format!("-master.port={}", p[2]))
            .arg(format!("-master.port.grpc={}", p[3]))
            .arg(format!("-volume.port={}", p[4]))
            .arg(format!("-volume.port.grpc={}", p[5]))
            .arg(format!("-filer.port={}", p[6]))
            .arg(format!("-filer.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            // A fixed volume count: by default weed mini derives it from the disk's free
            // space, and refuses writes ("no free volumes left") on a fuller disk.
            .args(["-volume.max=8", "-master.volumeSizeLimitMB=64"])
            .args([
                "-admin.ui=false",
                "-admin.port.legacy=0",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-s3.config={}", d.join("s3.json").display()))
            .arg(format!("-bucket={}", self.buckets.join(",")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        loop {
            if !self.is_running() {
                bail!(
                    "the S3 server exited at start; log {}:\n{}",
                    self.log_path().display(),
                    tail(&self.log_path())
                );
            }
            let mut ok = true;
            for b in &self.buckets {
                let r = match self.store(b, "") {
                    Ok(s) => s.check().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = r {
                    last = e;
                    ok = false;
                    break;
                }
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the S3 server did not serve its buckets within {READY_TIMEOUT:?} ({last}); log:\n{}",
                    tail(&self.log_path())
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 20 s).
    pub async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill9()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The `weed` binary: `FLEETSYNC_WEED_BIN`, else `tests/s3/fetch.sh` (built once, cached).
pub fn weed_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_weed().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn find_weed() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(WEED_BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    let script = repo_root().join("tests/s3/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}; needs Go, see README):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !bin.is_file() {
        bail!("{} printed {}, not a file", script.display(), bin.display());
    }
    Ok(bin)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
