//! What an Apache Kafka test process is made of before it starts: the jars, the JVM's
//! options, the options a test asks for ([`KafkaOptions`]) and each node's `server.properties`;
//! and the few helpers every Kafka-side JVM of the harness shares (brokers, `StorageTool`, the
//! admin tools, the Kafka Connect worker of [`crate::connect`]): `java`, `spawn_logged`,
//! `free_ports`, `temp_dir`.
//!
//! - Jars: [`kafka_libs`] (the broker and its tools): `$FLEETSYNC_KAFKA_LIBS` (a directory of
//!   jars, as `tests/kafka/fetch.sh kafka` prints it; `scripts/test.sh` exports it), else the
//!   harness runs `tests/kafka/fetch.sh kafka` itself; [`connect_libs`] (Kafka Connect with
//!   Debezium's connectors): `tests/kafka/fetch.sh debezium`. Each fetch runs at most once per
//!   test process (Maven fetches into `~/.cache/fleetsync/` on the first run on a machine;
//!   later runs find the cache).
//! - Java: `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` from `PATH`.
//! - JVM options: [`DEFAULT_JVM_OPTS`], or `$FLEETSYNC_KAFKA_JVM_OPTS` (whitespace-separated)
//!   instead. Measured on a 2-core machine: the serial collector and C1-only compilation cut a
//!   single node's start from ~5.2 s and ~4 CPU-s to ~3.1 s and ~2 CPU-s.
//! - Temp dirs (`temp_dir`: data, configs, logs) go when their owner is dropped, unless
//!   `FLEETSYNC_KEEP_TEST_DIRS=1`.
//!
//! Every node runs broker and controller in one process (KRaft combined mode) with a static
//! controller quorum (`controller.quorum.voters`: all nodes), so one code path serves one node
//! and three. Every node has a `PLAINTEXT` listener, which the harness itself (readiness,
//! metadata, topic creation) and the brokers among themselves use; [`KafkaOptions::listener`]
//! adds more (`SSL`, `SASL_SSL`, ...), each on its own port per node.

pub(crate) use crate::ports::free_ports;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::fixtures::repo_root;

/// Environment variable naming the directory of Kafka jars.
pub const KAFKA_LIBS_ENV: &str = "FLEETSYNC_KAFKA_LIBS";
/// Environment variable replacing [`DEFAULT_JVM_OPTS`].
pub const KAFKA_JVM_OPTS_ENV: &str = "FLEETSYNC_KAFKA_JVM_OPTS";
/// Environment variable that, set to `1`, keeps the temp dirs of [`temp_dir`].
pub const KEEP_TEST_DIRS_ENV: &str = "FLEETSYNC_KEEP_TEST_DIRS";
/// A bounded heap (a test broker holds at most a few million small messages, on disk), the
/// serial collector (no GC threads fighting the tests for 2 cores) and C1 only (most of a
/// broker's start is JIT work that C2 would redo); `-XX:-UsePerfData` skips the
/// `/tmp/hsperfdata_*` file.
pub const DEFAULT_JVM_OPTS: &[&str] = &[
    "-Xmx512m",
    "-Xms64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// An extra listener on every node: `name` (e.g. `SSL`, `SASL_SSL`, or any name) speaking
/// `protocol` (`SSL`, `SASL_SSL`, `SASL_PLAINTEXT` or `PLAINTEXT`). Its per-listener settings
/// (`listener.name.<lowercase name>.…`, keystores, `sasl.enabled.mechanisms`) go in
/// [`KafkaOptions::property`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: String,
}

/// A SCRAM credential written into the cluster metadata at format time
/// (`StorageTool format --add-scram`), so it exists before the first client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub name: String,
    pub password: String,
}

/// How to build a test cluster: node count, and what a caller adds on top of the defaults.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub(crate) nodes: usize,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) scram_users: Vec<ScramUser>,
}

impl KafkaOptions {
    /// One node: replication factor 1, `min.insync.replicas=1`.
    pub fn single() -> Self {
        Self::nodes(1)
    }

    /// Three nodes, each broker and controller: replication factor 3,
    /// `min.insync.replicas=2`, `unclean.leader.election.enable=false` (the settings under
    /// which an acknowledged write survives the loss of any one node).
    pub fn three() -> Self {
        Self::nodes(3)
    }

    fn nodes(nodes: usize) -> Self {
        KafkaOptions {
            nodes,
            properties: Vec::new(),
            listeners: Vec::new(),
            scram_users: Vec::new(),
        }
    }

    /// A `server.properties` line for every node, after the defaults (so it overrides one:
    /// a later key wins when Java loads the file).
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// An extra listener (see [`Listener`]); [`crate::KafkaCluster::bootstrap_for`] gives its
    /// addresses.
    pub fn listener(mut self, name: &str, protocol: &str) -> Self {
        self.listeners.push(Listener {
            name: name.to_string(),
            protocol: protocol.to_string(),
        });
        self
    }

    /// A SCRAM user created at format time.
    pub fn scram_user(mut self, mechanism: &str, name: &str, password: &str) -> Self {
        self.scram_users.push(ScramUser {
            mechanism: mechanism.to_string(),
            name: name.to_string(),
            password: password.to_string(),
        });
        self
    }

    /// ACLs enforced (`StandardAuthorizer`): the harness's own clients and the brokers among
    /// themselves (`PLAINTEXT`, principal `ANONYMOUS`) and `super_users` may do anything; any
    /// other principal only what an ACL grants it.
    pub fn acls(self, super_users: &[&str]) -> Self {
        let supers: Vec<String> = std::iter::once("ANONYMOUS")
            .chain(super_users.iter().copied())
            .map(|u| format!("User:{u}"))
            .collect();
        self.property(
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        )
        .property("super.users", &supers.join(";"))
    }

    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The replication factor of the topics the harness creates: every node holds a copy.
    pub fn replication(&self) -> i32 {
        i32::try_from(self.nodes).unwrap_or(1)
    }

    /// `min.insync.replicas` for the topics (and the broker default): 2 when there are at
    /// least three copies, so one node may fail without a write being acknowledged by a
    /// single copy; 1 on a single node.
    pub fn min_insync_replicas(&self) -> i32 {
        if self.nodes >= 3 {
            2
        } else {
            1
        }
    }

    /// The `--add-scram` arguments for `StorageTool format`.
    pub(crate) fn scram_args(&self) -> Vec<String> {
        self.scram_users
            .iter()
            .flat_map(|u| {
                [
                    "--add-scram".to_string(),
                    format!("{}=[name={},password={}]", u.mechanism, u.name, u.password),
                ]
            })
            .collect()
    }
}

/// The ports of one node.
#[derive(Debug, Clone)]
pub(crate) struct NodePorts {
    pub plaintext: u16,
    pub controller: u16,
    /// One per [`KafkaOptions::listener`], in order.
    pub extra: Vec<u16>,
}

/// `server.properties` for node `id` (1-based) of a cluster whose nodes have `ports`.
pub(crate) fn server_properties(
    opts: &KafkaOptions,
    id: usize,
    ports: &[NodePorts],
    data_dir: &Path,
) -> String {
    let me = &ports[id - 1];
    let voters: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
        .collect();
    let mut listeners = vec![
        format!("PLAINTEXT://127.0.0.1:{}", me.plaintext),
        format!("CONTROLLER://127.0.0.1:{}", me.controller),
    ];
    let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{}", me.plaintext)];
    let mut protocols = vec![
        "PLAINTEXT:PLAINTEXT".to_string(),
        "CONTROLLER:PLAINTEXT".to_string(),
    ];
    for (l, port) in opts.listeners.iter().zip(&me.extra) {
        listeners.push(format!("{}://127.0.0.1:{port}", l.name));
        advertised.push(format!("{}://127.0.0.1:{port}", l.name));
        // The map replaces Kafka's default one, so it names every listener.
        protocols.push(format!("{}:{}", l.name, l.protocol));
    }
    let rf = opts.replication();
    let min_isr = opts.min_insync_replicas();
    let mut p = vec![
        ("process.roles", "broker,controller".to_string()),
        ("node.id", id.to_string()),
        ("controller.quorum.voters", voters.join(",")),
        ("listeners", listeners.join(",")),
        ("advertised.listeners", advertised.join(",")),
        ("controller.listener.names", "CONTROLLER".to_string()),
        ("listener.security.protocol.map", protocols.join(",")),
        ("inter.broker.listener.name", "PLAINTEXT".to_string()),
        ("log.dirs", data_dir.to_string_lossy().into_owned()),
        ("offsets.topic.replication.factor", rf.to_string()),
        ("offsets.topic.num.partitions", "1".to_string()),
        ("transaction.state.log.replication.factor", rf.to_string()),
        ("transaction.state.log.min.isr", min_isr.to_string()),
        ("transaction.state.log.num.partitions", "1".to_string()),
        ("default.replication.factor", rf.to_string()),
        ("min.insync.replicas", min_isr.to_string()),
        ("unclean.leader.election.enable", "false".to_string()),
        // Tests name every topic they use: one fleetsync forgot to create is an error, not a
        // silently auto-created topic with broker defaults.
        ("auto.create.topics.enable", "false".to_string()),
        ("group.initial.rebalance.delay.ms", "0".to_string()),
        // A SIGKILLed broker is fenced (and its partitions get new leaders) after the session
        // timeout, and a restarted one can only register once its old session has expired:
        // with the default 9 s a restart took ~14 s, with 4 s about 5 s. Four heartbeats fit
        // in a session, so a busy machine does not fence a live broker.
        ("broker.session.timeout.ms", "4000".to_string()),
        ("broker.heartbeat.interval.ms", "1000".to_string()),
        // Fewer threads than the defaults (sized for servers): 2 cores, several JVMs.
        ("num.network.threads", "2".to_string()),
        ("num.io.threads", "2".to_string()),
        ("num.recovery.threads.per.data.dir", "1".to_string()),
        ("background.threads", "2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>();
    for (k, v) in &opts.properties {
        p.push(format!("{k}={v}"));
    }
    p.push(String::new());
    p.join("\n")
}

/// A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars), as
/// `StorageTool random-uuid` prints (without starting a JVM for it). Like Kafka's own
/// `Uuid.randomUuid`, never one starting with `-`: the storage tool's argument parser would
/// take it for an option (`--cluster-id: expected one argument`, seen once in 64 formats).
pub(crate) fn random_cluster_id() -> String {
    loop {
        let id = random_base64_id();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_base64_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
    let mut bits = u128::from_be_bytes(bytes);
    // 22 characters of 6 bits = 132 bits: the last character carries the low 2 bits, padded.
    let mut out = vec![0u8; 22];
    out[21] = ALPHABET[((bits & 0b11) << 4) as usize];
    bits >>= 2;
    for c in out[..21].iter_mut().rev() {
        *c = ALPHABET[(bits & 0x3f) as usize];
        bits >>= 6;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of the broker's jars (see the module doc); the fetch runs at most once per
/// process.
pub fn kafka_libs() -> Result<PathBuf> {
    static LIBS: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    cached(&LIBS, || {
        let dir = match std::env::var_os(KAFKA_LIBS_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => fetch("kafka")?,
        };
        let has_broker = std::fs::read_dir(&dir)
            .with_context(|| format!("reading the Kafka jar dir {}", dir.display()))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"));
        if !has_broker {
            bail!(
                "{} holds no kafka_2.13 jar (set {KAFKA_LIBS_ENV} to the directory \
                 `tests/kafka/fetch.sh kafka` prints)",
                dir.display()
            );
        }
        Ok(dir)
    })
}

/// The directory of Kafka Connect's jars with Debezium's connectors (`tests/kafka/fetch.sh
/// debezium`); the fetch runs at most once per process.
pub fn connect_libs() -> Result<PathBuf> {
    static LIBS: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    cached(&LIBS, || fetch("debezium"))
}

/// The first result of `find` in `cell`, for every caller of the process.
fn cached(
    cell: &OnceLock<std::result::Result<PathBuf, String>>,
    find: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    cell.get_or_init(|| find().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `tests/kafka/fetch.sh WHAT` (`kafka` or `debezium`) and returns the directory it
/// prints.
fn fetch(what: &str) -> Result<PathBuf> {
    let script = repo_root().join("tests/kafka/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(what)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {what} failed ({}; needs java and mvn, see README):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        bail!(
            "{} {what} printed {}, not a directory",
            script.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// The `java` binary (see the module doc).
fn java_bin() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").is_file() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}

/// The JVM options (see the module doc).
fn jvm_opts() -> Vec<String> {
    match std::env::var(KAFKA_JVM_OPTS_ENV) {
        Ok(opts) if !opts.trim().is_empty() => {
            opts.split_whitespace().map(str::to_string).collect()
        }
        _ => DEFAULT_JVM_OPTS.iter().map(|s| s.to_string()).collect(),
    }
}

/// `-Dlog4j2.configurationFile=…`: the copy next to the jars (fetch.sh puts it there), else
/// the repository's `tests/kafka/log4j2.properties`.
fn log4j_opt(libs: &Path) -> String {
    let next_to_jars = libs.join("log4j2.properties");
    let file = if next_to_jars.is_file() {
        next_to_jars
    } else {
        repo_root().join("tests/kafka/log4j2.properties")
    };
    format!("-Dlog4j2.configurationFile={}", file.display())
}

/// The `-cp` value for the jars in `libs`.
fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

/// `java` with [`jvm_opts`], the log4j config and the jars in `libs` on the classpath, to run
/// the class `main`: how the harness starts every JVM. Add the program's arguments.
pub(crate) fn java(libs: &Path, main: &str) -> Command {
    let mut cmd = Command::new(java_bin());
    cmd.args(jvm_opts())
        .arg(log4j_opt(libs))
        .arg("-cp")
        .arg(classpath(libs))
        .arg(main)
        .stdin(Stdio::null());
    cmd
}

/// Spawns `cmd` (from [`java`]) with stdout and stderr appended to `log`.
pub(crate) fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("spawning {:?} (is Java installed?)", cmd.get_program()))
}

/// `n` distinct free ports on 127.0.0.1. Each probe is held until all are picked, so none
/// repeats; another process may still take one before the JVM binds it (the caller retries on
/// "Address already in use").
/// A temp dir named `prefix…`, removed on drop unless `FLEETSYNC_KEEP_TEST_DIRS=1`.
pub(crate) fn temp_dir(prefix: &str) -> Result<TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    if std::env::var_os(KEEP_TEST_DIRS_ENV).is_some_and(|v| v == "1") {
        b.disable_cleanup(true);
    }
    b.tempdir()
        .with_context(|| format!("creating a temp dir {prefix}…"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_chars() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert_ne!(id, random_cluster_id());
        for _ in 0..2_000 {
            let id = random_cluster_id();
            assert!(!id.starts_with('-'), "{id} would read as an option");
        }
    }

    #[test]
    fn three_nodes_vote_and_extra_listeners_get_ports() {
        let opts = KafkaOptions::three()
            .listener("SASL_SSL", "SASL_SSL")
            .listener("EXTERNAL", "SSL")
            .property("min.insync.replicas", "3");
        let ports: Vec<NodePorts> = (0..3)
            .map(|i| NodePorts {
                plaintext: 9000 + i,
                controller: 9100 + i,
                extra: vec![9200 + i, 9300 + i],
            })
            .collect();
        let p = server_properties(&opts, 2, &ports, Path::new("/d"));
        assert!(p.contains("node.id=2\n"), "{p}");
        assert!(
            p.contains(
                "controller.quorum.voters=1@127.0.0.1:9100,2@127.0.0.1:9101,3@127.0.0.1:9102\n"
            ),
            "{p}"
        );
        assert!(
            p.contains(
                "listeners=PLAINTEXT://127.0.0.1:9001,CONTROLLER://127.0.0.1:9101,\
                 SASL_SSL://127.0.0.1:9201,EXTERNAL://127.0.0.1:9301\n"
            ),
            "{p}"
        );
        assert!(
            p.contains(
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,\
                 SASL_SSL:SASL_SSL,EXTERNAL:SSL\n"
            ),
            "{p}"
        );
        assert!(p.contains("default.replication.factor=3\n"), "{p}");
        // The caller's line comes after the default, so it wins.
        let defaults = p.find("min.insync.replicas=2\n");
        let caller = p.find("min.insync.replicas=3\n");
        assert!(defaults < caller && defaults.is_some(), "{p}");
    }

    #[test]
    fn acls_keep_the_harness_a_super_user() {
        let opts = KafkaOptions::single().acls(&["admin"]);
        let p = server_properties(
            &opts,
            1,
            &[NodePorts {
                plaintext: 9000,
                controller: 9100,
                extra: vec![],
            }],
            Path::new("/d"),
        );
        assert!(
            p.contains(
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
            ),
            "{p}"
        );
        assert!(p.contains("super.users=User:ANONYMOUS;User:admin\n"), "{p}");
    }

    #[test]
    fn scram_users_become_format_arguments() {
        let opts = KafkaOptions::single().scram_user("SCRAM-SHA-512", "alice", "s3cret");
        assert_eq!(
            opts.scram_args(),
            ["--add-scram", "SCRAM-SHA-512=[name=alice,password=s3cret]"]
        );
    }
}
