//! `fleetsync --remote URL --token T <command>`: the same commands against a coordinator's
//! API. `status` reads `GET /api/v1/status`; the job-backed commands start their job
//! (`POST /api/v1/jobs/{kind}`), follow it on the event stream (`GET /api/v1/events`: a
//! progress bar on a terminal; polling `GET /api/v1/jobs/{id}` as a backstop, or alone when
//! the stream cannot be opened; Ctrl-C cancels the job), then print the job's report with the local
//! command's printer and exit with the local command's exit code.
//!
//! Errors are one line: an unreachable coordinator, 401 (token missing, unknown, expired or
//! revoked), 403 (the token's role lacks the permission). The token is never printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_proto::jobs::{Job, JobKind, JobState};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::api::client::{client_config, exchange_bytes, ApiArgs};
use crate::exit::{fail, Exit};
use crate::service::{Bar, JobRequest};

/// How often a running job is polled without an event stream.
const POLL_EVERY: Duration = Duration::from_millis(300);
/// How often a running job is polled while its events arrive (a backstop).
const BACKSTOP_EVERY: Duration = Duration::from_secs(2);

/// A connection to the API, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type EventStream = BufReader<Box<dyn Stream>>;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered between the stream reader and the follower.
const EVENTS_BUFFER: usize = 64;

/// Reads the stream's events (`event:` name and JSON `data:`) into `tx` until the stream
/// ends or the receiver is gone. Runs as its own task, so the caller waits on a channel
/// (cancel-safe) rather than on a half-read line.
async fn read_events(mut reader: EventStream, tx: mpsc::Sender<(String, serde_json::Value)>) {
    let (mut name, mut data) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if !name.is_empty() {
                let value = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                if tx.send((std::mem::take(&mut name), value)).await.is_err() {
                    return;
                }
            }
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

/// The next event; waits forever without a stream (the caller's other branches decide).
async fn next_event(
    events: &mut Option<mpsc::Receiver<(String, serde_json::Value)>>,
) -> Option<(String, serde_json::Value)> {
    match events.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Aborts the event reader when following ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A coordinator's API.
pub struct Remote {
    base: String,
    host: String,
    port: u16,
    tls: Option<PathBuf>,
    token: String,
}

fn kind_path(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Health => "health",
        JobKind::SchemaDiff => "schema-diff",
        JobKind::DataDiff => "data-diff",
        JobKind::BackupCreate => "backup-create",
        JobKind::BackupVerify => "backup-verify",
        JobKind::BackupRestore => "backup-restore",
        JobKind::BackupPrune => "backup-prune",
        JobKind::Export => "export",
        JobKind::Import => "import",
        JobKind::HealthFix => "health-fix",
        JobKind::MigrateGenerate => "migrate-generate",
        JobKind::MigrateApply => "migrate-apply",
        JobKind::MigrateRollback => "migrate-rollback",
        JobKind::MigrateUp => "migrate-up",
        JobKind::MigrateUndo => "migrate-undo",
    }
}

impl Remote {
    /// `url` is `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is ignored).
    pub fn new(url: &str, args: &ApiArgs) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_string();
        let (tls, rest) = if let Some(r) = base.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("--remote {base}: must be http://HOST:PORT or https://HOST:PORT");
        };
        if rest.contains('/') {
            bail!("--remote {base}: give the API's address only (http[s]://HOST:PORT)");
        }
        let (host, port) = rest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .ok_or_else(|| anyhow!("--remote {base}: must name the port (http[s]://HOST:PORT)"))?;
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("--remote needs an API token: --token or FLEETSYNC_TOKEN (see `fleetsync token create`)"))?;
        let tls = match (tls, &args.api_ca) {
            (true, Some(ca)) => Some(ca.clone()),
            (true, None) => bail!("--remote {base}: https needs the CA that signed the API's certificate (--api-ca or FLEETSYNC_API_CA)"),
            (false, _) => None,
        };
        Ok(Remote {
            base,
            host,
            port,
            tls,
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call: status and body.
    async fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let (status, body) = self
            .call_bytes(method, path, "application/json", body.as_bytes())
            .await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One call with a body of `content_type` in bytes: status and body bytes.
    async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host, self.port, self.token, body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!("cannot reach the coordinator at {}: {e}", self.base)
        };
        let exchange_all = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unreachable(&e))?;
            match &self.tls {
                None => exchange_bytes(tcp, &request).await,
                Some(ca) => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)?));
                    let name = ServerName::try_from(self.host.clone())
                        .map_err(|e| anyhow!("--remote {}: {e}", self.base))?;
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| anyhow!("TLS to the coordinator at {}: {e}", self.base))?;
                    exchange_bytes(tls, &request).await
                }
            }
        };
        let raw = tokio::time::timeout(CALL_TIMEOUT, exchange_all)
            .await
            .map_err(|_| unreachable(&"no answer within 30 s"))??;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let body = raw.get(split + 4..).unwrap_or_default().to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("the coordinator at {} sent no HTTP answer", self.base))?;
        if status == 401 || status == 403 {
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|p| p["detail"].as_str().map(str::to_string))
                .unwrap_or_default();
            let what = if status == 401 {
                "refused the token (401 unauthorized)"
            } else {
                "refused the call (403 forbidden)"
            };
            bail!("the coordinator at {} {what}: {detail}", self.base);
        }
        Ok((status, body))
    }

    fn problem(&self, status: u16, body: &str) -> anyhow::Error {
        let detail = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|p| p["detail"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.chars().take(200).collect());
        anyhow!(
            "the coordinator at {} answered {status}: {detail}",
            self.base
        )
    }

    /// `GET path` as JSON (200 only).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = self.call("GET", path, "").await?;
        if status != 200 {
            return Err(self.problem(status, &body));
        }
        serde_json::from_str(&body)
            .with_context(|| format!("the coordinator at {} sent no JSON", self.base))
    }

    async fn job(&self, id: &str) -> Result<Job> {
        let v = self.get_json(&format!("/api/v1/jobs/{id}")).await?;
        serde_json::from_value(v).with_context(|| format!("job {id}: not a job document"))
    }

    /// Starts `req` as a job, follows it, prints its report with `print` and exits like the
    /// local command (its exit code; `R::EXIT_ERROR` with one line when the job failed).
    pub async fn run_job<R: JobRequest>(&self, req: &R, print: impl Fn(&R::Report)) -> Result<()> {
        match self.follow(req).await {
            Ok(job) => self.finish::<R>(job, print),
            Err(e) => fail(R::EXIT_ERROR, crate::exit::one_line(e.as_ref())),
        }
    }

    /// Opens `GET /api/v1/events`: the stream after the answer's head (200 only).
    async fn open_events(&self) -> Result<EventStream> {
        let request = format!(
            "GET /api/v1/events HTTP/1.0\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.host, self.port, self.token
        );
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let mut stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(ca) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)?));
                let name = ServerName::try_from(self.host.clone())?;
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).await?;
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("the event stream answered {}", status.trim());
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                break;
            }
        }
        Ok(reader)
    }

    /// Starts the job and follows it: progress from the event stream (`job_progress`), the
    /// end from its `job_state` event, with a poll of the job every [`BACKSTOP_EVERY`] in case
    /// the stream is slow or lost (then every [`POLL_EVERY`]). Ctrl-C cancels the job.
    async fn follow<R: JobRequest>(&self, req: &R) -> Result<Job> {
        let path = format!("/api/v1/jobs/{}", kind_path(R::KIND));
        let body = serde_json::to_vec(req)?;
        self.follow_start(&path, "application/json", &body).await
    }

    /// [`Remote::follow`] for a start call of any body (an upload).
    async fn follow_start(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Job> {
        // Subscribed before the start, so that no event of the job is missed.
        let (mut events, _reader) = match self.open_events().await {
            Ok(stream) => {
                let (tx, rx) = mpsc::channel(EVENTS_BUFFER);
                let task = tokio::spawn(read_events(stream, tx));
                (Some(rx), Some(AbortOnDrop(task)))
            }
            Err(e) => {
                tracing::debug!(error = %e, "no event stream: polling the job");
                (None, None)
            }
        };
        let (status, body) = self.call_bytes("POST", path, content_type, body).await?;
        if status != 202 {
            return Err(self.problem(status, &String::from_utf8_lossy(&body)));
        }
        let job: Job = serde_json::from_slice(&body).context("the job's answer is not a job")?;
        let id = job.id;
        let bar = Bar::for_terminal();
        let mut cancelled = false;
        let mut check = true;
        let mut told_waiting = false;
        loop {
            if check {
                let job = self.job(&id).await?;
                bar.progress(&job.progress);
                if job.state.is_final() {
                    return Ok(job);
                }
                if job.state == JobState::AwaitingApproval && !told_waiting {
                    told_waiting = true;
                    let permission = job.approval.map(|a| a.permission).unwrap_or_default();
                    eprintln!(
                        "job {id} awaits approval: another token holding {permission} must approve it (POST /api/v1/jobs/{id}/approve); Ctrl-C withdraws it"
                    );
                }
            }
            let mut lost = false;
            let wait = if events.is_some() {
                BACKSTOP_EVERY
            } else {
                POLL_EVERY
            };
            tokio::select! {
                e = next_event(&mut events) => match e {
                    Some((name, data)) if data["id"] == id.as_str() => {
                        if name == "job_progress" {
                            if let Ok(p) = serde_json::from_value(data["progress"].clone()) {
                                bar.progress(&p);
                            }
                        }
                        // A final state, or the approval that queues a waiting job.
                        check = name == "job_state"
                            && serde_json::from_value::<JobState>(data["state"].clone())
                                .is_ok_and(|s| s.is_final() || s == JobState::Queued);
                    }
                    Some(_) => check = false,
                    None => {
                        lost = true;
                        check = true;
                    }
                },
                _ = tokio::time::sleep(wait) => check = true,
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    cancelled = true;
                    eprintln!("cancelling job {id} ...");
                    let (status, body) = self
                        .call("POST", &format!("/api/v1/jobs/{id}/cancel"), "")
                        .await?;
                    if status != 200 && status != 409 {
                        return Err(self.problem(status, &body));
                    }
                    check = true;
                }
            }
            if lost {
                events = None;
            }
        }
    }

    /// [`Remote::run_job`] for a job that writes files (an export, a migration): once it
    /// succeeded, its files are downloaded (one tar) and unpacked into `out`, then its report
    /// is printed. `overwrite`: files already in `out` may be replaced (a migration's
    /// directory, as locally); else `out` must be new or empty (an export).
    pub async fn run_job_into<R: JobRequest>(
        &self,
        req: &R,
        out: &std::path::Path,
        overwrite: bool,
        print: impl Fn(&R::Report),
    ) -> Result<()> {
        if !overwrite
            && out.exists()
            && std::fs::read_dir(out).map_or(true, |mut d| d.next().is_some())
        {
            return fail(
                R::EXIT_ERROR,
                format!(
                    "{}: the output directory is not empty (an export never overwrites files)",
                    out.display()
                ),
            );
        }
        let job = match self.follow(req).await {
            Ok(job) => job,
            Err(e) => return fail(R::EXIT_ERROR, crate::exit::one_line(e.as_ref())),
        };
        if job.state == JobState::Succeeded {
            if let Err(e) = self.download_into(&job.id, out).await {
                return fail(R::EXIT_ERROR, crate::exit::one_line(e.as_ref()));
            }
        }
        self.finish::<R>(job, print)
    }

    /// Unpacks `GET /api/v1/jobs/{id}/download` into `out` (plain files only).
    async fn download_into(&self, id: &str, out: &std::path::Path) -> Result<()> {
        let (status, body) = self
            .call_bytes(
                "GET",
                &format!("/api/v1/jobs/{id}/download"),
                "application/json",
                b"",
            )
            .await?;
        if status != 200 {
            return Err(self.problem(status, &String::from_utf8_lossy(&body)));
        }
        fleetsync_agent::owner_only::create_dir_all(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut archive = tar::Archive::new(body.as_slice());
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.into_owned();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.starts_with('.'))
                .ok_or_else(|| anyhow!("job {id}: unexpected file {}", path.display()))?
                .to_string();
            let target = out.join(&name);
            let mut f = std::fs::File::create(&target)
                .with_context(|| format!("cannot write {}", target.display()))?;
            std::io::copy(&mut entry, &mut f)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
        Ok(())
    }

    /// [`Remote::run_job`] for an import: the export directory `input` is uploaded as a tar
    /// with the options in the query (the command line is the confirmation, as locally).
    pub async fn run_import(
        &self,
        req: &crate::service::transfer::ImportRequest,
        input: &std::path::Path,
        print: impl Fn(&fleetsync_proto::jobs::ImportReport),
    ) -> Result<()> {
        type R = crate::service::UploadedImport;
        let upload = match tar_dir(input) {
            Ok(t) => t,
            Err(e) => return fail(R::EXIT_ERROR, crate::exit::one_line(e.as_ref())),
        };
        let name = |v: serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
        let mut query = vec![
            format!("server={}", enc(&req.server)),
            format!("format={}", name(serde_json::to_value(req.format)?)),
            format!(
                "on_conflict={}",
                name(serde_json::to_value(req.on_conflict)?)
            ),
            format!("plan_only={}", req.plan_only),
            format!("fk_checks={}", req.fk_checks),
            "confirm=true".to_string(),
        ];
        if !req.rename_db.is_empty() {
            query.push(format!("rename_db={}", enc(&req.rename_db.join(","))));
        }
        let path = format!("/api/v1/jobs/import?{}", query.join("&"));
        match self
            .follow_start(&path, "application/octet-stream", &upload)
            .await
        {
            Ok(job) => self.finish::<R>(job, print),
            Err(e) => fail(R::EXIT_ERROR, crate::exit::one_line(e.as_ref())),
        }
    }

    fn finish<R: JobRequest>(&self, job: Job, print: impl Fn(&R::Report)) -> Result<()> {
        match job.state {
            JobState::Succeeded => {
                let report: R::Report = job
                    .result
                    .clone()
                    .ok_or_else(|| anyhow!("job {} succeeded without a report", job.id))
                    .and_then(|v| {
                        serde_json::from_value(v)
                            .with_context(|| format!("job {}: unexpected report", job.id))
                    })?;
                print(&report);
                match job.exit_code.unwrap_or_else(|| R::exit_code(&report)) {
                    0 => Ok(()),
                    code => Err(Exit(code).into()),
                }
            }
            JobState::Cancelled => {
                // A task stopped part-way keeps the report of what ran.
                if let Some(report) = job
                    .result
                    .clone()
                    .and_then(|v| serde_json::from_value::<R::Report>(v).ok())
                {
                    print(&report);
                }
                fail(R::EXIT_ERROR, format!("job {} was cancelled", job.id))
            }
            _ => fail(
                R::EXIT_ERROR,
                job.error
                    .unwrap_or_else(|| format!("job {} failed", job.id)),
            ),
        }
    }
}

/// A query value, percent-encoded (all but unreserved characters).
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The plain files of directory `dir` as a tar archive (an export directory to upload).
fn tar_dir(dir: &std::path::Path) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let name = e.file_name();
        let mut f = std::fs::File::open(e.path())?;
        b.append_file(name, &mut f)
            .with_context(|| format!("cannot read {}", e.path().display()))?;
    }
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("app=app_i,b c"), "app%3Dapp_i%2Cb%20c");
        assert_eq!(enc("src-1.x_~"), "src-1.x_~");
    }

    fn args(token: Option<&str>) -> ApiArgs {
        ApiArgs {
            token: token.map(str::to_string),
            api_ca: None,
        }
    }

    #[test]
    fn urls_tokens_and_errors() {
        let r = Remote::new("http://127.0.0.1:8470/", &args(Some("t"))).expect("valid");
        assert_eq!(
            (r.host.as_str(), r.port, r.base()),
            ("127.0.0.1", 8470, "http://127.0.0.1:8470")
        );
        let r = Remote::new("http://[::1]:9", &args(Some("t"))).expect("ipv6");
        assert_eq!((r.host.as_str(), r.port), ("::1", 9));
        for (url, token, says) in [
            ("ftp://h:1", Some("t"), "must be http"),
            ("http://h", Some("t"), "port"),
            ("http://h:1/api/v1", Some("t"), "address only"),
            ("https://h:1", Some("t"), "--api-ca"),
            ("http://h:1", None, "token"),
            ("http://h:1", Some(""), "token"),
        ] {
            let e = Remote::new(url, &args(token)).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(says)),
                "{url}: {e:?}"
            );
        }
        let e = Remote::new("ftp://h:1", &args(Some("fst_secret")))
            .err()
            .map(|e| e.to_string());
        assert!(!e.unwrap_or_default().contains("fst_secret"));
    }
}
