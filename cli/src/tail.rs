//! `fleetsync tail`: prints a server's row changes as Debezium-shaped JSON lines, from now or
//! from a given position. Read-only; handy to see exactly what fleetsync decodes.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Result};
use fleetsync_agent::publish::Publisher;
use fleetsync_agent::source::{self, stream::stream, SourceSpec};
use fleetsync_agent::SourceError;
use fleetsync_config::TableFilter;
use fleetsync_proto::{codec, Position, Transaction};
use tokio_util::sync::CancellationToken;

use crate::opts::server_opts;

struct Printer;

impl Publisher for Printer {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        let mut out = std::io::stdout().lock();
        if let Some(ddl) = &txn.ddl {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"ddl": ddl.statement, "schema": ddl.schema, "position": txn.position.to_string()})
            );
        }
        for record in codec::transaction_to_json(&txn) {
            let _ = writeln!(out, "{record}");
        }
        Ok(())
    }
}

pub async fn tail(path: &Path, server: &str, from: Option<&str>, include: &[String]) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let s = config
        .server(server)
        .ok_or_else(|| anyhow!("no server named {server:?}"))?;
    let spec = SourceSpec {
        name: s.name.clone(),
        opts: server_opts(s)?,
        replica_id: s.replica_id("tail"),
        filter: TableFilter::new(include, &[]).map_err(|(_, e)| anyhow!("--include: {e}"))?,
        sync: "tail".into(),
        snapshot_chunk_rows: 1,
        include_marked: false,
        until: None,
    };
    let mut conn = source::connect(&spec).await?;
    let info = source::preflight(&mut conn, &spec).await?;
    let start = match from {
        Some(p) => p.parse::<Position>().map_err(|e| anyhow!("--from: {e}"))?,
        None => source::current_position(&mut conn, &spec.name).await?,
    };
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        c2.cancel();
    });
    stream(&spec, &info, start, &mut Printer, &cancel).await?;
    Ok(())
}
