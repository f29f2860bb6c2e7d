//! Bad input: `fleetsync run` must exit non-zero with a one-line error on stderr that names the
//! problem, and write nothing on the target (not even its `fleetsync` progress database).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::{simple_config, ConfigBuilder, Fleetsync, MariaDb, Workload};

use crate::support::{
    assert_target_untouched, dead_port, expect_refusal, Pair, Refusal, STOP_TIMEOUT, SYNC_TIMEOUT,
};

/// A source with one small table, so the include pattern matches.
async fn seed_source(src: &MariaDb) -> Result<()> {
    src.exec(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10)); \
              INSERT INTO app.t VALUES (1, 'a'), (2, 'b');",
    )
    .await
}

/// Runs the usual config with `source_url` and checks the refusal and the untouched target.
async fn refuse_source(pair: &Pair, source_url: &str, refusal: Refusal<'_>) -> Result<()> {
    let before = pair.dst.user_databases().await?;
    let config = pair.config_with_source_url(source_url, &["app\\..*"])?;
    expect_refusal(&config, &refusal).await?;
    assert_target_untouched(&pair.dst, &before).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unreachable_server() -> Result<()> {
    let pair = Pair::start().await?;
    let port = dead_port()?.to_string();
    let url = format!("mysql://root@127.0.0.1:{port}");
    let mentions: &[&[&str]] = &[&["src", &port], &["connect", "refused", "unreachable"]];
    refuse_source(
        &pair,
        &url,
        Refusal {
            mentions,
            never: &[],
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_wrong_password() -> Result<()> {
    let pair = Pair::start().await?;
    seed_source(&pair.src).await?;
    let grants = ["SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.*"];
    pair.src
        .create_user("fsuser", "right-pass", &grants)
        .await?;
    let url = pair.src.url_user("fsuser", "wrong-pass");
    let mentions: &[&[&str]] = &[
        &["src", "fsuser"],
        &["access denied", "password", "authentication"],
    ];
    let never: &[&str] = &["wrong-pass", "right-pass"];
    refuse_source(&pair, &url, Refusal { mentions, never }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_missing_privilege() -> Result<()> {
    let pair = Pair::start().await?;
    seed_source(&pair.src).await?;
    pair.src
        .create_user("reader", "reader-pass-1", &["SELECT ON *.*"])
        .await?;
    let url = pair.src.url_user("reader", "reader-pass-1");
    let mentions: &[&[&str]] = &[&[
        "replication slave",
        "binlog monitor",
        "replication client",
        "privilege",
    ]];
    refuse_source(
        &pair,
        &url,
        Refusal {
            mentions,
            never: &["reader-pass-1"],
        },
    )
    .await
}

/// A source started with `server_args` (a binlog setting fleetsync cannot work with): the run
/// must be refused with a message mentioning `mentions`, and nothing written.
async fn refuse_misconfigured_source(server_args: &[&str], mentions: &[&[&str]]) -> Result<()> {
    let pair = Pair::start_with(server_args, &[]).await?;
    seed_source(&pair.src).await?;
    let url = pair.src.url_root();
    refuse_source(
        &pair,
        &url,
        Refusal {
            mentions,
            never: &[],
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_binlog_off() -> Result<()> {
    refuse_misconfigured_source(&["--skip-log-bin"], &[&["log_bin", "binary log", "binlog"]]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_binlog_format_statement() -> Result<()> {
    refuse_misconfigured_source(
        &["--binlog-format=STATEMENT"],
        &[&["binlog_format"], &["row"]],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_row_metadata_minimal() -> Result<()> {
    refuse_misconfigured_source(
        &["--binlog-row-metadata=MINIMAL"],
        &[&["binlog_row_metadata"], &["full"]],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unknown_table() -> Result<()> {
    let pair = Pair::start().await?;
    seed_source(&pair.src).await?;
    let before = pair.dst.user_databases().await?;
    let config = pair.config(&["app\\.no_such_table"])?;
    let mentions: &[&[&str]] = &[&["no_such_table"]];
    expect_refusal(
        &config,
        &Refusal {
            mentions,
            never: &[],
        },
    )
    .await?;
    assert_target_untouched(&pair.dst, &before).await
}

/// Malformed configs, each in a fresh file against the same (untouched) servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_malformed_config() -> Result<()> {
    let pair = Pair::start().await?;
    seed_source(&pair.src).await?;
    let before = pair.dst.user_databases().await?;
    let state = pair.state_dir();
    let (src_url, dst_url) = (pair.src.url_root(), pair.dst.url_root());
    let good = simple_config(&state, &src_url, &dst_url, &["app\\..*"]);

    let unknown_key = ConfigBuilder::new(&state)
        .server_with("src", &src_url, &[("passwrod", "\"secret\"")])
        .server("dst", &dst_url)
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .build();
    let invalid_toml = good.replacen("[[syncs]]", "[[syncs]\nname = \"unterminated", 1);
    let unknown_server = ConfigBuilder::new(&state)
        .server("src", &src_url)
        .server("dst", &dst_url)
        .sync("s1", "src", &["nosuchserver"], &["app\\..*"], &[])
        .build();
    let cases: [(&str, String, &[&[&str]]); 3] = [
        ("unknown key", unknown_key, &[&["passwrod"]]),
        (
            "invalid TOML",
            invalid_toml,
            &[&["toml", "parse", "line", "expected"]],
        ),
        ("unknown server", unknown_server, &[&["nosuchserver"]]),
    ];
    for (name, text, mentions) in cases {
        let dir = tempfile::Builder::new()
            .prefix("fleetsync-badcfg-")
            .tempdir()?;
        let config: PathBuf = Fleetsync::write_config(dir.path(), &text)?;
        expect_refusal(
            &config,
            &Refusal {
                mentions,
                never: &[],
            },
        )
        .await
        .with_context(|| name.to_string())?;
    }
    assert_target_untouched(&pair.dst, &before).await
}

/// A stored position whose binlog has been purged: fleetsync must refuse and say how to take
/// a new snapshot, rather than silently skipping the lost changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_purged_position() -> Result<()> {
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    let mut w = Workload::new(3);
    src.exec(&format!(
        "CREATE DATABASE app; {};",
        w.create_table_sql("app", "t")
    ))
    .await?;
    w.run(&src.pool(), "app", "t", 200).await?;
    let config = pair.config(&["app\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced(src, dst, "app", SYNC_TIMEOUT).await?;
    fs.stop(STOP_TIMEOUT).await?;

    // Changes the target never saw, then their binlog goes.
    w.run(&src.pool(), "app", "t", 200).await?;
    src.purge_binlogs(Duration::from_secs(30)).await?;

    let target_rows = dst.query_rows("SELECT * FROM app.t ORDER BY id").await?;
    let mentions: &[&[&str]] = &[&["purged"], &["snapshot"]];
    expect_refusal(
        &config,
        &Refusal {
            mentions,
            never: &[],
        },
    )
    .await?;
    let after = dst.query_rows("SELECT * FROM app.t ORDER BY id").await?;
    ensure!(
        after == target_rows,
        "the target's rows changed although the run was refused"
    );
    Ok(())
}
