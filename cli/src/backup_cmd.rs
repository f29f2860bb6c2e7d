//! `fleetsync backup ...`: the CLI side of the agent's backup tasks (fleetsync_agent::backup).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of a server.
    Create {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        server: String,
        /// `schema.table` regexes to include (default: every table of every user database).
        #[arg(long)]
        include: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the backups in `[backup] dir`.
    List {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-read every file of a backup: checksums, decryption, decompression.
    Verify {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        id: String,
    },
    /// Restore a backup (verified first), optionally to a point in time.
    Restore {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        id: String,
        #[arg(long)]
        to_server: String,
        /// `OLD=NEW`: restore database OLD as NEW (repeatable).
        #[arg(long)]
        rename_db: Vec<String>,
        /// Replay the archived binlog up to this time (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC).
        #[arg(long, conflicts_with = "to_gtid")]
        to_time: Option<String>,
        /// Replay the archived binlog up to and including this GTID position (`D-S-N[,...]`).
        #[arg(long)]
        to_gtid: Option<String>,
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask before dropping tables that exist on the target.
        #[arg(long)]
        yes: bool,
    },
    /// Archive a server's binlog continuously for point-in-time recovery (runs until
    /// stopped); `status` and `replay` read the archive.
    Archive(crate::archive_cmd::ArchiveArgs),
    /// Delete the backups outside `[backup] retention`.
    Prune {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: BackupCommand) -> Result<()> {
    if let BackupCommand::Archive(args) = command {
        return crate::archive_cmd::run(args).await;
    }
    let _ = command;
    bail!("backups are not implemented yet")
}
