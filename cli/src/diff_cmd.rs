//! `fleetsync diff schema SOURCE TARGET [--json]`, and the sides shared with `migrate`. The
//! diff itself is [`crate::service::schema_diff`] (shared with the API's `schema_diff` job;
//! `--remote` runs that job on a coordinator).
//!
//! A side is `SERVER` (every user database of a configured server, paired by name),
//! `SERVER/DATABASE` (one database) or a `.sql` schema file (one database; loaded into a
//! scratch database on `--scratch-server`, by default the other side's server, snapshotted
//! and dropped).
//!
//! Exit codes: 0 = equal, 1 = different, 2 = error (bad input, unreachable server).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use fleetsync_agent::inspect;
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::{exec, Hints, Pairing};
use fleetsync_proto::jobs::SchemaDiffReport;
use fleetsync_proto::schema_model::SchemaSnapshot;
use tokio_util::sync::CancellationToken;

use crate::opts::opts_by_name;
use crate::service::schema_diff::{self, SchemaDiffRequest};
use crate::service::{Quiet, Tracker};

pub use crate::exit::Exit;

/// Exit code of `diff` when the sides differ.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code of `diff` on an error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Subcommand)]
pub enum DiffCommand {
    /// Compare two schemas: exit 0 when equal, 1 when different, 2 on error.
    Schema(SchemaArgs),
    /// Compare two servers' rows by chunk checksums: exit 0 equal, 1 different, 3 tables
    /// skipped, 2 error.
    Data(crate::datadiff_cmd::DataArgs),
}

/// The rename hints and the scratch server, shared by `diff schema` and `migrate generate`.
#[derive(Args, Clone)]
pub struct SideArgs {
    /// `OLD=NEW`: table OLD on the target is table NEW on the source (repeatable).
    #[arg(long = "rename-table")]
    pub rename_table: Vec<String>,
    /// `TABLE.OLD=NEW`: column OLD on the target is column NEW of source table TABLE.
    #[arg(long = "rename-column")]
    pub rename_column: Vec<String>,
    /// Server that loads a `.sql` side into a scratch database (default: the other side's).
    #[arg(long)]
    pub scratch_server: Option<String>,
}

#[derive(Args)]
pub struct SchemaArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file.
    pub source: String,
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file.
    pub target: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sides: SideArgs,
}

/// One side of a diff or migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Server(String),
    Database(String, String),
    File(PathBuf),
}

impl Side {
    pub fn parse(arg: &str) -> Side {
        let path = Path::new(arg);
        if arg.ends_with(".sql") || path.is_file() {
            return Side::File(path.to_path_buf());
        }
        match arg.split_once('/') {
            Some((server, db)) => Side::Database(server.into(), db.into()),
            None => Side::Server(arg.into()),
        }
    }

    pub fn server(&self) -> Option<&str> {
        match self {
            Side::Server(s) | Side::Database(s, _) => Some(s),
            Side::File(_) => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Side::Server(s) => s.clone(),
            Side::Database(s, d) => format!("{s}/{d}"),
            Side::File(p) => p.display().to_string(),
        }
    }
}

/// How two sides pair their databases; a whole server against one database is an error.
pub fn pairing(a: &Side, b: &Side) -> Result<Pairing> {
    match (a, b) {
        (Side::Server(_), Side::Server(_)) => Ok(Pairing::ByName),
        (Side::Server(_), _) | (_, Side::Server(_)) => bail!(
            "{} is a whole server but {} is one database: name the server's database (SERVER/DATABASE)",
            if matches!(a, Side::Server(_)) { a.label() } else { b.label() },
            if matches!(a, Side::Server(_)) { b.label() } else { a.label() }
        ),
        _ => Ok(Pairing::Single),
    }
}

/// Connects to a configured server.
pub async fn connect(config: &Config, server: &str) -> Result<mysql_async::Conn> {
    let opts = opts_by_name(config, server)?;
    mysql_async::Conn::new(opts)
        .await
        .map_err(|e| anyhow!("server {server}: cannot connect: {e}"))
}

/// Snapshots a side. `other` is the other side (whose server loads a `.sql` file unless
/// `scratch` names one).
pub async fn snapshot(
    config: &Config,
    side: &Side,
    other: &Side,
    scratch: Option<&str>,
) -> Result<SchemaSnapshot> {
    match side {
        Side::Server(server) => {
            let mut conn = connect(config, server).await?;
            let dbs = inspect::user_databases(&mut conn).await?;
            let snap = inspect::snapshot(&mut conn, &dbs).await?;
            let _ = conn.disconnect().await;
            Ok(snap)
        }
        Side::Database(server, db) => {
            let mut conn = connect(config, server).await?;
            let snap = inspect::snapshot(&mut conn, std::slice::from_ref(db)).await?;
            let _ = conn.disconnect().await;
            if snap.databases.is_empty() {
                bail!("database {db} does not exist on server {server}");
            }
            Ok(snap)
        }
        Side::File(path) => {
            if !path.is_file() {
                bail!("schema file {} not found", path.display());
            }
            let server = scratch.or(other.server()).ok_or_else(|| {
                anyhow!(
                    "{}: a .sql side needs a server to load it into: pass --scratch-server NAME",
                    path.display()
                )
            })?;
            let mut conn = connect(config, server).await?;
            let db = exec::load_schema_file(&mut conn, path)
                .await
                .map_err(|e| anyhow!(e))?;
            let _ = conn.disconnect().await;
            Ok(SchemaSnapshot {
                databases: vec![db],
            })
        }
    }
}

/// Loads the config, parses the sides and hints, snapshots both sides.
pub struct Compared {
    pub config: Config,
    pub source: Side,
    pub target: Side,
    pub pairing: Pairing,
    pub hints: Hints,
    pub source_schema: SchemaSnapshot,
    pub target_schema: SchemaSnapshot,
}

/// Snapshots both sides (a loaded configuration, parsed sides) for a diff or a migration.
pub async fn compare_loaded(
    config: Config,
    source: Side,
    target: Side,
    sides: &SideArgs,
) -> Result<Compared> {
    for side in [&source, &target] {
        if let Some(server) = side.server() {
            if config.server(server).is_none() {
                bail!(
                    "no server named {server:?} in the config ({})",
                    side.label()
                );
            }
        }
    }
    let pairing = pairing(&source, &target)?;
    let hints = Hints::parse(&sides.rename_table, &sides.rename_column).map_err(|e| anyhow!(e))?;
    let scratch = sides.scratch_server.as_deref();
    let source_schema = snapshot(&config, &source, &target, scratch)
        .await
        .with_context(|| format!("source {}", source.label()))?;
    let target_schema = snapshot(&config, &target, &source, scratch)
        .await
        .with_context(|| format!("target {}", target.label()))?;
    Ok(Compared {
        config,
        source,
        target,
        pairing,
        hints,
        source_schema,
        target_schema,
    })
}

pub async fn run(cmd: DiffCommand, remote: Option<crate::remote::Remote>) -> Result<()> {
    let args = match cmd {
        DiffCommand::Schema(args) => args,
        DiffCommand::Data(args) => return crate::datadiff_cmd::run(args, remote).await,
    };
    let req = SchemaDiffRequest {
        source: args.source.clone(),
        target: args.target.clone(),
        rename_table: args.sides.rename_table.clone(),
        rename_column: args.sides.rename_column.clone(),
        scratch_server: args.sides.scratch_server.clone(),
    };
    if let Some(remote) = remote {
        return remote
            .run_job(&req, crate::service::pretty_or(args.json, print_report))
            .await;
    }
    match diff_schema(&args, &req).await {
        Ok(report) if report.equal => Ok(()),
        Ok(_) => Err(Exit(EXIT_DIFFERENT).into()),
        Err(e) => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
    }
}

/// Prints the diff.
async fn diff_schema(args: &SchemaArgs, req: &SchemaDiffRequest) -> Result<SchemaDiffReport> {
    let config = crate::opts::load_config(crate::opts::need_config(&args.config)?).await?;
    let tracker = Tracker::new(std::sync::Arc::new(Quiet));
    let report = schema_diff::run(&config, req, &tracker, &CancellationToken::new())
        .await
        .map_err(crate::service::into_anyhow)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report)
}

/// The text form of a schema diff report.
pub fn print_report(r: &SchemaDiffReport) {
    if r.equal {
        println!("schemas are equal: {} and {}", r.source, r.target);
        return;
    }
    println!(
        "{} difference(s) between {} (source) and {} (target):",
        r.differences.len(),
        r.source,
        r.target
    );
    for x in &r.differences {
        println!("  {x}");
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}
