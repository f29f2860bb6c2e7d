//! The random writer of the convergence tests: inserts, updates, deletes and re-inserts
//! shared keys on one member, recording every write with its rank (read back in the write's
//! transaction).

use super::*;

/// One recorded write: key, value (`None`: a delete), its rank, the writing server.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) key: i32,
    pub(super) val: Option<String>,
    pub(super) rank: Rank,
    pub(super) server: &'static str,
}

/// A write's rank, ordered as docs/bidirectional.md says: (primary, NULL lowest; version;
/// origin server id). Written here from the documentation, not taken from fleetsync's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    pub(super) primary: Option<i128>,
    pub(super) version: u64,
    pub(super) origin: u32,
}

/// `DECIMAL(65,6)` text as micro-units.
pub(super) fn micros(text: &str) -> Result<i128> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = format!("{frac:0<6}");
    let v: i128 = int.parse::<i128>()? * 1_000_000 + frac[..6].parse::<i128>()?;
    Ok(if neg { -v } else { v })
}

pub(super) type VersionRow = (Option<String>, Option<u64>, Option<u32>);

pub(super) fn rank_of(row: Option<VersionRow>) -> Result<Rank> {
    let (primary, version, origin) = row.context("no version for a committed write")?;
    let (Some(version), Some(origin)) = (version, origin) else {
        anyhow::bail!("a committed write without a version (no trigger ran)");
    };
    let primary = match primary {
        Some(p) => Some(micros(&p).with_context(|| format!("rank {p:?}"))?),
        None => None,
    };
    Ok(Rank {
        primary,
        version,
        origin,
    })
}

/// A lost connection (the member's server was killed), not a refusal by the server.
pub(super) fn lost_connection(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<mysql_async::Error>(),
        Some(e) if !matches!(e, mysql_async::Error::Server(_))
    )
}

/// One write in its own transaction: `Some` when it committed and changed a row. With
/// `journal`, the write also records that number in `journal.w` (outside the group) in the
/// same transaction. `pending` holds the write from just before its COMMIT: when the
/// connection is lost there, whether it committed is known only from the journal.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    conn: &mut mysql_async::Conn,
    rng: &mut rand::rngs::StdRng,
    server: &'static str,
    keys: i32,
    n: u64,
    journal: bool,
    pending: &mut Option<Written>,
) -> Result<Option<Written>> {
    let id: i32 = rng.gen_range(1..=keys);
    let val = format!("{server}-{n}");
    let op: u32 = rng.gen_range(0..10);
    conn.query_drop("START TRANSACTION").await?;
    let res = match op {
        0..=3 => {
            conn.exec_drop(
                "INSERT INTO app.items (id, val, updated_at) VALUES (?, ?, NOW(6))",
                (id, &val),
            )
            .await
        }
        4..=7 => {
            conn.exec_drop(
                "UPDATE app.items SET val = ?, updated_at = NOW(6) WHERE id = ?",
                (&val, id),
            )
            .await
        }
        _ => {
            conn.exec_drop("DELETE FROM app.items WHERE id = ?", (id,))
                .await
        }
    };
    let affected = conn.affected_rows();
    let written = match res {
        Ok(()) if affected > 0 && op <= 7 => {
            let row: Option<VersionRow> = conn
                .exec_first(
                    "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version, fleetsync_origin \
                     FROM app.items WHERE id = ?",
                    (id,),
                )
                .await?;
            Some(Written {
                key: id,
                val: Some(val),
                rank: rank_of(row)?,
                server,
            })
        }
        Ok(()) if affected > 0 => {
            let row: Option<VersionRow> = conn
                .exec_first(
                    "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version, fleetsync_origin \
                     FROM fleetsync.ts_app__items WHERE id = ?",
                    (id,),
                )
                .await?;
            Some(Written {
                key: id,
                val: None,
                rank: rank_of(row)?,
                server,
            })
        }
        Ok(()) => None,
        // Duplicate key (insert of an existing row): expected.
        Err(mysql_async::Error::Server(e)) if e.code == 1062 => None,
        // Deadlock or lock wait against the applier: the write did not happen.
        Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
            conn.query_drop("ROLLBACK").await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if journal && written.is_some() {
        conn.exec_drop("INSERT INTO journal.w VALUES (?)", (n,))
            .await?;
    }
    pending.clone_from(&written);
    conn.query_drop("COMMIT").await?;
    Ok(written)
}

/// A connection to a server that may be down for a while (it was killed and is being started
/// again); `None` after `within`.
pub(super) async fn reconnect(
    pool: &mysql_async::Pool,
    within: Duration,
) -> Option<mysql_async::Conn> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(mut conn) = pool.get_conn().await {
            if conn.query_drop("DO 1").await.is_ok() {
                return Some(conn);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Writes for `secs` seconds on one member; the committed writes that changed a row, with
/// their ranks. With `survive_kill`, a lost connection (the member's server was SIGKILLed)
/// does not end the writer: it waits for the server to be back, counts the write that was
/// committing when the connection went only if the journal says it committed, and goes on.
pub(super) async fn writer(
    pool: mysql_async::Pool,
    server: &'static str,
    seed: u64,
    secs: u64,
    survive_kill: bool,
    keys: i32,
) -> Result<Vec<Written>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed * 1000 + server.len() as u64 * 7 + u64::from(server.as_bytes()[0]),
    );
    let mut conn = pool.get_conn().await?;
    if survive_kill {
        conn.query_drop(
            "CREATE DATABASE IF NOT EXISTS journal; CREATE TABLE IF NOT EXISTS journal.w \
             (n BIGINT UNSIGNED NOT NULL PRIMARY KEY) ENGINE=InnoDB",
        )
        .await?;
    }
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    let (mut lost, mut in_doubt, mut kept) = (0, 0, 0);
    while Instant::now() < end {
        n += 1;
        let mut pending = None;
        match attempt(
            &mut conn,
            &mut rng,
            server,
            keys,
            n,
            survive_kill,
            &mut pending,
        )
        .await
        {
            Ok(w) => out.extend(w),
            Err(e) if survive_kill && lost_connection(&e) => {
                lost += 1;
                conn = reconnect(&pool, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("{server} not back after losing it: {e:#}"))?;
                if let Some(w) = pending {
                    in_doubt += 1;
                    let committed: Option<u64> = conn
                        .exec_first("SELECT n FROM journal.w WHERE n = ?", (n,))
                        .await?;
                    if committed.is_some() {
                        kept += 1;
                        out.push(w);
                    }
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..6))).await;
    }
    if survive_kill {
        println!(
            "{server}: connection lost {lost} time(s); {in_doubt} write(s) in doubt at COMMIT, \
             {kept} of them committed (journal)"
        );
        ensure!(lost > 0, "{server}'s writer never lost its connection");
    }
    Ok(out)
}
