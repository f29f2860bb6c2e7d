//! The service layer: the operations that the CLI and the API's jobs both run, one function
//! each, taking a typed request, a [`Tracker`] (progress and log) and a cancellation token,
//! and returning the typed report the CLI prints with `--json` (requests and reports are
//! structs in `fleetsync_proto`, re-exported by each module here). The `*_cmd.rs` modules are thin adapters around these: parse
//! arguments, call the service, print. Moved here from the commands: `health` (server
//! checks), `schema_diff`, `data_diff`, `backup` (create, verify).
//!
//! Cancellation is checked between steps (tables, key ranges, files), never in the middle of
//! a statement, so a cancelled task leaves no half state: a cancelled backup's directory is
//! removed, diffs and health checks change nothing.

pub mod backup;
pub mod conflicts;
pub mod data_diff;
pub mod health;
pub mod migrate;
pub mod schema_diff;
pub mod transfer;
pub mod vmigrate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleetsync_config::Config;
use fleetsync_proto::jobs::{JobKind, JobProgress};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// How a service call ends when it produces no report.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The cancellation token fired; nothing was left half done.
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// For the CLI: a cancel (which the CLI never asks for) as an error like the others.
pub fn into_anyhow(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Failed(e) => e,
        ServiceError::Cancelled => anyhow::anyhow!("cancelled"),
    }
}

/// A request that runs as a job: its kind, its report, the exit codes the CLI gives, and
/// the service call that runs it (what the job manager calls; the CLI calls the same
/// function directly, with its own sink).
pub trait JobRequest: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: JobKind;
    /// The CLI's exit code when the task fails.
    const EXIT_ERROR: u8;
    type Report: Serialize + DeserializeOwned + Send + 'static;

    /// Runs the service call.
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>>;

    /// The CLI's exit code for a report (0 unless the report is a verdict: a diff that
    /// found differences, an unhealthy server).
    fn exit_code(_report: &Self::Report) -> u8 {
        0
    }

    /// Whether a cancel stopped the task part-way and its report says what ran (a migration
    /// rollout stops between files): the job ends `cancelled`, keeping the report.
    fn cancelled(_report: &Self::Report) -> bool {
        false
    }

    /// The job waits for approval (possibly across a restart): keep what the request holds
    /// outside its parameters in the job's own directory `job_dir`.
    fn park(&self, _job_dir: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    /// The job was approved: take back what [`JobRequest::park`] kept in `job_dir`.
    fn unpark(&mut self, _job_dir: &Path) {}
}

impl JobRequest for health::HealthRequest {
    const KIND: JobKind = JobKind::Health;
    const EXIT_ERROR: u8 = health::EXIT_ERROR;
    type Report = fleetsync_proto::health::HealthReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(health::run(config, self, tracker, cancel))
    }
    fn exit_code(report: &Self::Report) -> u8 {
        health::exit_code(report)
    }
}

impl JobRequest for schema_diff::SchemaDiffRequest {
    const KIND: JobKind = JobKind::SchemaDiff;
    const EXIT_ERROR: u8 = schema_diff::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::SchemaDiffReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(schema_diff::run(config, self, tracker, cancel))
    }
    fn exit_code(report: &Self::Report) -> u8 {
        schema_diff::exit_code(report)
    }
}

impl JobRequest for data_diff::DataDiffRequest {
    const KIND: JobKind = JobKind::DataDiff;
    const EXIT_ERROR: u8 = data_diff::EXIT_ERROR;
    type Report = fleetsync_proto::datadiff::DataDiffReport;
    /// With `repair_sql`, the SQL goes to the job's file `repair.sql` (downloadable).
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let out = data_diff::run(config, self, self.repair_sql, tracker, cancel).await?;
            if self.repair_sql {
                let dir = tracker
                    .files_dir()
                    .ok_or_else(|| anyhow::anyhow!("repair SQL needs the job's directory"))?;
                fleetsync_agent::owner_only::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                let path = dir.join(data_diff::REPAIR_SQL_FILE);
                let sql = out.repair.render(&out.report.source, &out.report.target);
                fleetsync_agent::owner_only::write(&path, sql)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                tracker.log(&format!(
                    "repair SQL: {} statement(s) in {}",
                    out.repair.statements,
                    data_diff::REPAIR_SQL_FILE
                ));
            }
            Ok(out.report)
        })
    }
    fn exit_code(report: &Self::Report) -> u8 {
        data_diff::exit_code(report)
    }
}

impl JobRequest for backup::BackupCreateRequest {
    const KIND: JobKind = JobKind::BackupCreate;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupCreateReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(backup::create(config, self, tracker, cancel))
    }
}

impl JobRequest for backup::BackupVerifyRequest {
    const KIND: JobKind = JobKind::BackupVerify;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupVerifyReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(backup::verify(config, self, tracker, cancel))
    }
}

impl JobRequest for backup::BackupRestoreRequest {
    const KIND: JobKind = JobKind::BackupRestore;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupRestoreReport;
    /// Replaces existing objects only with `confirm` (nobody to ask).
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        let confirm = self.confirm;
        Box::pin(backup::restore(
            config,
            self,
            move |_| Ok(confirm),
            tracker,
            cancel,
        ))
    }
}

/// The migration lands in the job's own directory (downloadable).
impl JobRequest for migrate::MigrateGenerateRequest {
    const KIND: JobKind = JobKind::MigrateGenerate;
    const EXIT_ERROR: u8 = migrate::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::MigrateGenerateReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let out = job_dir(tracker)?;
            migrate::generate(config, self, &out, tracker, cancel).await
        })
    }
    fn exit_code(report: &Self::Report) -> u8 {
        migrate::generate_exit_code(report)
    }
}

fn job_dir(tracker: &Tracker) -> anyhow::Result<PathBuf> {
    tracker
        .files_dir()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("this job kind needs the job's directory"))
}

/// Applies the migration of another (`migrate_generate`) job, named by that job's id; only
/// with `confirm` (nobody to ask).
impl JobRequest for migrate::MigrateApplyRequest {
    const KIND: JobKind = JobKind::MigrateApply;
    const EXIT_ERROR: u8 = migrate::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::MigrateApplyReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let id = &self.migration_job;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(anyhow::anyhow!("migration_job {id:?}: not a job id").into());
            }
            let own = job_dir(tracker)?;
            let dir = own
                .parent()
                .map(|jobs| jobs.join(id))
                .ok_or_else(|| anyhow::anyhow!("no job directory"))?;
            let confirm = self.confirm;
            migrate::apply(
                config,
                &self.target,
                &dir,
                id,
                |_| Ok(confirm),
                tracker,
                cancel,
            )
            .await
        })
    }
}

/// Rolls back only with `confirm` (nobody to ask).
impl JobRequest for migrate::MigrateRollbackRequest {
    const KIND: JobKind = JobKind::MigrateRollback;
    const EXIT_ERROR: u8 = migrate::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::MigrateRollbackReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        let confirm = self.confirm;
        Box::pin(migrate::rollback(
            config,
            &self.target,
            move |_| Ok(confirm),
            tracker,
            cancel,
        ))
    }
}

/// Applies the safe fixes only with `confirm` (nobody to ask).
impl JobRequest for health::HealthFixRequest {
    const KIND: JobKind = JobKind::HealthFix;
    const EXIT_ERROR: u8 = health::EXIT_ERROR;
    type Report = fleetsync_proto::health::HealthReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        let confirm = self.confirm;
        Box::pin(health::fix(
            config,
            self,
            move |_| Ok(confirm),
            tracker,
            cancel,
        ))
    }
    fn exit_code(report: &Self::Report) -> u8 {
        health::fix_exit_code(report)
    }
}

impl JobRequest for backup::BackupPruneRequest {
    const KIND: JobKind = JobKind::BackupPrune;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupPruneReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(backup::prune(config, self, tracker, cancel))
    }
}

/// The files land in the job's own directory.
impl JobRequest for transfer::ExportRequest {
    const KIND: JobKind = JobKind::Export;
    const EXIT_ERROR: u8 = transfer::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::ExportReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let out = tracker
                .files_dir()
                .ok_or_else(|| anyhow::anyhow!("an export job needs the job's directory"))?
                .to_path_buf();
            transfer::export(config, self, &out, tracker, cancel).await
        })
    }
}

/// An import of an uploaded export: the upload's directory travels with the request (never
/// in its parameters) and is removed when the job is done with it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(from = "transfer::ImportRequest")]
pub struct UploadedImport {
    #[serde(flatten)]
    pub request: transfer::ImportRequest,
    #[serde(skip)]
    pub upload: Option<Arc<UploadDir>>,
}

impl From<transfer::ImportRequest> for UploadedImport {
    fn from(request: transfer::ImportRequest) -> Self {
        UploadedImport {
            request,
            upload: None,
        }
    }
}

/// Where an import awaiting approval keeps its upload, in the job's directory.
const PARKED_UPLOAD: &str = "upload";

/// A directory removed when the last reference to it goes (already gone: nothing to do).
#[derive(Debug)]
pub struct UploadDir(pub PathBuf);

impl Drop for UploadDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove an upload");
            }
            _ => {}
        }
    }
}

impl JobRequest for UploadedImport {
    const KIND: JobKind = JobKind::Import;
    const EXIT_ERROR: u8 = transfer::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::ImportReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let dir = self
                .upload
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("the upload is gone (the job cannot be rerun)"))?;
            transfer::import(config, &self.request, &dir.0, tracker, cancel).await
        })
    }
    fn exit_code(report: &Self::Report) -> u8 {
        transfer::import_exit_code(report)
    }

    /// The upload moves into the job's directory, where it outlives a restart (the start
    /// removes `jobs/uploads`) and goes with the job's record.
    fn park(&self, job_dir: &Path) -> anyhow::Result<()> {
        let Some(upload) = &self.upload else {
            return Ok(());
        };
        std::fs::create_dir_all(job_dir)?;
        std::fs::rename(&upload.0, job_dir.join(PARKED_UPLOAD))
            .map_err(|e| anyhow::anyhow!("cannot keep the upload for its approval: {e}"))
    }

    fn unpark(&mut self, job_dir: &Path) {
        let parked = job_dir.join(PARKED_UPLOAD);
        if parked.is_dir() {
            self.upload = Some(Arc::new(UploadDir(parked)));
        }
    }
}

/// Prints a report as pretty JSON (`--json`) or with `text`.
pub fn pretty_or<T: Serialize>(json: bool, text: fn(&T)) -> impl Fn(&T) {
    move |r| {
        if json {
            match serde_json::to_string_pretty(r) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot render the report: {e}"),
            }
        } else {
            text(r)
        }
    }
}

/// Where a task's progress and log lines go: a job (the API) or a terminal (the CLI).
pub trait ProgressSink: Send + Sync {
    /// The progress changed (called often: implementations throttle what they show).
    fn progress(&self, p: &JobProgress);
    /// One line for the job's log.
    fn log(&self, message: &str);
}

/// A sink that shows nothing (a CLI run not on a terminal: the library logs).
pub struct Quiet;

impl Quiet {
    pub fn arc() -> Arc<dyn ProgressSink> {
        Arc::new(Quiet)
    }
}

impl ProgressSink for Quiet {
    fn progress(&self, _: &JobProgress) {}
    fn log(&self, _: &str) {}
}

/// Counts a task's progress, derives percent and ETA from the totals when known, and tells
/// its sink.
pub struct Tracker {
    state: Mutex<JobProgress>,
    started: Instant,
    sink: Arc<dyn ProgressSink>,
    /// A job's own directory (`<state_dir>/jobs/<id>/`) for the files it produces (an
    /// export), served by `GET /api/v1/jobs/{id}/files/{file}`; none for the CLI.
    files_dir: Option<PathBuf>,
}

impl Tracker {
    pub fn new(sink: Arc<dyn ProgressSink>) -> Arc<Tracker> {
        Arc::new(Tracker {
            state: Mutex::new(JobProgress::default()),
            started: Instant::now(),
            sink,
            files_dir: None,
        })
    }

    /// A job's tracker, with the job's own directory for its files.
    pub fn for_job(sink: Arc<dyn ProgressSink>, files_dir: PathBuf) -> Arc<Tracker> {
        Arc::new(Tracker {
            state: Mutex::new(JobProgress::default()),
            started: Instant::now(),
            sink,
            files_dir: Some(files_dir),
        })
    }

    /// The job's own directory for its files (none outside a job).
    pub fn files_dir(&self) -> Option<&Path> {
        self.files_dir.as_deref()
    }

    fn update(&self, f: impl FnOnce(&mut JobProgress)) {
        let snapshot = {
            let Ok(mut p) = self.state.lock() else { return };
            f(&mut p);
            let fraction = match (p.rows_total, p.tables_total) {
                (Some(t), _) if t > 0 => Some((p.rows as f64 / t as f64).min(1.0)),
                (_, Some(t)) if t > 0 => Some((p.tables_done as f64 / t as f64).min(1.0)),
                _ => None,
            };
            p.percent = fraction.map(|f| (f * 1000.0).round() / 10.0);
            p.eta_seconds = fraction.filter(|f| *f > 0.0).map(|f| {
                let elapsed = self.started.elapsed().as_secs_f64();
                ((elapsed / f - elapsed).max(0.0) * 10.0).round() / 10.0
            });
            p.clone()
        };
        self.sink.progress(&snapshot);
    }

    /// A new phase (also logged).
    pub fn phase(&self, text: impl Into<String>) {
        let text = text.into();
        self.sink.log(&text);
        self.update(|p| p.phase = text);
    }

    pub fn log(&self, message: &str) {
        self.sink.log(message);
    }

    pub fn planned(&self, tables: Option<u64>, rows: Option<u64>) {
        self.update(|p| {
            p.tables_total = tables;
            p.rows_total = rows;
        });
    }

    pub fn rows(&self, n: u64) {
        self.update(|p| {
            p.rows += n;
            // An estimate that turns out low grows with the work.
            if let Some(t) = p.rows_total.as_mut() {
                *t = (*t).max(p.rows);
            }
        });
    }

    pub fn table_done(&self, rows: u64) {
        self.update(|p| {
            p.tables_done += 1;
            p.rows += rows;
        });
    }

    pub fn bytes(&self, total: u64) {
        self.update(|p| p.bytes = total);
    }

    pub fn add_bytes(&self, n: u64) {
        self.update(|p| p.bytes += n);
    }
}

/// The agent's backup progress reported to a tracker.
impl fleetsync_agent::backup::Progress for Tracker {
    fn planned(&self, tables: usize, rows: u64) {
        Tracker::planned(self, Some(tables as u64), Some(rows.max(1)));
    }
    fn rows(&self, rows: u64) {
        Tracker::rows(self, rows);
    }
    fn finish(&self) {}
}

/// The CLI's sink: a progress bar on stderr when it is a terminal.
pub struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    /// A bar when stderr is a terminal, else [`Quiet`].
    pub fn for_terminal() -> Arc<dyn ProgressSink> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Arc::new(Quiet);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/~{human_len} {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Arc::new(Bar { bar })
    }
}

impl ProgressSink for Bar {
    fn progress(&self, p: &JobProgress) {
        let (pos, len) = match (p.rows_total, p.tables_total) {
            (Some(t), _) => (p.rows, t),
            (None, Some(t)) => (p.tables_done, t),
            _ => (p.rows, p.rows),
        };
        self.bar.set_length(len.max(pos).max(1));
        self.bar.set_position(pos);
        self.bar.set_message(p.phase.clone());
    }
    fn log(&self, _: &str) {}
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Last(Mutex<Vec<JobProgress>>);

    impl ProgressSink for Last {
        fn progress(&self, p: &JobProgress) {
            if let Ok(mut v) = self.0.lock() {
                v.push(p.clone());
            }
        }
        fn log(&self, _: &str) {}
    }

    #[test]
    fn percent_follows_rows_then_tables_and_estimates_grow() {
        let sink = Arc::new(Last(Mutex::new(Vec::new())));
        let t = Tracker::new(sink.clone());
        t.planned(Some(4), Some(200));
        t.rows(50);
        let last = || sink.0.lock().map(|v| v.last().cloned()).ok().flatten();
        let p = last().expect("progress");
        assert_eq!(p.percent, Some(25.0));
        assert!(p.eta_seconds.is_some_and(|e| e >= 0.0));
        // More rows than estimated: the total grows, percent stays at most 100.
        t.rows(300);
        let p = last().expect("progress");
        assert_eq!(
            (p.rows, p.rows_total, p.percent),
            (350, Some(350), Some(100.0))
        );
        // Without a row total, tables count.
        let t = Tracker::new(sink.clone());
        t.planned(Some(4), None);
        t.table_done(10);
        assert_eq!(last().expect("progress").percent, Some(25.0));
        // Without any total: no percent, no ETA.
        let t = Tracker::new(sink.clone());
        t.rows(5);
        let p = last().expect("progress");
        assert_eq!((p.percent, p.eta_seconds), (None, None));
    }

    #[test]
    fn data_diff_counts_are_whole_numbers_within_int64() {
        let parse = |body: &str| serde_json::from_str::<data_diff::DataDiffRequest>(body);
        let ok = parse(r#"{"source":"a","target":"b","max_lag":5.0,"max_table_rows":7}"#)
            .expect("whole numbers");
        assert_eq!((ok.max_lag, ok.max_table_rows), (5, Some(7)));
        assert_eq!(ok.chunk_time_ms, data_diff::DEFAULT_CHUNK_TIME_MS);
        for bad in [
            r#"{"source":"a","target":"b","max_lag":1.5}"#,
            r#"{"source":"a","target":"b","max_lag":-1}"#,
            r#"{"source":"a","target":"b","max_threads_running":9223372036854775808}"#,
            r#"{"source":"a","target":"b","max_table_rows":1e30}"#,
            r#"{"source":"a","target":"b","extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
