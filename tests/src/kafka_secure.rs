//! A Kafka cluster with TLS and SASL listeners, for the Kafka TLS/SASL tests: certificates and
//! users made by the test, on top of [`KafkaCluster`] and [`KafkaOptions`].
//!
//! Every node gets, besides the harness's own `PLAINTEXT` listener (which the test's own
//! checks use: topic creation, high watermarks, ACLs):
//! - [`SSL_LISTENER`] (`SSL`): TLS, the broker's certificate signed by a test CA, no client
//!   certificates;
//! - [`SASL_LISTENER`] (`SASL_SSL`): the same TLS plus SCRAM-SHA-512 logins, for the users
//!   given to [`SecureKafka::start`] (created at format time).
//!
//! [`SecureKafka::start_with_acls`] is the variant the bus security tests
//! (`tests/e2e/kafka_security.rs`) run on: ACLs enforced ([`KafkaOptions::acls`]),
//! [`SUPER_USER`] a super user and [`LIMITED_USER`] allowed only what
//! [`SecureKafka::allow`] grants, both with one random password; and topics auto-created, so
//! that a client which gets through and so much as asks for a topic's metadata creates it,
//! which the refusal tests' "topic never created" checks see.
//!
//! Certificates come from [`Certs`] (the `openssl` command-line tool): a CA (`ca.pem`, what
//! clients trust), the broker's key and certificate as a PEM keystore
//! (`ssl.keystore.type=PEM`, subjectAltName `IP:127.0.0.1`, `DNS:localhost`), and a second CA
//! that signed nothing ([`Certs::wrong_ca`]) for "wrong CA" cases.
//!
//! The harness's own librdkafka client speaks only `PLAINTEXT`, so the positive checks of
//! [`SecureKafka`] itself use `openssl s_client` (the TLS handshake) and Kafka's own Java admin
//! client (`kafka-cluster cluster-id`, a SASL_SSL login).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::certs::Certs;
use crate::kafka::KafkaCluster;
use crate::kafka_setup::{java, kafka_libs, KafkaOptions};

pub const SSL_LISTENER: &str = "SSL";
pub const SASL_LISTENER: &str = "SASL_SSL";
pub const SCRAM_MECHANISM: &str = "SCRAM-SHA-512";
/// The super user of [`SecureKafka::start_with_acls`].
pub const SUPER_USER: &str = "fleetsync-test";
/// The user of [`SecureKafka::start_with_acls`] that may do only what [`SecureKafka::allow`]
/// grants it.
pub const LIMITED_USER: &str = "fleetsync-limited";

/// `opts` plus the `SSL` and `SASL_SSL` listeners, the PEM keystore and SCRAM for `users`
/// (name, password).
pub fn secure_options(opts: KafkaOptions, certs: &Certs, users: &[(&str, &str)]) -> KafkaOptions {
    let mut opts = opts
        .listener(SSL_LISTENER, "SSL")
        .listener(SASL_LISTENER, "SASL_SSL")
        .property("ssl.keystore.type", "PEM")
        .property("ssl.keystore.location", &certs.keystore.to_string_lossy())
        .property("sasl.enabled.mechanisms", SCRAM_MECHANISM)
        .property(
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        );
    for (name, password) in users {
        opts = opts.scram_user(SCRAM_MECHANISM, name, password);
    }
    opts
}

/// A cluster with TLS and SASL listeners, the certificates it was made with and its SCRAM
/// users.
pub struct SecureKafka {
    pub kafka: KafkaCluster,
    pub certs: Certs,
    /// (name, password) of every SCRAM user.
    users: Vec<(String, String)>,
}

impl SecureKafka {
    /// One node with `users` (name, password) able to log in over `SASL_SSL`.
    pub async fn start(users: &[(&str, &str)]) -> Result<SecureKafka> {
        Self::start_with(KafkaOptions::single(), users).await
    }

    /// One node with ACLs enforced and auto-created topics (see the module doc):
    /// [`SUPER_USER`] and [`LIMITED_USER`], both with one random password
    /// ([`SecureKafka::password`]).
    pub async fn start_with_acls() -> Result<SecureKafka> {
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let opts = KafkaOptions::single()
            .acls(&[SUPER_USER])
            .property("auto.create.topics.enable", "true");
        Self::start_with(opts, &[(SUPER_USER, &password), (LIMITED_USER, &password)]).await
    }

    /// [`secure_options`] on `opts`: a cluster with the `SSL` and `SASL_SSL` listeners.
    pub async fn start_with(opts: KafkaOptions, users: &[(&str, &str)]) -> Result<SecureKafka> {
        let certs = tokio::task::spawn_blocking(Certs::generate)
            .await
            .context("certificate task failed")??;
        let kafka = KafkaCluster::start(secure_options(opts, &certs, users)).await?;
        let users = users
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        Ok(SecureKafka {
            kafka,
            certs,
            users,
        })
    }

    /// The password of SCRAM user `user`.
    pub fn password(&self, user: &str) -> Result<&str> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, password)| password.as_str())
            .with_context(|| format!("no SCRAM user {user}"))
    }

    /// `host:port,...` of the TLS listener.
    pub fn ssl_bootstrap(&self) -> Result<String> {
        self.kafka.bootstrap_for(SSL_LISTENER)
    }

    /// `host:port,...` of the SASL_SSL listener.
    pub fn sasl_bootstrap(&self) -> Result<String> {
        self.kafka.bootstrap_for(SASL_LISTENER)
    }

    /// Whether a TLS handshake with the first node's `listener`, trusting only `ca`, succeeds
    /// with a verified certificate (`openssl s_client -verify_return_error`).
    pub async fn tls_handshake_ok(&self, listener: &str, ca: &Path) -> Result<bool> {
        let bootstrap = self.kafka.bootstrap_for(listener)?;
        let addr = bootstrap.split(',').next().unwrap_or_default().to_string();
        let out = tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(ca)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running openssl s_client")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(out.status.success() && stdout.contains("Verify return code: 0 (ok)"))
    }

    /// Logs in over `SASL_SSL` with Kafka's own Java admin client (`kafka-cluster
    /// cluster-id`); `Ok(cluster id)` or the tool's error output.
    pub async fn java_sasl_login(&self, user: &str, password: &str) -> Result<String> {
        let libs = tokio::task::spawn_blocking(kafka_libs)
            .await
            .context("jar task failed")??;
        let props = self.kafka.dir().join(format!("client-{user}.properties"));
        std::fs::write(
            &props,
            format!(
                "security.protocol=SASL_SSL\nsasl.mechanism={SCRAM_MECHANISM}\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                 required username=\"{user}\" password=\"{password}\";\n\
                 request.timeout.ms=10000\ndefault.api.timeout.ms=15000\n",
                self.certs.ca.display()
            ),
        )?;
        let mut cmd = java(&libs, "org.apache.kafka.tools.ClusterTool");
        cmd.args(["cluster-id", "--bootstrap-server", &self.sasl_bootstrap()?])
            .arg("--command-config")
            .arg(&props);
        let out = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output()
            .await
            .context("running kafka-cluster cluster-id")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("Cluster ID: ")) {
            Some(id) if out.status.success() => Ok(id.trim().to_string()),
            _ => bail!(
                "SASL_SSL login as {user} failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Grants `user` the ACL `operations` (e.g. `Describe`, `Write`) on `topic`, with Kafka's
    /// own `AclCommand` over the harness's `PLAINTEXT` listener (a super user there).
    pub async fn allow(&self, user: &str, operations: &[&str], topic: &str) -> Result<()> {
        let libs = tokio::task::spawn_blocking(kafka_libs)
            .await
            .context("jar task failed")??;
        let mut cmd = java(&libs, "org.apache.kafka.tools.AclCommand");
        cmd.args(["--bootstrap-server", &self.kafka.bootstrap(), "--add"])
            .args(["--allow-principal", &format!("User:{user}")])
            .args(["--topic", topic]);
        for op in operations {
            cmd.args(["--operation", op]);
        }
        let out = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output()
            .await
            .context("running AclCommand")?;
        if !out.status.success() {
            bail!(
                "AclCommand --add {user} {operations:?} on {topic} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}
