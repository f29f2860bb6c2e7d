//! Pausing for replication lag and server load.
//!
//! Before a checksum query, at most once a second, the session reads
//! `SHOW SLAVE STATUS` (`Seconds_Behind_Master` of every replication connection, when the
//! server is a replica) and `Threads_running`; while either is above its limit it logs
//! "data diff paused" and waits a second (the snapshot stays open). A replica whose SQL
//! thread is stopped reports NULL lag: that is logged once and does not pause (the lag would
//! never come down).

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::{err, Session};
use crate::SourceError;

/// How often the limits are read.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one pause waits before reading the limits again.
const PAUSE: Duration = Duration::from_secs(1);

impl Session {
    /// Runs the checks once at start, so a missing privilege fails before any work.
    pub(super) async fn load_check(&mut self) -> Result<(), SourceError> {
        if self.throttle.max_lag.is_some() {
            self.lag().await?;
        }
        if self.throttle.max_threads_running.is_some() {
            self.threads_running().await?;
        }
        Ok(())
    }

    /// Waits while the server is above a limit.
    pub(super) async fn throttle(&mut self) -> Result<(), SourceError> {
        if self.last_check.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return Ok(());
        }
        loop {
            self.last_check = Some(Instant::now());
            let mut reason = None;
            if let Some(max) = self.throttle.max_lag {
                if let Some(lag) = self.lag().await? {
                    if lag > max {
                        reason = Some(format!("replication lag {lag} s > --max-lag {max}"));
                    }
                }
            }
            if let Some(max) = self.throttle.max_threads_running {
                let running = self.threads_running().await?;
                if running > max {
                    reason = Some(format!(
                        "Threads_running {running} > --max-threads-running {max}"
                    ));
                }
            }
            let Some(reason) = reason else {
                return Ok(());
            };
            self.pauses += 1;
            tracing::warn!(server = %self.server, %reason, "data diff paused");
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// The largest `Seconds_Behind_Master` over the server's replication connections;
    /// `None` when it is not a replica or the lag is unknown (SQL thread stopped).
    async fn lag(&mut self) -> Result<Option<u64>, SourceError> {
        let server = self.server.clone();
        let rows: Vec<mysql_async::Row> =
            self.conn
                .query("SHOW ALL SLAVES STATUS")
                .await
                .map_err(err(
                    &server,
                    "checking replication lag (SHOW ALL SLAVES STATUS)",
                ))?;
        let mut max = None;
        for row in rows {
            let lag: Option<Option<u64>> =
                row.get_opt("Seconds_Behind_Master").and_then(Result::ok);
            match lag.flatten() {
                Some(l) => max = Some(max.map_or(l, |m: u64| m.max(l))),
                None => {
                    tracing::warn!(server = %self.server, "a replication connection reports no lag (SQL thread stopped?): not pausing for it")
                }
            }
        }
        Ok(max)
    }

    async fn threads_running(&mut self) -> Result<u64, SourceError> {
        let server = self.server.clone();
        let row: Option<(String, String)> = self
            .conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            .await
            .map_err(err(&server, "checking server load (Threads_running)"))?;
        Ok(row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0))
    }
}
