//! Waiting on conditions by polling, never by fixed sleeps.
//!
//! A check returns `Ok(())` when the condition holds and an error saying why not otherwise;
//! on timeout the last reason is returned, so a failed wait tells what was still different.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::compare::diff_databases;
use crate::mariadb::MariaDb;

/// First poll interval; it doubles up to [`MAX_POLL`] so long waits don't hammer the servers.
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(1);

/// Polls `check` until it returns `Ok(())` or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut poll = FIRST_POLL;
    loop {
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}; last: {last:#}"
            ));
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(MAX_POLL);
    }
}

/// Polls until every base table of `db` on `source` equals the same table on `target` row by
/// row (see [`crate::compare`]); on timeout returns the last diff.
pub async fn wait_synced(
    source: &MariaDb,
    target: &MariaDb,
    db: &str,
    timeout: Duration,
) -> Result<()> {
    wait_until(
        timeout,
        &format!("{db} to be equal on both servers"),
        || async {
            match diff_databases(source, target, db, db).await? {
                None => Ok(()),
                Some(diff) => Err(anyhow!(diff)),
            }
        },
    )
    .await
}
