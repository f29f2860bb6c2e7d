//! `fleetsync token create|list|revoke`: the API's bearer tokens (see [`crate::api::tokens`]).
//! Works on the store under `state_dir` directly, so it needs the config file and access to
//! `state_dir`, not a running process; a running API sees the change at its next request.
//! With `[bus] kind = "kafka"` the store is the brokers' tokens topic (and the audit topic),
//! shared by every `fleetsync coordinator` replica, which sees the change within about a
//! second ([`crate::api::kstate`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use clap::Subcommand;

use crate::api::roles::{Role, ROLE_NAMES};
use crate::api::tokens;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        /// A name for the token (who or what uses it), shown in the audit log.
        #[arg(long)]
        name: String,
        /// owner, admin, operator or viewer.
        #[arg(long)]
        role: String,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List the tokens (name, role, state, dates; never the tokens).
    List {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Revoke the active token NAME (at once, also in a running process).
    Revoke {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

/// Where the tokens (and the audit entries of their changes) are kept.
enum Store {
    Files(PathBuf),
    Kafka(Arc<crate::api::kstate::KafkaState>),
}

impl Store {
    async fn of(config: &std::path::Path) -> Result<Store> {
        let config = fleetsync_config::Config::load(config)?;
        Ok(if config.bus.kind == fleetsync_config::BusKind::Kafka {
            Store::Kafka(crate::api::kstate::KafkaState::open_for_tokens(&config.bus).await?)
        } else {
            Store::Files(config.state_dir)
        })
    }

    fn load(&self) -> Result<Vec<tokens::TokenRecord>> {
        Ok(match self {
            Store::Files(dir) => tokens::load(dir)?,
            Store::Kafka(k) => k.tokens(),
        })
    }

    /// Token management is audited like API calls: action `token_create`/`token_revoke`,
    /// client `local-cli` (no token: whoever can write the store).
    async fn audit(&self, action: &str, parameters: serde_json::Value) -> Result<()> {
        let entry = crate::api::audit::AuditEntry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            token: None,
            role: None,
            client: "local-cli".into(),
            method: "CLI".into(),
            action: action.into(),
            resource: "tokens".into(),
            parameters,
            outcome: "ok".into(),
            status: 0,
            job_id: None,
        };
        match self {
            Store::Files(dir) => crate::api::audit::AuditLog::open(dir)?.record(&entry)?,
            Store::Kafka(k) => k.append_audit(&entry).await?,
        }
        Ok(())
    }
}

pub async fn run(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            config,
            name,
            role,
            expires_days,
        } => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow!("--role {role:?}: must be {ROLE_NAMES}"))?;
            let store = Store::of(&config).await?;
            let (token, record) = match &store {
                Store::Files(dir) => tokens::create(dir, &name, role, expires_days)?,
                Store::Kafka(k) => tokens::create_in(k, &name, role, expires_days).await?,
            };
            let params = serde_json::json!({"name": name, "role": role, "expires": record.expires});
            store.audit("token_create", params).await?;
            let expires = record.expires.map_or("never expires".to_string(), |e| {
                format!("expires {}", e.to_rfc3339())
            });
            eprintln!(
                "token {name} ({}, {expires}) created; it is shown only this once:",
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { config, json } => {
            let list = Store::of(&config).await?.load()?;
            let now = chrono::Utc::now();
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "role": t.role,
                            "state": t.state(now),
                            "created": t.created,
                            "expires": t.expires,
                            "revoked": t.revoked,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<9} {:<8} {:<26} EXPIRES",
                    "NAME", "ROLE", "STATE", "CREATED"
                );
                for t in &list {
                    println!(
                        "{:<24} {:<9} {:<8} {:<26} {}",
                        t.name,
                        t.role.as_str(),
                        t.state(now),
                        t.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        t.expires.map_or("never".to_string(), |e| e
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    );
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { config, name } => {
            let store = Store::of(&config).await?;
            match &store {
                Store::Files(dir) => tokens::revoke(dir, &name)?,
                Store::Kafka(k) => tokens::revoke_in(k, &name).await?,
            };
            store
                .audit("token_revoke", serde_json::json!({ "name": name }))
                .await?;
            println!("token {name} revoked");
            Ok(())
        }
    }
}
