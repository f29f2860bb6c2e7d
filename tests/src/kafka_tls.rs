//! A single-node Apache Kafka broker (KRaft) with TLS and SASL listeners, for the bus
//! security tests: certificates and the SCRAM user are made by the test.
//!
//! [`start_secure_broker`] makes, in a temp dir:
//! * a CA and a broker certificate for `127.0.0.1`/`localhost` signed by it (the `openssl`
//!   CLI), plus a second CA that signed nothing (a client trusting it must fail);
//! * listeners `SSL://` (TLS, no client auth), `SASL_SSL://` (TLS + SCRAM-SHA-512, the user
//!   added at format time), `PLAINTEXT://` (for the test's own checks: pre-creating topics,
//!   reading high watermarks; also the inter-broker listener) and the controller listener;
//! * ACLs enforced (StandardAuthorizer): ANONYMOUS (plaintext, SSL without client
//!   certificates) and [`SCRAM_USER`] are super users; [`LIMITED_USER`] gets only what a test
//!   grants with [`SecureBroker::allow`];
//! * a bounded heap (`-Xmx512m`); the broker is SIGKILLed when the value is dropped.
//!
//! The broker's jars come from `tests/kafka/fetch.sh kafka` (Maven, cached). Self-contained on
//! purpose (no dependency on `kafka.rs`): it is meant to be folded into the Kafka harness
//! later.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tempfile::TempDir;

use crate::fixtures::repo_root;
use crate::mariadb::tail_lines;

/// The SCRAM user made at format time: a super user.
pub const SCRAM_USER: &str = "fleetsync-test";
/// A second SCRAM user (same password) with only the ACLs a test grants (see
/// [`SecureBroker::allow`]).
pub const LIMITED_USER: &str = "fleetsync-limited";
/// Time for the broker to accept connections after `kafka.Kafka` starts (a JVM on 2 busy
/// cores).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// One admin or metadata request from the test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running TLS + SASL broker (see the module doc).
pub struct SecureBroker {
    /// `SSL://` listener (TLS only).
    pub ssl_bootstrap: String,
    /// `SASL_SSL://` listener (TLS + SCRAM-SHA-512).
    pub sasl_ssl_bootstrap: String,
    /// `PLAINTEXT://` listener, for the test's own checks.
    pub plaintext_bootstrap: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca_pem_path: PathBuf,
    /// A CA that signed nothing the broker presents (PEM): trusting only it must fail.
    pub wrong_ca_pem_path: PathBuf,
    pub user: String,
    pub password: String,
    log: PathBuf,
    child: Child,
    /// The broker's jars, for the admin tools.
    classpath: String,
    _dir: TempDir,
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the broker (see the module doc); ready to serve all listeners when it returns.
pub async fn start_secure_broker() -> Result<SecureBroker> {
    let jars = kafka_jars().await?;
    let dir = tempfile::Builder::new()
        .prefix("fleetsync-kafka-tls-")
        .tempdir()?;
    let d = dir.path().to_path_buf();
    make_certs(&d).await?;
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let [plain, ssl, sasl, controller] = free_ports()?;
    let props = format!(
        "process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n\
         listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl},SASL_SSL://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl},SASL_SSL://127.0.0.1:{sasl}\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
         inter.broker.listener.name=PLAINTEXT\n\
         sasl.enabled.mechanisms=SCRAM-SHA-512\n\
         listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         ssl.keystore.type=PEM\n\
         ssl.keystore.location={keystore}\n\
         ssl.client.auth=none\n\
         log.dirs={data}\n\
         offsets.topic.replication.factor=1\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n\
         auto.create.topics.enable=true\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         super.users=User:ANONYMOUS;User:{SCRAM_USER}\n",
        keystore = d.join("broker-keystore.pem").display(),
        data = d.join("data").display(),
    );
    let props_path = d.join("server.properties");
    std::fs::write(&props_path, props)?;
    let classpath = format!("{}/*", jars.display());
    let id = java_output(&classpath, &["kafka.tools.StorageTool", "random-uuid"]).await?;
    let scram = format!("SCRAM-SHA-512=[name={SCRAM_USER},password={password}]");
    let limited = format!("SCRAM-SHA-512=[name={LIMITED_USER},password={password}]");
    let props_s = props_path.to_string_lossy().to_string();
    java_output(
        &classpath,
        &[
            "kafka.tools.StorageTool",
            "format",
            "-t",
            id.trim(),
            "-c",
            &props_s,
            "--standalone",
            "--add-scram",
            &scram,
            "--add-scram",
            &limited,
        ],
    )
    .await
    .context("formatting the broker's storage")?;
    let log = d.join("broker.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new("java")
        .arg("-Xmx512m")
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            jars.join("log4j2.properties").display()
        ))
        .args(["-cp", &classpath, "kafka.Kafka", &props_s])
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .context("starting the Kafka broker (java)")?;
    let mut broker = SecureBroker {
        ssl_bootstrap: format!("127.0.0.1:{ssl}"),
        sasl_ssl_bootstrap: format!("127.0.0.1:{sasl}"),
        plaintext_bootstrap: format!("127.0.0.1:{plain}"),
        ca_pem_path: d.join("ca.pem"),
        wrong_ca_pem_path: d.join("wrong-ca.pem"),
        user: SCRAM_USER.to_string(),
        password,
        log,
        child,
        classpath,
        _dir: dir,
    };
    broker.wait_ready().await?;
    Ok(broker)
}

impl SecureBroker {
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read(&self.log) {
            Ok(b) => tail_lines(&String::from_utf8_lossy(&b), n),
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// Waits until the plaintext listener answers metadata requests (the other listeners
    /// open with it).
    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the Kafka broker exited ({status}); log:\n{}",
                    self.log_tail(40)
                );
            }
            let bootstrap = self.plaintext_bootstrap.clone();
            let ok = tokio::task::spawn_blocking(move || {
                let c: BaseConsumer = plain_config(&bootstrap).create()?;
                let m = c.fetch_metadata(None, Duration::from_secs(2))?;
                anyhow::Ok(!m.brokers().is_empty())
            })
            .await?;
            if matches!(ok, Ok(true)) {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "the Kafka broker is not ready after {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates `topic` (replication factor 1) with topic-level `configs`, over the plaintext
    /// listener.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            plain_config(&self.plaintext_bootstrap).create()?;
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = tokio::time::timeout(REQUEST_TIMEOUT, admin.create_topics([&new], &opts))
            .await
            .context("CreateTopics timed out")??;
        for r in results {
            r.map_err(|(t, code)| anyhow::anyhow!("creating {t}: {code}"))?;
        }
        tokio::task::spawn_blocking(move || drop(admin));
        Ok(())
    }

    /// Grants `user` the ACL `operations` (e.g. `Describe`, `Write`) on `topic`, with Kafka's
    /// own AclCommand over the plaintext listener (a super user there: ANONYMOUS).
    pub async fn allow(&self, user: &str, operations: &[&str], topic: &str) -> Result<()> {
        let principal = format!("User:{user}");
        let mut args = vec![
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            &self.plaintext_bootstrap,
            "--add",
            "--allow-principal",
            &principal,
            "--topic",
            topic,
        ];
        for op in operations {
            args.extend(["--operation", op]);
        }
        java_output(&self.classpath, &args).await?;
        Ok(())
    }

    /// The high watermark of partition 0 of `topic` (messages ever written), or `None` when
    /// the topic does not exist.
    pub async fn high_watermark(&self, topic: &str) -> Result<Option<i64>> {
        let bootstrap = self.plaintext_bootstrap.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = plain_config(&bootstrap).create()?;
            let m = c.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)?;
            let exists = m
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
            if !exists {
                return Ok(None);
            }
            let (_, high) = c.fetch_watermarks(&topic, 0, REQUEST_TIMEOUT)?;
            Ok(Some(high))
        })
        .await?
    }
}

/// A client of the plaintext listener that never creates topics by asking about them.
fn plain_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("group.id", "fleetsync-test-probe");
    c
}

/// The directory of the broker's jars (downloaded once by `tests/kafka/fetch.sh`).
async fn kafka_jars() -> Result<PathBuf> {
    let script = repo_root().join("tests/kafka/fetch.sh");
    let out = tokio::process::Command::new(&script)
        .arg("kafka")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} kafka failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let dir = PathBuf::from(dir);
    ensure!(
        dir.join("log4j2.properties").exists(),
        "{} kafka printed {}, which holds no broker",
        script.display(),
        dir.display()
    );
    Ok(dir)
}

async fn java_output(classpath: &str, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new("java")
        .args(["-cp", classpath])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running java")?;
    ensure!(
        out.status.success(),
        "java {} failed: {}{}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `ca.pem`, `wrong-ca.pem` and `broker-keystore.pem` (the broker's PKCS#8 key, its
/// certificate for 127.0.0.1/localhost and the CA) in `dir`.
async fn make_certs(dir: &Path) -> Result<()> {
    let p = |name: &str| dir.join(name).to_string_lossy().to_string();
    std::fs::write(
        dir.join("broker-ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    for ca in ["ca", "wrong-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=fleetsync test {ca}"),
            "-keyout",
            &p(&format!("{ca}.key")),
            "-out",
            &p(&format!("{ca}.pem")),
        ])
        .await?;
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("broker.key"),
        "-out",
        &p("broker.csr"),
    ])
    .await?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("broker.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("broker-ext.cnf"),
        "-out",
        &p("broker.crt"),
    ])
    .await?;
    let mut keystore = std::fs::read_to_string(dir.join("broker.key"))?;
    keystore.push_str(&std::fs::read_to_string(dir.join("broker.crt"))?);
    keystore.push_str(&std::fs::read_to_string(dir.join("ca.pem"))?);
    std::fs::write(dir.join("broker-keystore.pem"), keystore)?;
    Ok(())
}

async fn openssl(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running openssl (the openssl CLI makes the test certificates)")?;
    ensure!(
        out.status.success(),
        "openssl {} failed: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Four distinct free ports (each probe is held until all are picked, so none repeats).
fn free_ports() -> Result<[u16; 4]> {
    let mut listeners = Vec::with_capacity(4);
    let mut ports = [0u16; 4];
    for port in ports.iter_mut() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
        *port = l.local_addr()?.port();
        listeners.push(l);
    }
    Ok(ports)
}
