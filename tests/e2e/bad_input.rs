//! Bad input that needs a running sync first: a stored position whose binlog the source has
//! since purged. The one-shot refusals (malformed configs, unreachable servers, wrong
//! passwords, missing privileges, binlog settings, include patterns matching no table) are
//! entries of the bad-input catalogue (`catalogue.rs`). Also: a reader that closes stdout early.

use std::time::Duration;

use anyhow::{ensure, Result};
use fleetsync_tests::{Fleetsync, Workload};

use crate::support::{expect_refusal, Pair, Refusal, STOP_TIMEOUT, SYNC_TIMEOUT};

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

/// A reader that closes the output early (`fleetsync ... --json | head`): the command ends
/// with the shell's SIGPIPE code, 141, and no panic or backtrace on stderr.
#[test]
fn stdout_closed_early_ends_quietly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(fleetsync_tests::fleetsync_bin())
        .args(["migrate", "new", "add_index", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Nobody reads: the first line printed meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(141),
        "exit {:?}, stderr: {stderr}",
        out.status.code()
    );
    ensure!(!stderr.contains("panicked"), "a panic on stderr: {stderr}");
    Ok(())
}
