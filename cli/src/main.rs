//! `fleetsync`: one binary, subcommands. Errors are rendered once, here, as one line.
//!
//! Only argument parsing and dispatch live here: every command is library code (see
//! `lib.rs` for the layering).

use fleetsync::{
    api, backup_cmd, conflicts, definitions, diff_cmd, exit, group, health_cmd, kafka_cmds,
    manager, migrate_cmd, preflight, remote, run, status, tail, token_cmd, transfer_cmd,
};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fleetsync",
    version,
    about = "Keep fleets of MySQL/MariaDB servers in sync by change data capture"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Run the command against a coordinator's API instead (`http[s]://HOST:PORT`): `status`,
    /// `health`, `diff schema|data`, `backup create|verify|restore`.
    #[arg(long, global = true, env = "FLEETSYNC_REMOTE", value_name = "URL")]
    remote: Option<String>,
    /// API token (for `--remote` and `sync pause|resume|cancel`).
    #[arg(long, global = true, env = "FLEETSYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA that signed the API's certificate (with `[api] tls_cert`).
    #[arg(long, global = true, env = "FLEETSYNC_API_CA", value_name = "FILE")]
    api_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every configured sync (agents and coordinator in one process, embedded bus).
    Run {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// Address of the `/metrics` and `/health` listener (overrides `[metrics] listen` and
        /// FLEETSYNC_METRICS_LISTEN): several processes on one machine each need their own.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Print each sync's source position, applied position per target, lag and state.
    Status {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and every server (connectivity, binlog settings, privileges)
    /// without changing anything.
    Check {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Make the next `run` take a fresh initial snapshot for a sync's targets (for example
    /// after the source purged the binlog a target still needed). Target tables of the sync
    /// are reloaded from the source.
    Resnapshot {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        /// Only this target (default: every target of the sync).
        #[arg(long)]
        target: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// The sync manager: run a sync once, or pause/resume/cancel a running one.
    Sync {
        #[command(subcommand)]
        action: manager::SyncAction,
    },
    /// Print a server's row changes as Debezium-shaped JSON lines (read-only).
    Tail {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        server: String,
        /// Start position `file:pos[@gtid]` (default: the server's current end).
        #[arg(long)]
        from: Option<String>,
        /// `schema.table` regexes (default: every table).
        #[arg(long)]
        include: Vec<String>,
    },
    /// Run the agent(s) of the configured source servers, publishing to Kafka (`[bus] kind = "kafka"`).
    Agent {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// Only this server's agent (default: every server that is a sync's source).
        #[arg(long)]
        server: Option<String>,
        /// With no checkpoint, stream from this position (`file:pos[@gtid]`) instead of taking
        /// an initial snapshot (the targets must already hold the data as of that position).
        #[arg(long)]
        start_at: Option<String>,
        /// Address of the `/metrics` and `/health` listener (overrides `[metrics] listen` and
        /// FLEETSYNC_METRICS_LISTEN): several processes on one machine each need their own.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Run the coordinator: consume from Kafka and apply to every target.
    Coordinator {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// Address of the `/metrics` and `/health` listener (overrides `[metrics] listen` and
        /// FLEETSYNC_METRICS_LISTEN): several processes on one machine each need their own.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Bidirectional groups: readmit a member evicted from tombstone GC.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// The manual conflict queue (`conflict = "manual"`): list and resolve parked conflicts.
    Conflicts {
        #[command(subcommand)]
        command: ConflictsCommand,
    },
    /// Backups: create, list, verify, restore (also to a point in time), prune.
    Backup {
        #[command(subcommand)]
        command: backup_cmd::BackupCommand,
    },
    /// Export a server's tables to SQL, JSON or CSV files.
    Export(transfer_cmd::ExportArgs),
    /// Import SQL, JSON or CSV files (as written by `export`) into a server.
    Import(transfer_cmd::ImportArgs),
    /// Compare two servers, databases or schema files (exit 0 equal, 1 different, 2 error).
    Diff {
        #[command(subcommand)]
        command: diff_cmd::DiffCommand,
    },
    /// Schema migrations: generate (verified on scratch copies), apply, status, rollback;
    /// versioned files: new, status --dir, up (fleet rollout), undo, repair, baseline.
    Migrate {
        #[command(subcommand)]
        command: migrate_cmd::MigrateCommand,
    },
    /// Health checks of a server: pass/warn/fail per check with evidence; exit 0 healthy,
    /// 1 degraded, 2 critical, 3 error.
    Health(health_cmd::HealthArgs),
    /// API bearer tokens: create (printed once), list, revoke.
    Token {
        #[command(subcommand)]
        command: token_cmd::TokenCommand,
    },
    /// Developer tools of the API (hidden): `api openapi` prints the OpenAPI document, from
    /// which the dashboard's typed client is generated (web/scripts/openapi.mjs).
    #[command(hide = true)]
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
}

#[derive(Subcommand)]
enum ApiCommand {
    /// Print the OpenAPI document of `/api/v1` (the same as `GET /api/v1/openapi.json`).
    Openapi,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Readmit a member evicted from its group's tombstone GC, after it was re-cloned from
    /// another member (see docs/bidirectional.md): sets its position of that member's stream
    /// to the clone's, the others' positions of its stream to its binlog end now, and clears
    /// the eviction on every member. Every member must be reachable; stop the member's
    /// writers until this is done.
    Readmit {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// The group's name.
        #[arg(long)]
        sync: String,
        /// The evicted member.
        #[arg(long)]
        member: String,
        /// The member it was re-cloned from.
        #[arg(long)]
        from: String,
        /// The binlog position (`file:pos`) of `--from` that the clone is consistent with
        /// (e.g. from `mariadb-dump --master-data`).
        #[arg(long)]
        position: String,
    },
}

#[derive(Subcommand)]
enum ConflictsCommand {
    /// List the open conflicts of every target.
    List {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Resolve a conflict: `--take` the incoming version's origin server (apply it on the
    /// target) or the target (keep the local row).
    Resolve {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// The conflict's id (as listed).
        id: u64,
        #[arg(long)]
        take: String,
        /// The target holding the conflict, when the id is open on several targets.
        #[arg(long)]
        target: Option<String>,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// `fleetsync ... --json | head` closes stdout early: end quietly with the shell's code for
/// SIGPIPE (141) instead of a panic and a backtrace. Rust ignores SIGPIPE so that writes to a
/// closed socket are errors rather than a silent death; only a print to stdout gets here.
fn quiet_broken_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_stdout();
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let api_args = api::client::ApiArgs {
        token: cli.token.clone(),
        api_ca: cli.api_ca.clone(),
    };
    let remote = match &cli.remote {
        Some(url) => match remote::Remote::new(url, &api_args) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {}", exit::one_line(e.as_ref()));
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let result = runtime.block_on(async move {
        if let Some(r) = &remote {
            if !matches!(
                cli.command,
                Command::Status { .. }
                    | Command::Health(_)
                    | Command::Diff { .. }
                    | Command::Backup { .. }
                    | Command::Export(_)
                    | Command::Import(_)
                    | Command::Migrate { .. }
            ) {
                return Err(anyhow::anyhow!(
                    "--remote {}: only status, health, diff schema|data, backup create|verify|restore|prune, export, import and migrate generate|rollback|up|undo run against a coordinator",
                    r.base()
                ));
            }
        }
        match cli.command {
            Command::Run {
                config,
                metrics_listen,
            } => run::run(&config, metrics_listen.as_deref()).await,
            Command::Status { config, json } => {
                status::status(config.as_deref(), json, remote).await
            }
            Command::Check { config } => preflight::check(&config).await,
            Command::Resnapshot {
                config,
                sync,
                target,
                yes,
            } => status::resnapshot(&config, &sync, target.as_deref(), yes).await,
            Command::Sync { action } => manager::sync(action, api_args).await,
            Command::Tail {
                config,
                server,
                from,
                include,
            } => tail::tail(&config, &server, from.as_deref(), &include).await,
            Command::Agent {
                config,
                server,
                start_at,
                metrics_listen,
            } => {
                let listen = metrics_listen.as_deref();
                kafka_cmds::agent(&config, server.as_deref(), start_at.as_deref(), listen).await
            }
            Command::Coordinator {
                config,
                metrics_listen,
            } => kafka_cmds::coordinator(&config, metrics_listen.as_deref()).await,
            Command::Group {
                command:
                    GroupCommand::Readmit {
                        config,
                        sync,
                        member,
                        from,
                        position,
                    },
            } => group::readmit(&config, &sync, &member, &from, &position).await,
            Command::Conflicts {
                command: ConflictsCommand::List { config, json },
            } => conflicts::list(&config, json).await,
            Command::Conflicts {
                command:
                    ConflictsCommand::Resolve {
                        config,
                        id,
                        take,
                        target,
                    },
            } => conflicts::resolve(&config, id, &take, target.as_deref()).await,
            Command::Backup { command } => backup_cmd::run(command, remote).await,
            Command::Export(args) => transfer_cmd::export(args, remote).await,
            Command::Import(args) => transfer_cmd::import(args, remote).await,
            Command::Diff { command } => diff_cmd::run(command, remote).await,
            Command::Migrate { command } => migrate_cmd::run(command, remote).await,
            Command::Health(args) => health_cmd::run(args, remote).await,
            Command::Token { command } => token_cmd::run(command).await,
            Command::Api {
                command: ApiCommand::Openapi,
            } => fleetsync::api::dash::openapi_document().map(|doc| println!("{doc}")),
        }
    });
    // Shut the runtime down without waiting for blocking tasks (a stuck close must not hang exit).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A command that printed its own outcome and chose its exit code (diff: 1 = different,
        // health: 1 degraded, 2 critical).
        Err(e) if e.downcast_ref::<exit::Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<exit::Exit>().map_or(1, |x| x.0))
        }
        // Preflight's problems: all of them, one line each.
        Err(e) if e.downcast_ref::<definitions::Problems>().is_some() => {
            let lines = e.downcast_ref::<definitions::Problems>().map(|p| &p.0);
            for line in lines.into_iter().flatten() {
                eprintln!("error: {}", line.replace('\n', " "));
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            let msg = exit::one_line(e.as_ref());
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
