//! `fleetsync conflicts list` and `fleetsync conflicts resolve`: the manual-strategy queue,
//! `fleetsync.conflicts` on each target, through [`crate::service::conflicts`] (which the
//! API's `/api/v1/conflicts` calls too).
//!
//! Conflict ids are per target: `resolve ID` looks the id up on every target and needs
//! `--target` only when two targets hold an open conflict with it. `--take <origin>` applies
//! the parked incoming version on the target; `--take <target>` keeps the local row.

use std::path::Path;

use anyhow::{bail, Result};

use crate::service::conflicts::{self as service, ConflictFilter, Take};

pub async fn list(path: &Path, as_json: bool) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let all = service::list(&config, &ConflictFilter::default()).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no open conflicts");
    }
    for c in &all {
        println!(
            "{} #{} sync {} {}.{} key {} from {} at {} (detected {})\n  incoming: {}\n  local:    {}",
            c.target,
            c.id,
            c.sync,
            c.schema,
            c.table,
            c.key,
            c.origin,
            c.source_position,
            c.detected_at,
            c.incoming,
            c.local,
        );
    }
    Ok(())
}

pub async fn resolve(path: &Path, id: u64, take: &str, only: Option<&str>) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let found = service::find_open(&config, id, only).await?;
    let (target, origin) = match found.as_slice() {
        [] => bail!("no open conflict with id {id}"),
        [one] => (one.target.clone(), one.origin.clone()),
        _ => bail!(
            "open conflict {id} exists on several targets ({}): add --target",
            found
                .iter()
                .map(|f| f.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let take = if take == origin {
        Take::Incoming
    } else if take == target {
        Take::Local
    } else {
        bail!("--take must be {origin:?} (the incoming version) or {target:?} (the local one)");
    };
    let done = service::resolve(&config, &target, id, take, false).await?;
    println!("conflict {id} on {target}: {}", done.resolution);
    Ok(())
}
