//! librdkafka's mock cluster as its own process (`fleetsync-mock-kafka`, built from this
//! package's `src/bin`), for fast checks that need no real broker.
//!
//! Not for end-to-end tests: it keeps only ~5 MB per partition (dropping the rest), does not
//! filter aborted transactions and loses everything in a restart. Every e2e Kafka test runs on
//! Apache Kafka ([`crate::KafkaCluster`]); the mock stays for the harness self-test and for
//! `tests/bench/catchup.sh`, which can use the binary. Outages are simulated with
//! [`MockKafka::down`]/[`MockKafka::up`] (connections dropped and refused, data kept).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::fleetsync::fleetsync_bin;
use crate::mariadb::file_tail;

/// How long the mock may take to print its bootstrap line or answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the mock's log shown when something fails.
const LOG_TAIL_LINES: usize = 30;
/// The name of the mock cluster binary.
pub const MOCK_BIN_NAME: &str = "fleetsync-mock-kafka";

/// A running mock cluster (see the module doc); dropping it ends the process.
pub struct MockKafka {
    child: Child,
    /// Commands go there; closing it ends the mock.
    stdin: Option<ChildStdin>,
    /// stdout lines after the bootstrap line (command answers).
    answers: mpsc::Receiver<String>,
    bootstrap: String,
    log: PathBuf,
    _dir: TempDir,
}

impl MockKafka {
    /// Spawns the mock with `topics` (one partition each) and waits for its `bootstrap=` line.
    pub async fn start(topics: &[&str]) -> Result<MockKafka> {
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-kafka-mock-")
            .tempdir()
            .context("creating a temp dir for the mock Kafka")?;
        let log = dir.path().join("mock-kafka.log");
        let bin = mock_bin();
        if !bin.is_file() {
            bail!(
                "{} not found (build it with `cargo build -p fleetsync-tests`, or set \
                 FLEETSYNC_MOCK_KAFKA_BIN)",
                bin.display()
            );
        }
        let err =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&bin)
            .args(topics)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("mock stdout")?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut mock = MockKafka {
            child,
            stdin,
            answers,
            bootstrap: String::new(),
            log,
            _dir: dir,
        };
        let line = mock.next_line().await?;
        let Some(bootstrap) = line.strip_prefix("bootstrap=") else {
            bail!(
                "the mock printed {line:?} instead of bootstrap=...; log:\n{}",
                mock.log_tail(LOG_TAIL_LINES)
            );
        };
        mock.bootstrap = bootstrap.trim().to_string();
        Ok(mock)
    }

    /// `host:port[,host:port]` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the mock's stderr.
    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log, n)
    }

    /// Every broker drops its connections and refuses new ones; the data stays.
    pub async fn down(&mut self) -> Result<()> {
        self.command("down").await
    }

    /// The brokers accept connections again.
    pub async fn up(&mut self) -> Result<()> {
        self.command("up").await
    }

    async fn command(&mut self, cmd: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the mock's stdin is closed")?;
        writeln!(stdin, "{cmd}").context("writing to the mock's stdin")?;
        stdin.flush()?;
        let answer = self.next_line().await?;
        if answer != format!("ok {cmd}") {
            bail!("the mock answered {answer:?} to {cmd:?}");
        }
        Ok(())
    }

    /// The mock's next stdout line.
    async fn next_line(&mut self) -> Result<String> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match self.answers.try_recv() {
                Ok(line) => return Ok(line),
                Err(mpsc::TryRecvError::Disconnected) => bail!(
                    "the mock closed its stdout; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(LOG_TAIL_LINES)
                ),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the mock exited ({status}); log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no answer from the mock within {ANSWER_TIMEOUT:?}; log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // Closing stdin ends the mock by itself; kill in any case.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mock cluster binary: `$FLEETSYNC_MOCK_KAFKA_BIN`, else next to the fleetsync binary
/// (`target/<profile>/`, where `cargo build`/`cargo test` put this package's binaries).
pub fn mock_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FLEETSYNC_MOCK_KAFKA_BIN") {
        return PathBuf::from(bin);
    }
    let fleetsync = fleetsync_bin();
    let dir = fleetsync.parent().unwrap_or(Path::new("."));
    dir.join(MOCK_BIN_NAME)
}
