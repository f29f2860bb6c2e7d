//! Kafka Connect standalone with Debezium's connectors, for the tests that check fleetsync
//! against consumers nobody here wrote; the broker is a [`KafkaCluster`] of the harness.
//!
//! The worker's jars come from `tests/kafka/fetch.sh debezium` (Kafka Connect 4.1.1 with
//! Debezium 3.5.0.Final's MariaDB and JDBC sink connectors, [`crate::kafka_setup::connect_libs`]),
//! fetched once with Maven into a cache dir; it runs in one JVM started like the brokers
//! ([`crate::kafka_setup`]: the same `java`, JVM options and log4j config). Fetching needs
//! `java` and `mvn`: [`java_tools_missing`] says which is absent, so a test can print
//! `SKIPPED` instead of failing on a machine without them.
//!
//! Dropping a [`KafkaConnect`] kills the worker; its temp dir (config, offsets, log) goes with
//! it unless `FLEETSYNC_KEEP_TEST_DIRS=1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::kafka::KafkaCluster;
use crate::kafka_setup::{connect_libs, free_ports, java, spawn_logged, temp_dir};
use crate::mariadb::file_tail;

/// Lines of the worker's log shown when something fails.
const LOG_TAIL_LINES: usize = 40;

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

/// Kafka Connect standalone (`ConnectStandalone worker.properties connector.properties`) with
/// Debezium's connectors on its classpath, offsets in a file of its temp dir.
pub struct KafkaConnect {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for KafkaConnect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KafkaConnect {
    /// Starts a worker on `kafka`'s `PLAINTEXT` listener running one connector (its properties
    /// as key/value pairs). The worker uses Kafka Connect's JSON converter with schemas for
    /// keys and values and reads topics from the beginning.
    pub async fn start(kafka: &KafkaCluster, connector: &[(&str, String)]) -> Result<KafkaConnect> {
        let jars = tokio::task::spawn_blocking(connect_libs)
            .await
            .context("fetching the Kafka Connect jars")??;
        let dir = temp_dir("fleetsync-connect-")?;
        let worker = dir.path().join("worker.properties");
        std::fs::write(
            &worker,
            format!(
                "bootstrap.servers={}\n\
                 key.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 value.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 key.converter.schemas.enable=true\nvalue.converter.schemas.enable=true\n\
                 offset.storage.file.filename={}\noffset.flush.interval.ms=1000\n\
                 listeners=http://127.0.0.1:{}\nplugin.discovery=only_scan\n\
                 consumer.auto.offset.reset=earliest\n",
                kafka.bootstrap(),
                dir.path().join("connect.offsets").display(),
                free_ports(1)?[0]
            ),
        )?;
        let conn = dir.path().join("connector.properties");
        let text: String = connector
            .iter()
            .map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\")))
            .collect();
        std::fs::write(&conn, text)?;
        let log = dir.path().join("connect.log");
        let mut cmd = java(&jars, "org.apache.kafka.connect.cli.ConnectStandalone");
        cmd.arg(&worker).arg(&conn).current_dir(dir.path());
        let child = spawn_logged(cmd, &log)?;
        Ok(KafkaConnect {
            child,
            log,
            _dir: dir,
        })
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.log, LOG_TAIL_LINES)
    }

    /// An error with the log's tail if the worker has exited, or with the log's errors if it
    /// logged a task failure ("Task threw an uncaught and unrecoverable exception": the worker
    /// stays up, the task does not).
    pub fn ensure_healthy(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "Kafka Connect exited ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
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
