//! Apache Kafka for the Kafka bus tests: a real broker (Kafka 4.4.0, KRaft mode, no
//! ZooKeeper) started by the test itself, one JVM per node, on free 127.0.0.1 ports with its
//! own temp data dirs.
//!
//! - [`KafkaCluster::single`]: one node (replication factor 1).
//! - [`KafkaCluster::three`]: three nodes, each broker and controller: replication factor 3,
//!   `min.insync.replicas=2`, `unclean.leader.election.enable=false`. Killing two of the three
//!   also loses the controller quorum: nothing can be written (or elected) until one is back.
//! - [`KafkaCluster::start`] with [`KafkaOptions`]: extra listeners (`SSL`, `SASL_SSL`, ...),
//!   `server.properties` lines and SCRAM users (written at format time), for the TLS/SASL tests
//!   ([`crate::kafka_secure`] builds the `SSL` + `SASL_SSL` variant, with or without ACLs, on
//!   them; [`crate::connect`] runs Kafka Connect on a cluster).
//!
//! Where the jars and `java` come from, and the JVM's options: [`crate::kafka_setup`].
//!
//! Invariants:
//! - A cluster is handed out only when every node is listed in the metadata that the cluster
//!   answers (registered with the controller quorum and unfenced), not merely listening.
//! - [`KafkaCluster::kill9`] SIGKILLs one node and keeps its data dir and ports;
//!   [`KafkaCluster::start_again`] brings the same node back and waits until it is listed
//!   again. [`KafkaCluster::pause`]/[`KafkaCluster::resume`] SIGSTOP/SIGCONT a node: its
//!   connections stay open and nothing answers, like a network partition.
//! - Topics are never auto-created (`auto.create.topics.enable=false`, unless a caller's
//!   [`KafkaOptions::property`] says otherwise): a test creates what it uses ([`KafkaCluster::create_topics`], with the settings of [`KafkaCluster::topic_spec`]).
//! - Dropping a `KafkaCluster` SIGKILLs every node; the temp dir (data, configs, logs) goes,
//!   unless `FLEETSYNC_KEEP_TEST_DIRS=1`.
//!
//! Each node's log (`node-N/kafka.log`: log4j at WARN, INFO with
//! `FLEETSYNC_KAFKA_LOG_LEVEL=INFO`) is what [`KafkaCluster::log_tail`] shows on failure.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::kafka_admin::{self, PartitionState, TopicSpec};
use crate::kafka_setup::{
    free_ports, java, kafka_libs, random_cluster_id, server_properties, spawn_logged, temp_dir,
    KafkaOptions, NodePorts,
};
use crate::mariadb::file_tail;

/// How long a cluster (or a restarted node) may take to be listed in the metadata: a node
/// starts in ~3 s alone; three JVMs starting at once on 2 busy cores take much longer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `StorageTool format` may take (a JVM start, ~1-2 s).
const FORMAT_TIMEOUT: Duration = Duration::from_secs(60);
/// Start attempts when another process grabbed a port between our probe and the JVM's bind.
const PORT_ATTEMPTS: usize = 3;
/// How long [`KafkaCluster::high_watermark`] retries.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of each node's log shown when something fails.
const LOG_TAIL_LINES: usize = 30;

/// One node: a broker and a controller in one JVM.
struct Node {
    /// `node.id`, 1-based.
    id: i32,
    ports: NodePorts,
    /// `server.properties`, `data/`, `kafka.log`.
    dir: PathBuf,
    child: Option<Child>,
    /// How many times the JVM has been started.
    starts: u32,
    paused: bool,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        format!(
            "--- Kafka node {} log {}:\n{}",
            self.id,
            log.display(),
            file_tail(&log, n)
        )
    }
}

/// A running Apache Kafka cluster of one or three nodes (see the module doc).
pub struct KafkaCluster {
    opts: KafkaOptions,
    libs: PathBuf,
    nodes: Vec<Node>,
    dir: TempDir,
}

impl KafkaCluster {
    /// One node.
    pub async fn single() -> Result<KafkaCluster> {
        Self::start(KafkaOptions::single()).await
    }

    /// Three nodes, replication factor 3, `min.insync.replicas=2`.
    pub async fn three() -> Result<KafkaCluster> {
        Self::start(KafkaOptions::three()).await
    }

    /// Formats storage and starts every node; returns once all are listed in the metadata.
    pub async fn start(opts: KafkaOptions) -> Result<KafkaCluster> {
        let libs = tokio::task::spawn_blocking(kafka_libs)
            .await
            .context("fetching the Kafka jars")??;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(&opts, &libs).await {
                Ok(c) => return Ok(c),
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no free ports for Kafka")))
    }

    async fn try_start(opts: &KafkaOptions, libs: &Path) -> Result<KafkaCluster> {
        let started = Instant::now();
        let dir = temp_dir("fleetsync-kafka-")?;
        let per_node = 2 + opts.listeners.len();
        let ports: Vec<NodePorts> = free_ports(opts.node_count() * per_node)?
            .chunks(per_node)
            .map(|p| NodePorts {
                plaintext: p[0],
                controller: p[1],
                extra: p[2..].to_vec(),
            })
            .collect();
        let cluster_id = random_cluster_id();
        let mut nodes = Vec::new();
        let mut formats = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir)?;
            let props = server_properties(opts, i + 1, &ports, &node_dir.join("data"));
            let props_path = node_dir.join("server.properties");
            std::fs::write(&props_path, props)?;
            // Concurrently: each format is a JVM start.
            formats.push(tokio::spawn(format_storage(
                libs.to_path_buf(),
                props_path,
                cluster_id.clone(),
                opts.scram_args(),
            )));
            nodes.push(Node {
                id: i32::try_from(i + 1)?,
                ports: p.clone(),
                dir: node_dir,
                child: None,
                starts: 0,
                paused: false,
            });
        }
        for f in formats {
            f.await.context("StorageTool format task failed")??;
        }
        let mut cluster = KafkaCluster {
            opts: opts.clone(),
            libs: libs.to_path_buf(),
            nodes,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn_node(i)?;
        }
        // On failure the cluster is dropped, which kills every node.
        cluster.wait_listed(None).await?;
        println!(
            "Kafka: {} node(s) up in {:.1?} at {}",
            cluster.nodes.len(),
            started.elapsed(),
            cluster.bootstrap()
        );
        Ok(cluster)
    }

    fn spawn_node(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .with_context(|| format!("opening {}", node.log().display()))?;
        writeln!(
            out,
            "===== fleetsync test harness: Kafka node {} start #{} =====",
            node.id, node.starts
        )?;
        let mut cmd = java(&self.libs, "kafka.Kafka");
        cmd.arg(node.dir.join("server.properties"))
            .current_dir(&node.dir);
        let child = spawn_logged(cmd, &node.log())?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until every running node (or just `node`, by index, when given) is listed in the
    /// metadata that node answers; fails early when a node exits.
    async fn wait_listed(&mut self, only: Option<usize>) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for node in &mut self.nodes {
                if node.child.is_some() && !node.running() {
                    let tail = node.log_tail(LOG_TAIL_LINES);
                    let clash = if tail.contains("Address already in use") {
                        " (Address already in use)"
                    } else {
                        ""
                    };
                    bail!("Kafka node {} exited early{clash}:\n{tail}", node.id);
                }
            }
            let want: Vec<i32> = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.running().then_some(n.id))
                .collect();
            let ask: Vec<usize> = match only {
                Some(i) => vec![i],
                None => (0..self.nodes.len()).collect(),
            };
            let mut last = String::new();
            let mut all = true;
            for i in ask {
                let addr = format!("127.0.0.1:{}", self.nodes[i].ports.plaintext);
                match kafka_admin::broker_ids(&addr, kafka_admin::REQUEST_TIMEOUT).await {
                    Ok(ids) if want.iter().all(|w| ids.contains(w)) => {}
                    Ok(ids) => {
                        all = false;
                        last = format!("node {} lists brokers {ids:?}, want {want:?}", i + 1);
                    }
                    Err(e) => {
                        all = false;
                        last = format!("node {}: {e:#}", i + 1);
                    }
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Kafka not ready within {READY_TIMEOUT:?} ({last}):\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `host:port,...` of every node's `PLAINTEXT` listener, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.ports.plaintext))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port,...` of every node's extra listener `name` (see [`KafkaOptions::listener`]).
    pub fn bootstrap_for(&self, listener: &str) -> Result<String> {
        let i = self
            .opts
            .listeners
            .iter()
            .position(|l| l.name == listener)
            .with_context(|| format!("no listener {listener} was asked for"))?;
        Ok(self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.ports.extra[i]))
            .collect::<Vec<_>>()
            .join(","))
    }

    /// `PLAINTEXT` addresses of the nodes that run and are not paused (what the harness asks
    /// metadata from: a paused node would hold a request until it times out).
    fn live_bootstrap(&self) -> Result<String> {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused)
            .map(|n| format!("127.0.0.1:{}", n.ports.plaintext))
            .collect();
        if live.is_empty() {
            bail!("no Kafka node is running");
        }
        Ok(live.join(","))
    }

    pub fn options(&self) -> &KafkaOptions {
        &self.opts
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The temp dir holding every node's config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Each node's log file.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(Node::log).collect()
    }

    /// The last `n` lines of every node's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.nodes
            .iter()
            .map(|node| node.log_tail(n))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails with the log tails when a node that should run has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if node.child.is_some() && !node.running() {
                bail!(
                    "Kafka node {} exited:\n{}",
                    node.id,
                    node.log_tail(LOG_TAIL_LINES)
                );
            }
        }
        Ok(())
    }

    fn node_index(&self, node: i32) -> Result<usize> {
        let i = usize::try_from(node - 1).ok();
        match i {
            Some(i) if i < self.nodes.len() => Ok(i),
            _ => bail!("no Kafka node {node} (nodes are 1..={})", self.nodes.len()),
        }
    }

    /// SIGKILLs node `node` (1-based `node.id`); its data dir and ports stay for
    /// [`KafkaCluster::start_again`].
    pub fn kill9(&mut self, node: i32) -> Result<()> {
        let i = self.node_index(node)?;
        let n = &mut self.nodes[i];
        if let Some(mut child) = n.child.take() {
            if child.try_wait()?.is_none() {
                child.kill().context("SIGKILL a Kafka node")?;
            }
            child.wait().context("reaping a Kafka node")?;
        }
        n.paused = false;
        Ok(())
    }

    /// Starts a killed node again on its data dir and ports; returns once the cluster lists
    /// it again (it answers metadata and the controller quorum has unfenced it).
    pub async fn start_again(&mut self, node: i32) -> Result<()> {
        let i = self.node_index(node)?;
        if self.nodes[i].running() {
            bail!("Kafka node {node} is still running; kill it first");
        }
        self.spawn_node(i)?;
        self.wait_listed(Some(i)).await
    }

    /// SIGSTOPs node `node`: it holds its connections and answers nothing.
    pub fn pause(&mut self, node: i32) -> Result<()> {
        self.signal(node, Signal::SIGSTOP)?;
        let i = self.node_index(node)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// SIGCONTs a paused node.
    pub fn resume(&mut self, node: i32) -> Result<()> {
        self.signal(node, Signal::SIGCONT)?;
        let i = self.node_index(node)?;
        self.nodes[i].paused = false;
        Ok(())
    }

    fn signal(&mut self, node: i32, signal: Signal) -> Result<()> {
        let i = self.node_index(node)?;
        let child = self.nodes[i]
            .child
            .as_ref()
            .with_context(|| format!("Kafka node {node} is not running"))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} Kafka node {node}"))
    }

    /// The pid of a running node's JVM.
    pub fn pid(&self, node: i32) -> Result<u32> {
        let i = self.node_index(node)?;
        self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("Kafka node {node} is not running"))
    }

    /// The settings the harness creates topics with: one partition, a copy on every node,
    /// [`KafkaOptions::min_insync_replicas`], no unclean election, and nothing deleted by age
    /// or size (a test's backlog must never expire under it).
    pub fn topic_spec(&self, name: &str) -> TopicSpec {
        TopicSpec::new(name, 1, self.opts.replication())
            .config(
                "min.insync.replicas",
                &self.opts.min_insync_replicas().to_string(),
            )
            .config("unclean.leader.election.enable", "false")
            .config("cleanup.policy", "delete")
            .config("retention.ms", "-1")
            .config("retention.bytes", "-1")
    }

    /// Creates `topics` with [`KafkaCluster::topic_spec`] and waits until each partition has
    /// a leader. An existing topic is an error (a test starts from an empty cluster).
    pub async fn create_topics(&self, topics: &[&str]) -> Result<()> {
        let specs: Vec<TopicSpec> = topics.iter().map(|t| self.topic_spec(t)).collect();
        self.create_topics_with(&specs).await
    }

    /// Creates topics with explicit settings and waits until each partition has a leader.
    pub async fn create_topics_with(&self, specs: &[TopicSpec]) -> Result<()> {
        let bootstrap = self.live_bootstrap()?;
        kafka_admin::create_topics(&bootstrap, specs, false)
            .await
            .with_context(|| format!("creating topics; logs:\n{}", self.log_tail(10)))?;
        for spec in specs {
            for p in 0..spec.partitions {
                self.wait_leader(&spec.name, p, |_| true, READY_TIMEOUT)
                    .await?;
            }
        }
        Ok(())
    }

    /// Leader, replicas and in-sync replicas of a partition (node ids) as the running nodes
    /// report them.
    pub async fn partition_state(&self, topic: &str, partition: i32) -> Result<PartitionState> {
        let bootstrap = self.live_bootstrap()?;
        kafka_admin::partition_state(&bootstrap, topic, partition).await
    }

    /// The node that leads `topic`'s `partition` (`None` while there is no leader).
    pub async fn leader_of(&self, topic: &str, partition: i32) -> Result<Option<i32>> {
        let state = self.partition_state(topic, partition).await?;
        Ok((state.leader >= 0).then_some(state.leader))
    }

    /// Waits until the partition's leader satisfies `accept` (e.g. "not the node just
    /// killed"); returns it.
    pub async fn wait_leader(
        &self,
        topic: &str,
        partition: i32,
        accept: impl Fn(i32) -> bool,
        timeout: Duration,
    ) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.partition_state(topic, partition).await {
                Ok(s) if s.leader >= 0 && accept(s.leader) => return Ok(s.leader),
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("no acceptable leader for {topic}/{partition} within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every replica of the partition is in sync again (after a restart).
    pub async fn wait_in_sync(&self, topic: &str, partition: i32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.partition_state(topic, partition).await {
                Ok(s) if s.leader >= 0 && s.isr == s.replicas => return Ok(()),
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("{topic}/{partition} not fully in sync within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The high watermark of `topic`'s `partition` (the next offset to be written). Retries
    /// for up to [`WATERMARK_TIMEOUT`]: right after an election the new leader answers
    /// `OffsetNotAvailable` until its high watermark has caught up, and a leader that just
    /// died answers nothing until the next one is elected.
    pub async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64> {
        let deadline = Instant::now() + WATERMARK_TIMEOUT;
        loop {
            let bootstrap = self.live_bootstrap()?;
            match kafka_admin::high_watermark(&bootstrap, topic, partition).await {
                Ok(high) => return Ok(high),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The high watermark of partition 0 of `topic`, or `None` when the topic does not exist
    /// (asking does not create it): for "nothing was published" and "never created" checks.
    pub async fn high_watermark_if_exists(&self, topic: &str) -> Result<Option<i64>> {
        let bootstrap = self.live_bootstrap()?;
        if !kafka_admin::topic_exists(&bootstrap, topic).await? {
            return Ok(None);
        }
        self.high_watermark(topic, 0).await.map(Some)
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `StorageTool format` for one node (a static quorum: no `--standalone`).
async fn format_storage(
    libs: PathBuf,
    props: PathBuf,
    cluster_id: String,
    scram_args: Vec<String>,
) -> Result<()> {
    let mut cmd = java(&libs, "kafka.tools.StorageTool");
    cmd.arg("format")
        .arg("--cluster-id")
        .arg(&cluster_id)
        .arg("--config")
        .arg(&props)
        .args(&scram_args);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(FORMAT_TIMEOUT, cmd.output())
        .await
        .context("StorageTool format timed out")?
        .context("running StorageTool format (is Java installed?)")?;
    if !out.status.success() {
        bail!(
            "StorageTool format {} failed ({}):\n{}{}",
            props.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
