//! Purging tombstones with the floor, in chunks (see the parent module).

use super::*;

/// The tombstone tables of `group` on the member behind `conn` (from `fleetsync.ts_floor`).
pub(super) async fn tombstone_tables(
    conn: &mut Conn,
    server: &str,
    group: &str,
) -> Result<Vec<String>, GcError> {
    conn.exec(
        format!("SELECT `tombstones` FROM `fleetsync`.`{FLOOR_TABLE}` WHERE `sync_name` = ?"),
        (group,),
    )
    .await
    .map_err(sql_err(server, "reading fleetsync.ts_floor"))
}

/// Counts the tombstones of `group` on a member.
pub async fn count_tombstones(conn: &mut Conn, server: &str, group: &str) -> Result<u64, GcError> {
    let mut total = 0u64;
    for t in tombstone_tables(conn, server, group).await? {
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM `fleetsync`.`{}`",
                t.replace('`', "``")
            ))
            .await
            .map_err(sql_err(server, format!("counting fleetsync.{t}")))?;
        total += n.unwrap_or(0);
    }
    Ok(total)
}

pub(super) fn is_retryable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(se) if se.code == 1213 || se.code == 1205)
}

/// Purges on one member every tombstone of `group` with `deleted_at` before `cutoff` (Unix
/// seconds), raising the floor in the same transactions. Returns the number purged.
pub async fn purge_member(
    conn: &mut Conn,
    server: &str,
    group: &str,
    cutoff: &str,
) -> Result<u64, GcError> {
    if parse_decimal(cutoff).is_none() {
        return Err(GcError::Bad {
            server: server.into(),
            reason: format!("bad GC cutoff {cutoff:?}"),
        });
    }
    // Not sent on (the fleetsync database is not replicated anyway), and out of the triggers'
    // way as an apply session is.
    // UTC: `FROM_UNIXTIME(cutoff)` and the TIMESTAMP `deleted_at` then compare without a
    // daylight-saving ambiguity.
    conn.query_drop("SET SESSION skip_replication=1; SET @fleetsync_applier=1; SET SESSION time_zone = '+00:00'")
        .await
        .map_err(sql_err(server, "preparing the purge session"))?;
    let mut total = 0;
    for t in tombstone_tables(conn, server, group).await? {
        loop {
            let mut attempt = 0;
            let n = loop {
                attempt += 1;
                match purge_chunk(conn, server, &t, cutoff).await {
                    Ok(n) => break n,
                    Err((e, retry)) => {
                        let _ = conn.query_drop("ROLLBACK").await;
                        if !retry || attempt >= CHUNK_ATTEMPTS {
                            return Err(e);
                        }
                        tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                    }
                }
            };
            total += n;
            if n < PURGE_CHUNK_ROWS as u64 {
                break;
            }
        }
    }
    Ok(total)
}

/// One purge transaction (see [`purge_member`]); the error says whether to retry.
pub(super) async fn purge_chunk(
    conn: &mut Conn,
    server: &str,
    table: &str,
    cutoff: &str,
) -> Result<u64, (GcError, bool)> {
    let fail = |what: &str| {
        let what = format!("{what} fleetsync.{table}");
        move |e: mysql_async::Error| {
            let retry = is_retryable(&e);
            (sql_err(server, what)(e), retry)
        }
    };
    let ts = format!("`fleetsync`.`{}`", table.replace('`', "``"));
    let name = table.replace('\\', "\\\\").replace('\'', "''");
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION")
        .await
        .map_err(fail("starting the purge of"))?;
    let floor: Option<(Option<String>, u64, u32)> = conn
        .query_first(format!(
            "SELECT CAST(`fleetsync_rank` AS CHAR), `fleetsync_version`, `fleetsync_origin` \
             FROM `fleetsync`.`{FLOOR_TABLE}` WHERE `tombstones` = '{name}' FOR UPDATE"
        ))
        .await
        .map_err(fail("locking the floor of"))?;
    // The chunk: tombstones before the cutoff, up to the PURGE_CHUNK_ROWS-th oldest (ties
    // included).
    let mut pred = format!("`deleted_at` < FROM_UNIXTIME({cutoff})");
    let bound: Option<String> = conn
        .query_first(format!(
            "SELECT CAST(`deleted_at` AS CHAR) FROM {ts} WHERE {pred} ORDER BY `deleted_at` LIMIT 1 OFFSET {}",
            PURGE_CHUNK_ROWS - 1
        ))
        .await
        .map_err(fail("reading"))?;
    if let Some(b) = bound {
        pred.push_str(&format!(" AND `deleted_at` <= '{}'", b.replace('\'', "''")));
    }
    let rows: Vec<(Option<String>, u64, u32)> = conn
        .query(format!(
            "SELECT CAST(`fleetsync_rank` AS CHAR), `fleetsync_version`, `fleetsync_origin` FROM {ts} \
             WHERE {pred} FOR UPDATE"
        ))
        .await
        .map_err(fail("locking the tombstones of"))?;
    let rank =
        |(p, version, origin): &(Option<String>, u64, u32)| -> Result<Rank, (GcError, bool)> {
            let primary = match p {
                Some(s) => Some(parse_decimal(s).ok_or_else(|| {
                    (
                        GcError::Bad {
                            server: server.into(),
                            reason: format!("bad rank {s:?} in fleetsync.{table}"),
                        },
                        false,
                    )
                })?),
                None => None,
            };
            Ok(Rank {
                primary,
                version: *version,
                origin: *origin,
            })
        };
    let mut max: Option<Rank> = None;
    for r in &rows {
        let r = rank(r)?;
        max = max.max(Some(r));
    }
    let Some(max) = max else {
        conn.query_drop("COMMIT")
            .await
            .map_err(fail("ending the purge of"))?;
        return Ok(0);
    };
    let old = floor.as_ref().map(rank).transpose()?;
    let new = if old.is_some_and(|o| o > max) {
        old
    } else {
        Some(max)
    };
    let new = new.unwrap_or(max);
    let primary = new.primary.map_or("NULL".to_string(), format_decimal);
    conn.query_drop(format!(
        "INSERT INTO `fleetsync`.`{FLOOR_TABLE}` (`tombstones`, `fleetsync_rank`, `fleetsync_version`, \
         `fleetsync_origin`, `purged`, `raised_at`) VALUES ('{name}', {primary}, {}, {}, {}, NOW(6)) \
         ON DUPLICATE KEY UPDATE `fleetsync_rank` = VALUES(`fleetsync_rank`), \
         `fleetsync_version` = VALUES(`fleetsync_version`), `fleetsync_origin` = VALUES(`fleetsync_origin`), \
         `purged` = `purged` + VALUES(`purged`), `raised_at` = VALUES(`raised_at`)",
        new.version,
        new.origin,
        rows.len()
    ))
    .await
    .map_err(fail("raising the floor of"))?;
    conn.query_drop(format!("DELETE FROM {ts} WHERE {pred}"))
        .await
        .map_err(fail("purging"))?;
    let deleted = conn.affected_rows();
    conn.query_drop("COMMIT")
        .await
        .map_err(fail("committing the purge of"))?;
    Ok(deleted)
}

pub(super) async fn purge_on(g: &GcGroup, m: &GcMember, cutoff: &str) -> Result<(), GcError> {
    let mut conn = connect(m).await?;
    let n = purge_member(&mut conn, &m.name, &g.group, cutoff).await?;
    if n > 0 {
        metrics::counter!(METRIC_PURGED, "sync" => g.group.clone(), "server" => m.name.clone())
            .increment(n);
        tracing::info!(group = %g.group, server = %m.name, purged = n, "tombstones purged");
    }
    let left = count_tombstones(&mut conn, &m.name, &g.group).await?;
    metrics::gauge!(METRIC_TOMBSTONES, "sync" => g.group.clone(), "server" => m.name.clone())
        .set(left as f64);
    let _ = conn.disconnect().await;
    Ok(())
}
