//! Kafka brokers for the Kafka bus tests, each in its own process on a free 127.0.0.1 port.
//!
//! - [`BrokerKind::Mock`]: librdkafka's mock cluster (`fleetsync-mock-kafka`, built from this
//!   package's `src/bin`). In memory: a restart loses everything, so outages are simulated with
//!   [`KafkaBroker::down`]/[`KafkaBroker::up`] (the broker drops its connections and refuses
//!   new ones, keeping its data).
//! - [`BrokerKind::Tansu`]: the `tansu` broker (`cargo install tansu --version 0.6.0 --locked
//!   --features dynostore,libsql`; `scripts/test.sh` installs it).
//!   [`KafkaBroker::start_tansu_persistent`] keeps the log in a SQLite file in the broker's
//!   temp dir, so [`KafkaBroker::kill9`] + [`KafkaBroker::start_again`] is a real broker
//!   restart with the data kept. [`KafkaBroker::start_tansu`] uses the `memory://` engine,
//!   which in tansu 0.6 answers a fetch from an offset inside a record batch with the *next*
//!   batch (the rest of the batch is skipped): fine for a consumer reading from the start, not
//!   for one resuming at a stored offset. The SQLite engine keeps single records and is
//!   correct there, but slow: under the load the mock tests use (~1,500 row changes a second,
//!   one message each) it fell minutes behind, answering nothing else (metadata included)
//!   meanwhile, so tests give it a lighter load.
//!
//! Topics are created before the broker is handed out (one partition each), so agents and
//! coordinators never race the creation. Dropping a `KafkaBroker` kills its process; its temp
//! dir (log, SQLite file) goes with it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tempfile::TempDir;

use crate::fleetsync::fleetsync_bin;
use crate::mariadb::tail_lines;

/// How long a broker may take to come up (tansu and the mock take well under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the mock may take to answer a command on stdin.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the broker log shown when something fails.
const LOG_TAIL_LINES: usize = 30;
/// The name of the mock cluster binary.
pub const MOCK_BIN_NAME: &str = "fleetsync-mock-kafka";
/// Set to `1` to skip the tansu tests (and the tansu install in `scripts/test.sh`).
pub const SKIP_TANSU_ENV: &str = "FLEETSYNC_SKIP_TANSU";

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Mock,
    Tansu,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Mock => "mock",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// Why this broker cannot run here (`None` when it can): tansu not installed, or skipped
    /// with `FLEETSYNC_SKIP_TANSU=1`. Tests print `SKIPPED <test>: <reason>` and return.
    pub fn unavailable(self) -> Option<String> {
        match self {
            BrokerKind::Mock => None,
            BrokerKind::Tansu => {
                if std::env::var(SKIP_TANSU_ENV).is_ok_and(|v| v == "1") {
                    return Some(format!("tansu tests skipped ({SKIP_TANSU_ENV}=1)"));
                }
                tansu_bin().is_none().then(|| {
                    "tansu not installed (cargo install tansu --version 0.6.0 --locked \
                     --features dynostore,libsql; scripts/test.sh does it)"
                        .to_string()
                })
            }
        }
    }
}

/// A running broker (see the module doc).
pub struct KafkaBroker {
    kind: BrokerKind,
    child: Child,
    /// The mock's stdin: commands go there; closing it ends the mock.
    stdin: Option<ChildStdin>,
    /// The mock's stdout lines after the bootstrap line (command answers).
    answers: Option<mpsc::Receiver<String>>,
    bootstrap: String,
    /// tansu's arguments, for `start_again`.
    args: Vec<OsString>,
    /// How many times the process has been started.
    starts: u32,
    port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl KafkaBroker {
    /// Starts a broker of `kind` with `topics` created (one partition each); tansu on
    /// `memory://` (see the module doc).
    pub async fn start(kind: BrokerKind, topics: &[&str]) -> Result<KafkaBroker> {
        match kind {
            BrokerKind::Mock => Self::start_mock(topics).await,
            BrokerKind::Tansu => Self::start_tansu(topics).await,
        }
    }

    /// Spawns the mock cluster (`fleetsync-mock-kafka TOPIC...`, next to the fleetsync binary)
    /// and waits for its `bootstrap=` line.
    pub async fn start_mock(topics: &[&str]) -> Result<KafkaBroker> {
        let dir = broker_dir("mock")?;
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut broker = KafkaBroker {
            kind: BrokerKind::Mock,
            child,
            stdin,
            answers: Some(rx),
            bootstrap: String::new(),
            args: Vec::new(),
            starts: 1,
            port: 0,
            log,
            dir,
        };
        let line = broker.next_line(READY_TIMEOUT).await?;
        let Some(bootstrap) = line.strip_prefix("bootstrap=") else {
            bail!(
                "the mock printed {line:?} instead of bootstrap=...; log:\n{}",
                broker.log_tail(LOG_TAIL_LINES)
            );
        };
        broker.bootstrap = bootstrap.trim().to_string();
        broker.port = broker
            .bootstrap
            .split(',')
            .next()
            .and_then(|b| b.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Ok(broker)
    }

    /// Starts `tansu broker` with in-memory storage on a free port and creates `topics`.
    pub async fn start_tansu(topics: &[&str]) -> Result<KafkaBroker> {
        Self::start_tansu_with(topics, "memory://tansu/").await
    }

    /// Starts `tansu broker` with its log in a SQLite file (`sqlite://tansu.db` in the broker's
    /// temp dir), so a restart keeps the data; needs tansu built with the `libsql` feature.
    pub async fn start_tansu_persistent(topics: &[&str]) -> Result<KafkaBroker> {
        Self::start_tansu_with(topics, "sqlite://tansu.db").await
    }

    async fn start_tansu_with(topics: &[&str], storage: &str) -> Result<KafkaBroker> {
        if let Some(why) = BrokerKind::Tansu.unavailable() {
            bail!("{why}");
        }
        let bin = tansu_bin().context("tansu not installed")?;
        let mut last_err = None;
        // Another process may grab the port between our probe and tansu's bind: try again.
        for _ in 0..3 {
            match Self::try_start_tansu(&bin, storage).await {
                Ok(broker) => {
                    broker.create_topics(topics).await?;
                    return Ok(broker);
                }
                Err(e) if format!("{e:#}").contains("Address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no free port for tansu")))
    }

    async fn try_start_tansu(bin: &Path, storage: &str) -> Result<KafkaBroker> {
        let dir = broker_dir("tansu")?;
        let log = dir.path().join("tansu.log");
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let args: Vec<OsString> = [
            "broker",
            "--cluster-id",
            "fleetsync-test",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            storage,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let child = spawn_tansu(bin, &args, dir.path(), &log, 1)?;
        let mut broker = KafkaBroker {
            kind: BrokerKind::Tansu,
            child,
            stdin: None,
            answers: None,
            bootstrap: format!("127.0.0.1:{port}"),
            args,
            starts: 1,
            port,
            log,
            dir,
        };
        // On failure the broker is dropped, which kills the process.
        broker.wait_listening().await?;
        Ok(broker)
    }

    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// `host:port[,host:port]` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The (first) broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the broker's log (stderr, and stdout for tansu).
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes), n),
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// Fails with the log tail when the broker process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the {} broker exited ({status}); log {}:\n{}",
                self.kind.name(),
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Mock only: the broker (all brokers) drops its connections and refuses new ones; the
    /// data stays.
    pub async fn down(&mut self) -> Result<()> {
        self.command("down").await
    }

    /// Mock only: the broker accepts connections again.
    pub async fn up(&mut self) -> Result<()> {
        self.command("up").await
    }

    /// SIGKILLs the broker. For a persistent tansu, [`KafkaBroker::start_again`] brings it back
    /// with its data; a mock or in-memory tansu loses everything.
    pub fn kill9(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill().context("SIGKILL the broker")?;
        }
        self.child.wait().context("reaping the broker")?;
        Ok(())
    }

    /// tansu only: starts the killed broker again on the same port and storage.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.kind != BrokerKind::Tansu {
            bail!("only a tansu broker can be started again (the mock would lose its data)");
        }
        if self.child.try_wait()?.is_none() {
            bail!("the broker is still running; kill it first");
        }
        let bin = tansu_bin().context("tansu not installed")?;
        self.starts += 1;
        self.child = spawn_tansu(&bin, &self.args, self.dir.path(), &self.log, self.starts)?;
        self.wait_listening().await
    }

    async fn command(&mut self, cmd: &str) -> Result<()> {
        if self.kind != BrokerKind::Mock {
            bail!("`{cmd}` is a mock broker command");
        }
        let stdin = self.stdin.as_mut().context("the mock's stdin is closed")?;
        writeln!(stdin, "{cmd}").context("writing to the mock's stdin")?;
        stdin.flush()?;
        let answer = self.next_line(COMMAND_TIMEOUT).await?;
        if answer != format!("ok {cmd}") {
            bail!("the mock answered {answer:?} to {cmd:?}");
        }
        Ok(())
    }

    /// The mock's next stdout line.
    async fn next_line(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let rx = self.answers.as_ref().context("no stdout reader")?;
            match rx.try_recv() {
                Ok(line) => return Ok(line),
                Err(mpsc::TryRecvError::Disconnected) => bail!(
                    "the mock closed its stdout; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(LOG_TAIL_LINES)
                ),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            self.ensure_running()?;
            if Instant::now() > deadline {
                bail!(
                    "no answer from the mock within {timeout:?}; log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the port accepts TCP connections (failing if the process exits).
    async fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let tail = self.log_tail(LOG_TAIL_LINES);
                let clash = if tail.contains("Address already in use") || tail.contains("AddrInUse")
                {
                    " (Address already in use)"
                } else {
                    ""
                };
                bail!(
                    "{} exited early ({status}){clash}; log {}:\n{tail}",
                    self.kind.name(),
                    self.log.display()
                );
            }
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port));
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.kind.name(),
                    self.port,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The high watermark (the next offset to be written) of partition 0 of `topic`. Waits up
    /// to a minute: tansu on SQLite answers slowly while it takes in a backlog.
    pub async fn high_watermark(&self, topic: &str) -> Result<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let bootstrap = self.bootstrap.clone();
        let topic = topic.to_string();
        // librdkafka calls block: off the async runtime.
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .context("creating a Kafka consumer")?;
            let (_, high) = consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(60))
                .with_context(|| format!("watermarks of {topic}"))?;
            Ok(high)
        })
        .await
        .context("watermark task panicked")?
    }

    /// Creates the topics (one partition, replication 1) through the admin API; an existing
    /// topic is fine. Retries while the broker settles.
    pub async fn create_topics(&self, topics: &[&str]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating a Kafka admin client")?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(5)))
            .request_timeout(Some(Duration::from_secs(5)));
        let deadline = Instant::now() + READY_TIMEOUT;
        let result = loop {
            let attempt = async {
                let results = admin
                    .create_topics(new.iter(), &opts)
                    .await
                    .context("CreateTopics")?;
                for r in results {
                    if let Err((t, code)) = r {
                        if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                            bail!("creating topic {t}: {code}");
                        }
                    }
                }
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(())) => break Ok(()),
                Ok(Err(e)) if Instant::now() > deadline => break Err(e),
                Err(_) if Instant::now() > deadline => {
                    break Err(anyhow!("CreateTopics timed out"))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        // librdkafka's client destructor can block: not on the async runtime.
        let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
        result.with_context(|| {
            format!(
                "creating topics {topics:?} on the {} broker; log:\n{}",
                self.kind.name(),
                self.log_tail(LOG_TAIL_LINES)
            )
        })
    }
}

impl Drop for KafkaBroker {
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

/// The tansu binary: `$FLEETSYNC_TANSU_BIN`, else `tansu` in PATH, else `$CARGO_HOME/bin`
/// (`~/.cargo/bin`), where `cargo install` puts it. `None` when not installed.
pub fn tansu_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("FLEETSYNC_TANSU_BIN") {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

fn broker_dir(kind: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("fleetsync-kafka-{kind}-"))
        .tempdir()
        .context("creating a temp dir for a Kafka broker")
}

fn spawn_tansu(bin: &Path, args: &[OsString], dir: &Path, log: &Path, start: u32) -> Result<Child> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(
        out,
        "===== fleetsync test harness: tansu start #{start} ====="
    )?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(dir);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))
}

/// Asks the OS for a free port on 127.0.0.1 and releases it for the broker to bind.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
    Ok(listener.local_addr()?.port())
}
