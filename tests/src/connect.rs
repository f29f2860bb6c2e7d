//! Apache Kafka (one KRaft node) and Kafka Connect standalone with Debezium, each in its own
//! JVM, for the tests that check fleetsync against consumers nobody here wrote.
//!
//! The jars come from `tests/kafka/fetch.sh kafka` (Apache Kafka 4.4.0) and `fetch.sh
//! debezium` (Kafka Connect 4.1.1 with Debezium 3.5.0.Final's MariaDB and JDBC sink
//! connectors), which fetch them once with Maven into a cache dir. Both need `java` and `mvn`:
//! [`java_tools_missing`] says which is absent, so a test can print `SKIPPED` instead of
//! failing on a machine without them.
//!
//! The broker is formatted and started like an operator would (`StorageTool format
//! --standalone`, then `kafka.Kafka server.properties`) on free 127.0.0.1 ports, with its own
//! data dir and `-Xmx512m`; auto-creation of topics is left on (Connect creates its
//! topics that way). Dropping either struct kills its process; its temp dir (logs, data) goes
//! with it unless `FLEETSYNC_KEEP_TEST_DIRS=1`.
//!
//! The lead may fold the broker into `kafka.rs` once the harness there starts Apache Kafka
//! itself; this module only needs a broker to exist.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tempfile::TempDir;

use crate::fixtures::repo_root;
use crate::mariadb::tail_lines;

/// How long the broker may take to answer metadata requests (~5 s on 2 cores).
const BROKER_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of a log shown when something fails.
const LOG_TAIL_LINES: usize = 40;
/// Heap of each JVM: small enough for two of them next to two mariadbd on a 2-core CI box.
const JVM_HEAP: &str = "-Xmx512m";

/// `Some(reason)` when `java` or `mvn` is not on PATH (the only reasons to skip).
pub fn java_tools_missing() -> Option<String> {
    ["java", "mvn"]
        .into_iter()
        .find(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .map(|tool| format!("`{tool}` not found (needed for Apache Kafka and Debezium)"))
}

/// Runs `tests/kafka/fetch.sh WHAT` (`kafka` or `debezium`) and returns the jar directory.
pub fn fetch_jars(what: &str) -> Result<PathBuf> {
    let script = repo_root().join("tests/kafka/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(what)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {what} failed ({})", script.display(), out.status);
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        bail!(
            "{} {what} printed {dir:?}, not a directory",
            script.display()
        );
    }
    Ok(dir)
}

fn classpath(dir: &Path) -> String {
    format!("{}/*", dir.display())
}

fn test_dir(prefix: &str) -> Result<TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    if std::env::var_os("FLEETSYNC_KEEP_TEST_DIRS").is_some_and(|v| v == "1") {
        b.disable_cleanup(true);
    }
    b.tempdir().context("creating a temp dir")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A JVM child process with its log file.
struct Jvm {
    child: Child,
    log: PathBuf,
    what: &'static str,
}

impl Jvm {
    fn spawn(what: &'static str, dir: &Path, args: &[String]) -> Result<Jvm> {
        let log = dir.join(format!("{what}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("java")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning java for {what}"))?;
        Ok(Jvm { child, log, what })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        tail_lines(&text, LOG_TAIL_LINES)
    }

    /// An error with the log's tail if the process has exited.
    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log {}:\n{}",
                self.what,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-node Apache Kafka broker (KRaft, broker and controller in one process).
pub struct ApacheKafka {
    jvm: Jvm,
    bootstrap: String,
    _dir: TempDir,
}

impl ApacheKafka {
    /// Formats a fresh log dir and starts the broker; returns once it answers metadata.
    pub async fn start() -> Result<ApacheKafka> {
        let jars = fetch_jars("kafka")?;
        let dir = test_dir("fleetsync-kafka-")?;
        let (port, cport) = (free_port()?, free_port()?);
        let props = dir.path().join("server.properties");
        let data = dir.path().join("data");
        std::fs::write(
            &props,
            format!(
                "process.roles=broker,controller\nnode.id=1\n\
                 controller.quorum.bootstrap.servers=127.0.0.1:{cport}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 inter.broker.listener.name=PLAINTEXT\nlog.dirs={}\n\
                 offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n",
                data.display()
            ),
        )?;
        let cp = classpath(&jars);
        let storage = |args: &[&str]| -> Result<String> {
            let out = Command::new("java")
                .args(["-cp", &cp, "kafka.tools.StorageTool"])
                .args(args)
                .output()
                .context("running kafka.tools.StorageTool")?;
            if !out.status.success() {
                bail!(
                    "StorageTool {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let cluster_id = storage(&["random-uuid"])?;
        let props_s = props.display().to_string();
        storage(&["format", "-t", &cluster_id, "-c", &props_s, "--standalone"])?;
        let jvm = Jvm::spawn(
            "kafka",
            dir.path(),
            &[
                JVM_HEAP.into(),
                format!(
                    "-Dlog4j2.configurationFile={}/log4j2.properties",
                    jars.display()
                ),
                "-cp".into(),
                cp.clone(),
                "kafka.Kafka".into(),
                props_s,
            ],
        )?;
        let mut kafka = ApacheKafka {
            jvm,
            bootstrap: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        kafka.wait_ready().await?;
        Ok(kafka)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn log_tail(&self) -> String {
        self.jvm.log_tail()
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        self.jvm.ensure_running()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let t0 = Instant::now();
        loop {
            self.ensure_running()?;
            let bootstrap = self.bootstrap.clone();
            let ok = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .create()
                    .ok()?;
                let md = consumer.fetch_metadata(None, Duration::from_secs(2)).ok()?;
                (!md.brokers().is_empty()).then_some(())
            })
            .await?
            .is_some();
            if ok {
                return Ok(());
            }
            if t0.elapsed() > BROKER_READY_TIMEOUT {
                bail!(
                    "Apache Kafka did not answer within {BROKER_READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The sum of the end offsets of `topic`'s partitions (0 if it does not exist yet).
    pub async fn end_offset(&self, topic: &str) -> Result<i64> {
        let bootstrap = self.bootstrap.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || -> Result<i64> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
            let mut sum = 0;
            for t in md.topics() {
                for p in t.partitions() {
                    let (_, high) =
                        consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(5))?;
                    sum += high;
                }
            }
            Ok(sum)
        })
        .await?
    }
}

/// Kafka Connect standalone (`ConnectStandalone worker.properties connector.properties`) with
/// Debezium's connectors on its classpath, offsets in a file of its temp dir.
pub struct KafkaConnect {
    jvm: Jvm,
    _dir: TempDir,
}

impl KafkaConnect {
    /// Starts a worker on `bootstrap` running one connector (its properties as key/value
    /// pairs). The worker uses Kafka Connect's JSON converter with schemas for keys and values
    /// and reads topics from the beginning.
    pub fn start(bootstrap: &str, connector: &[(&str, String)]) -> Result<KafkaConnect> {
        let jars = fetch_jars("debezium")?;
        let dir = test_dir("fleetsync-connect-")?;
        let worker = dir.path().join("worker.properties");
        std::fs::write(
            &worker,
            format!(
                "bootstrap.servers={bootstrap}\n\
                 key.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 value.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 key.converter.schemas.enable=true\nvalue.converter.schemas.enable=true\n\
                 offset.storage.file.filename={}\noffset.flush.interval.ms=1000\n\
                 listeners=http://127.0.0.1:{}\nplugin.discovery=only_scan\n\
                 consumer.auto.offset.reset=earliest\n",
                dir.path().join("connect.offsets").display(),
                free_port()?
            ),
        )?;
        let conn = dir.path().join("connector.properties");
        let text: String = connector
            .iter()
            .map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\")))
            .collect();
        std::fs::write(&conn, text)?;
        let jvm = Jvm::spawn(
            "connect",
            dir.path(),
            &[
                JVM_HEAP.into(),
                format!(
                    "-Dlog4j2.configurationFile={}/log4j2.properties",
                    jars.display()
                ),
                "-cp".into(),
                classpath(&jars),
                "org.apache.kafka.connect.cli.ConnectStandalone".into(),
                worker.display().to_string(),
                conn.display().to_string(),
            ],
        )?;
        Ok(KafkaConnect { jvm, _dir: dir })
    }

    pub fn log_tail(&self) -> String {
        self.jvm.log_tail()
    }

    /// An error with the log's tail if the worker has exited or logged a task failure
    /// ("Task threw an uncaught and unrecoverable exception": the worker stays up, the task
    /// does not).
    pub fn ensure_healthy(&mut self) -> Result<()> {
        self.jvm.ensure_running()?;
        let text = std::fs::read_to_string(&self.jvm.log).unwrap_or_default();
        if text.contains("unrecoverable exception") {
            let causes: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("Caused by") || l.contains(" ERROR "))
                .collect();
            bail!(
                "a Kafka Connect task failed; errors and causes:\n{}",
                causes.join("\n")
            );
        }
        Ok(())
    }
}
