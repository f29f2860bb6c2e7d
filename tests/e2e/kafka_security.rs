//! The Kafka bus over TLS and SASL, and fleetsync's refusal of unsafe topics, against a real
//! Apache Kafka broker (`fleetsync_tests::kafka_secure`, `SecureKafka::start_with_acls`: one
//! node, ACLs enforced, certificates and the SCRAM users made by the test).
//!
//! - `kafka_tls_and_sasl_sync`: `fleetsync agent` and `fleetsync coordinator` sync a table
//!   (snapshot, then inserts, updates and deletes while streaming) through the `SSL` listener
//!   and then through the `SASL_SSL` (SCRAM-SHA-512) listener, the password read from a file;
//!   the target equals the source row by row, and the password shows in no log or output.
//! - `kafka_tls_sasl_refusals`: a CA that did not sign the broker, a wrong password, and a
//!   plaintext client on the TLS listener: the agent and the coordinator each exit non-zero
//!   within a bound with one line naming the cause, the topic is never created, and no
//!   password is printed.
//! - `kafka_unsafe_topic_refused`: topics pre-created with `unclean.leader.election.enable=true`,
//!   `cleanup.policy=compact` or three partitions: the agent (and the coordinator) refuse with
//!   one line, and nothing is published (high watermark 0).
//! - `kafka_topic_permissions_refused`: a SCRAM user that may describe a topic but not read
//!   its settings (no DescribeConfigs ACL), and one with no ACL at all: one line naming the
//!   missing permission, no hang, nothing published.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fleetsync_tests::kafka_secure::{LIMITED_USER, SUPER_USER};
use fleetsync_tests::{
    fleetsync_cmd_with, status_json, wait_synced_procs, ConfigBuilder, Fleetsync, MariaDb,
    SecureKafka, TopicSpec,
};

use crate::support::{check_refusal, Pair, Refusal, STOP_TIMEOUT, SYNC_TIMEOUT};

const DB: &str = "app";
/// Rows in the source before the agent starts (the snapshot).
const SNAPSHOT_ROWS: u32 = 200;
/// What a refused start may take: fleetsync waits up to 30 s for a broker that does not
/// answer, less when librdkafka reports a TLS or SASL error; the rest is a debug build's
/// start and the source's preflight.
const REFUSE_BOUND: Duration = Duration::from_secs(50);

/// `app.t` on the source with [`SNAPSHOT_ROWS`] rows.
async fn fill_source(src: &MariaDb) -> Result<()> {
    let mut sql = format!(
        "CREATE DATABASE {DB}; CREATE TABLE {DB}.t (id INT PRIMARY KEY, v VARCHAR(64), \
         b BLOB, d DECIMAL(10,2)) ENGINE=InnoDB; INSERT INTO {DB}.t VALUES "
    );
    let rows: Vec<String> = (1..=SNAPSHOT_ROWS)
        .map(|i| format!("({i}, 'row {i}', UNHEX('00ff{i:04x}'), {i}.25)"))
        .collect();
    sql.push_str(&rows.join(", "));
    src.exec(&sql).await
}

/// A Kafka config for `pair`: `bus_lines` are raw TOML lines of `[bus]` (typed keys first, then
/// an optional `[bus.kafka]` table). Replication factor 1: the broker is a single node.
fn write_config(pair: &Pair, bootstrap: &str, bus_lines: &str) -> Result<PathBuf> {
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .kafka_bus(bootstrap, 1)
        .raw(bus_lines)
        .build();
    Fleetsync::write_config(pair.dir.path(), &text)
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

/// `[bus]` lines for TLS only, trusting `ca`.
fn ssl_lines(prefix: &str, ca: &Path) -> String {
    format!(
        "topic_prefix = \"{prefix}\"\n[bus.kafka]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = {}\n",
        toml_path(ca)
    )
}

/// `[bus]` lines for SCRAM-SHA-512 over TLS as [`SUPER_USER`]; `typed` and `in_map` are raw
/// TOML for where the password comes from (a typed key before the table, or a
/// `"sasl.password"` line inside it).
fn sasl_lines(prefix: &str, broker: &SecureKafka, typed: &str, in_map: &str) -> String {
    sasl_lines_as(prefix, broker, SUPER_USER, typed, in_map)
}

/// [`sasl_lines`] for another SCRAM user.
fn sasl_lines_as(
    prefix: &str,
    broker: &SecureKafka,
    user: &str,
    typed: &str,
    in_map: &str,
) -> String {
    format!(
        "topic_prefix = \"{prefix}\"\n{typed}[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{}\"\n\
         \"ssl.ca.location\" = {}\n{in_map}",
        user,
        toml_path(&broker.certs.ca)
    )
}

/// Creates `topic` (replication factor 1) with only the topic-level `configs` given, over the
/// harness's `PLAINTEXT` listener.
async fn create_topic(
    broker: &SecureKafka,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let spec = configs
        .iter()
        .fold(TopicSpec::new(topic, partitions, 1), |s, (k, v)| {
            s.config(k, v)
        });
    broker.kafka.create_topics_with(&[spec]).await
}

/// Fails if any of `secrets` is in `text` (`what` names where it was found).
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) -> Result<()> {
    for s in secrets {
        ensure!(!text.contains(s), "{what} shows a password ({s:?})");
    }
    Ok(())
}

#[tokio::test]
async fn kafka_tls_and_sasl_sync() -> Result<()> {
    let started = Instant::now();
    let broker = SecureKafka::start_with_acls()
        .await
        .context("TLS/SASL broker")?;
    println!("broker ready after {:.1?}", started.elapsed());
    let password = broker.password(SUPER_USER)?;
    let (ssl, sasl) = (broker.ssl_bootstrap()?, broker.sasl_bootstrap()?);
    for protocol in ["SSL", "SASL_SSL"] {
        let t0 = Instant::now();
        let pair = Pair::start().await?;
        fill_source(&pair.src).await?;
        let (bootstrap, lines) = if protocol == "SSL" {
            (&ssl, ssl_lines("tls", &broker.certs.ca))
        } else {
            let file = pair.dir.path().join("kafka-password");
            std::fs::write(&file, format!("{password}\n"))?;
            let typed = format!("sasl_password_file = {}\n", toml_path(&file));
            (&sasl, sasl_lines("sasl", &broker, &typed, ""))
        };
        let config = write_config(&pair, bootstrap, &lines)?;
        let mut agent = Fleetsync::spawn("agent", &config, &[])?;
        let mut coordinator = Fleetsync::spawn("coordinator", &config, &[])?;
        let procs = &mut [&mut agent, &mut coordinator];
        wait_synced_procs(procs, &pair.src, &pair.dst, &[DB], SYNC_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "{protocol}: snapshot; broker log:\n{}",
                    broker.kafka.log_tail(15)
                )
            })?;
        pair.src
            .exec(&format!(
                "INSERT INTO {DB}.t VALUES (1001, 'streamed', NULL, 0.5), (1002, 'x', 'y', 1); \
                 UPDATE {DB}.t SET v = CONCAT(v, ' updated') WHERE id % 7 = 0; \
                 DELETE FROM {DB}.t WHERE id % 11 = 0"
            ))
            .await?;
        wait_synced_procs(procs, &pair.src, &pair.dst, &[DB], SYNC_TIMEOUT)
            .await
            .with_context(|| format!("{protocol}: streaming"))?;
        let status = status_json(&config).await?.to_string();
        let prefix = if protocol == "SSL" { "tls" } else { "sasl" };
        let high = broker
            .kafka
            .high_watermark_if_exists(&format!("{prefix}.src"))
            .await?;
        ensure!(
            high.is_some_and(|h| h > i64::from(SNAPSHOT_ROWS)),
            "{protocol}: the topic should hold the changes, high watermark {high:?}"
        );
        coordinator.stop(STOP_TIMEOUT).await?;
        agent.stop(STOP_TIMEOUT).await?;
        let secrets = [password];
        for p in [&agent, &coordinator] {
            let log = std::fs::read_to_string(p.log_path())?;
            assert_no_secret(&format!("{protocol}: {} log", p.name()), &log, &secrets)?;
        }
        assert_no_secret(&format!("{protocol}: status --json"), &status, &secrets)?;
        let config_s = config.to_string_lossy().to_string();
        let check = fleetsync_cmd_with(
            &["check", "--config", &config_s],
            &[],
            Duration::from_secs(90),
        )
        .await?;
        ensure!(
            check.status.success(),
            "{protocol}: fleetsync check failed: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert_no_secret(&format!("{protocol}: fleetsync check"), &out, &secrets)?;
        println!(
            "{protocol}: synced {SNAPSHOT_ROWS} rows + streaming in {:.1?}; high watermark {high:?}",
            t0.elapsed()
        );
    }
    Ok(())
}

/// Words a refusal must mention: one of each group.
type Mentions<'a> = &'a [&'a [&'a str]];

/// A client that must not get through (`kafka_tls_sasl_refusals`).
struct ConnectCase<'a> {
    what: &'a str,
    /// Topic prefix: each case its own topic, which must never be created.
    prefix: &'a str,
    bootstrap: &'a str,
    /// `[bus]` lines.
    lines: String,
    mentions: Mentions<'a>,
}

/// A topic pre-created with unsafe settings (`kafka_unsafe_topic_refused`).
struct UnsafeTopic<'a> {
    prefix: &'a str,
    partitions: i32,
    configs: &'a [(&'a str, &'a str)],
    mentions: Mentions<'a>,
}

/// Runs `fleetsync SUB --config CONFIG` (logging off), expecting a refusal within
/// [`REFUSE_BOUND`]; returns the error line.
async fn expect_refused(sub: &str, config: &Path, refusal: &Refusal<'_>) -> Result<String> {
    let config_s = config.to_string_lossy().to_string();
    let start = Instant::now();
    let out = fleetsync_cmd_with(
        &[sub, "--config", &config_s],
        &[("RUST_LOG", "off")],
        REFUSE_BOUND,
    )
    .await
    .with_context(|| format!("fleetsync {sub} must give up instead of running on"))?;
    let line = check_refusal(&out, refusal).with_context(|| format!("fleetsync {sub}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_no_secret(&format!("fleetsync {sub} stdout"), &stdout, refusal.never)?;
    println!("fleetsync {sub} refused after {:.1?}", start.elapsed());
    Ok(line)
}

#[tokio::test]
async fn kafka_tls_sasl_refusals() -> Result<()> {
    let (broker, pair) = tokio::join!(SecureKafka::start_with_acls(), Pair::start());
    let (broker, pair) = (broker.context("TLS/SASL broker")?, pair?);
    fill_source(&pair.src).await?;
    let password = broker.password(SUPER_USER)?;
    let (ssl, sasl) = (broker.ssl_bootstrap()?, broker.sasl_bootstrap()?);
    const WRONG_PASSWORD: &str = "not-the-password-4711";
    let cases = [
        ConnectCase {
            what: "a CA that did not sign the broker",
            prefix: "wca",
            bootstrap: &ssl,
            lines: ssl_lines("wca", &broker.certs.wrong_ca),
            mentions: &[&["ssl", "certificate"], &["verify"]],
        },
        ConnectCase {
            what: "a wrong SCRAM password",
            prefix: "wpw",
            bootstrap: &sasl,
            lines: sasl_lines(
                "wpw",
                &broker,
                "",
                &format!("\"sasl.password\" = \"{WRONG_PASSWORD}\"\n"),
            ),
            mentions: &[&["authentication"], &["credentials", "password", "sasl"]],
        },
        ConnectCase {
            what: "a plaintext client on the TLS listener",
            prefix: "ptx",
            bootstrap: &ssl,
            lines: "topic_prefix = \"ptx\"\n".to_string(),
            mentions: &[&["security.protocol"]],
        },
    ];
    for ConnectCase {
        what,
        prefix,
        bootstrap,
        lines,
        mentions,
    } in cases
    {
        let config = write_config(&pair, bootstrap, &lines)?;
        let refusal = Refusal {
            mentions,
            never: &[WRONG_PASSWORD, password],
        };
        let line = expect_refused("agent", &config, &refusal)
            .await
            .with_context(|| what.to_string())?;
        println!("{what}: {line}");
        expect_refused("coordinator", &config, &refusal)
            .await
            .with_context(|| what.to_string())?;
        let topic = format!("{prefix}.src");
        let high = broker.kafka.high_watermark_if_exists(&topic).await?;
        ensure!(
            high.is_none(),
            "{what}: topic {topic} exists ({high:?}): something was published"
        );
    }
    Ok(())
}

#[tokio::test]
async fn kafka_unsafe_topic_refused() -> Result<()> {
    let (broker, pair) = tokio::join!(SecureKafka::start_with_acls(), Pair::start());
    let (broker, pair) = (broker.context("broker")?, pair?);
    fill_source(&pair.src).await?;
    let cases = [
        UnsafeTopic {
            prefix: "unc",
            partitions: 1,
            configs: &[("unclean.leader.election.enable", "true")],
            mentions: &[&["unclean.leader.election.enable=true"], &["unc.src"]],
        },
        UnsafeTopic {
            prefix: "cmp",
            partitions: 1,
            configs: &[("cleanup.policy", "compact")],
            mentions: &[&["cleanup.policy=compact"], &["cmp.src"]],
        },
        UnsafeTopic {
            prefix: "par",
            partitions: 3,
            configs: &[],
            mentions: &[&["3 partitions"], &["par.src"]],
        },
    ];
    for UnsafeTopic {
        prefix,
        partitions,
        configs,
        mentions,
    } in cases
    {
        let topic = format!("{prefix}.src");
        create_topic(&broker, &topic, partitions, configs).await?;
        let config = write_config(
            &pair,
            &broker.kafka.bootstrap(),
            &format!("topic_prefix = \"{prefix}\"\n"),
        )?;
        let refusal = Refusal {
            mentions,
            never: &[],
        };
        expect_refused("agent", &config, &refusal).await?;
        expect_refused("coordinator", &config, &refusal).await?;
        let high = broker.kafka.high_watermark_if_exists(&topic).await?;
        ensure!(
            high == Some(0),
            "{topic}: the refused agent published (high watermark {high:?})"
        );
    }
    Ok(())
}

#[tokio::test]
async fn kafka_topic_permissions_refused() -> Result<()> {
    let (broker, pair) = tokio::join!(SecureKafka::start_with_acls(), Pair::start());
    let (broker, pair) = (broker.context("broker")?, pair?);
    fill_source(&pair.src).await?;
    let password = broker.password(LIMITED_USER)?;
    let sasl = broker.sasl_bootstrap()?;
    let safe: &[(&str, &str)] = &[("unclean.leader.election.enable", "false")];
    // May see the topic and write to it, but not read its settings.
    create_topic(&broker, "acl.src", 1, safe).await?;
    broker
        .allow(LIMITED_USER, &["Describe", "Write", "Read"], "acl.src")
        .await?;
    // No ACL at all.
    create_topic(&broker, "deny.src", 1, safe).await?;
    let file = pair.dir.path().join("kafka-password");
    std::fs::write(&file, password)?;
    let typed = format!("sasl_password_file = {}\n", toml_path(&file));
    let cases: [(&str, Mentions<'_>); 2] = [
        ("acl", &[&["DescribeConfigs"], &["authoriz"]]),
        ("deny", &[&["not authorized"], &["deny.src"]]),
    ];
    for (prefix, mentions) in cases {
        let lines = sasl_lines_as(prefix, &broker, LIMITED_USER, &typed, "");
        let config = write_config(&pair, &sasl, &lines)?;
        let refusal = Refusal {
            mentions,
            never: &[password],
        };
        expect_refused("agent", &config, &refusal).await?;
        expect_refused("coordinator", &config, &refusal).await?;
        let topic = format!("{prefix}.src");
        let high = broker.kafka.high_watermark_if_exists(&topic).await?;
        ensure!(
            high == Some(0),
            "{topic}: published (high watermark {high:?})"
        );
    }
    Ok(())
}
