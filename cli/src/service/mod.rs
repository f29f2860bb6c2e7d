//! The service layer: the operations that the CLI and the API's jobs both run, one function
//! each, taking a typed request, a [`Tracker`] (progress and log) and a cancellation token,
//! and returning the typed report the CLI prints with `--json` (structs in
//! `fleetsync_proto`). The `*_cmd.rs` modules are thin adapters around these: parse
//! arguments, call the service, print. Moved here from the commands: `health` (server
//! checks), `schema_diff`, `data_diff`, `backup` (create, verify).
//!
//! Cancellation is checked between steps (tables, key ranges, files), never in the middle of
//! a statement, so a cancelled task leaves no half state: a cancelled backup's directory is
//! removed, diffs and health checks change nothing.

pub mod backup;
pub mod data_diff;
pub mod health;
pub mod schema_diff;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleetsync_proto::jobs::{JobKind, JobProgress};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// A request that runs as a job: its kind, its report, and the exit code of an error.
pub trait JobRequest: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: JobKind;
    /// The CLI's exit code when the task fails.
    const EXIT_ERROR: u8;
    type Report: Serialize + DeserializeOwned + Send + 'static;
}

impl JobRequest for health::HealthRequest {
    const KIND: JobKind = JobKind::Health;
    const EXIT_ERROR: u8 = health::EXIT_ERROR;
    type Report = fleetsync_proto::health::HealthReport;
}

impl JobRequest for schema_diff::SchemaDiffRequest {
    const KIND: JobKind = JobKind::SchemaDiff;
    const EXIT_ERROR: u8 = schema_diff::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::SchemaDiffReport;
}

impl JobRequest for data_diff::DataDiffRequest {
    const KIND: JobKind = JobKind::DataDiff;
    const EXIT_ERROR: u8 = data_diff::EXIT_ERROR;
    type Report = fleetsync_proto::datadiff::DataDiffReport;
}

impl JobRequest for backup::BackupCreateRequest {
    const KIND: JobKind = JobKind::BackupCreate;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupCreateReport;
}

impl JobRequest for backup::BackupRestoreRequest {
    const KIND: JobKind = JobKind::BackupRestore;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupRestoreReport;
}

impl JobRequest for backup::BackupVerifyRequest {
    const KIND: JobKind = JobKind::BackupVerify;
    const EXIT_ERROR: u8 = backup::EXIT_ERROR;
    type Report = fleetsync_proto::jobs::BackupVerifyReport;
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
}

impl Tracker {
    pub fn new(sink: Arc<dyn ProgressSink>) -> Arc<Tracker> {
        Arc::new(Tracker {
            state: Mutex::new(JobProgress::default()),
            started: Instant::now(),
            sink,
        })
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
