//! Files at rest (issue 9, item 6): what fleetsync writes to disk is its owner's only. A
//! `fleetsync run` with a binlog archive, a backup, an export and a data-diff repair script
//! are made under a umask that would leave them readable by everyone (the test process's,
//! usually 022); every directory they create must be 0700 and every file 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fleetsync::toml_str;
use fleetsync_tests::{fleetsync_cmd, wait_until, ConfigBuilder, Fleetsync};

use crate::backup::ok;
use crate::support::{Pair, STOP_TIMEOUT, SYNC_TIMEOUT};

const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Every path under `root` (included) whose mode is not 0700 (dirs) or 0600 (files).
fn loose_modes(root: &Path) -> Result<Vec<String>> {
    let mut loose = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).with_context(|| p.display().to_string())?;
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if (meta.is_dir() || meta.is_file()) && mode != want {
            loose.push(format!("{} {mode:o}", p.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(loose)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_rest_are_owner_only() -> Result<()> {
    let pair = Pair::start().await?;
    pair.src
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO app.t VALUES (1, 'a'), (2, 'b')")
        .await?;
    let backups = pair.dir.path().join("backups");
    let text = ConfigBuilder::new(&pair.state_dir())
        .server("src", &pair.src.url_root())
        .server("dst", &pair.dst.url_root())
        .sync("s1", "src", &["dst"], &["app\\..*"], &[])
        .raw(&format!(
            "\n[backup]\ndir = {}\narchive_binlog = true\n",
            toml_str(&backups.to_string_lossy())
        ))
        .build();
    let config = Fleetsync::write_config(pair.dir.path(), &text)?;
    let cfg = config.to_string_lossy().into_owned();
    let mut run = Fleetsync::run(&config)?;
    run.wait_synced(&pair.src, &pair.dst, "app", SYNC_TIMEOUT)
        .await?;
    let archive = backups.join("binlog-archive");
    wait_until(ARCHIVE_TIMEOUT, "archive files", || async {
        ensure!(loose_modes(&archive).is_ok(), "no archive yet");
        Ok(())
    })
    .await?;
    run.stop(STOP_TIMEOUT).await?;

    ok(&["backup", "create", "--config", &cfg, "--server", "src"]).await?;
    let export: PathBuf = pair.dir.path().join("export");
    for format in ["sql", "csv"] {
        let out = export.join(format);
        ok(&[
            "export",
            "--config",
            &cfg,
            "--server",
            "src",
            "--format",
            format,
            "--out",
            &out.to_string_lossy(),
        ])
        .await?;
    }
    // A repair script of a data diff (it holds row values).
    pair.dst
        .exec("UPDATE app.t SET v = 'x' WHERE id = 1")
        .await?;
    let repair = pair.dir.path().join("repair.sql");
    let _ = fleetsync_cmd(&[
        "diff",
        "data",
        "--config",
        &cfg,
        "src/app",
        "dst/app",
        "--repair-sql",
        &repair.to_string_lossy(),
    ])
    .await?;

    let mut loose = Vec::new();
    for root in [pair.state_dir(), backups, export] {
        ensure!(root.exists(), "{} was not created", root.display());
        loose.extend(loose_modes(&root)?);
    }
    ensure!(repair.exists(), "diff data wrote no repair script");
    loose.extend(loose_modes(&repair)?);
    ensure!(loose.is_empty(), "not owner-only:\n{}", loose.join("\n"));
    Ok(())
}
