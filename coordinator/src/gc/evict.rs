//! Evicted members: recorded on the others, refusing their pipelines (see the parent module).

use super::*;

/// Why a member is evicted, as recorded (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Since when (Unix seconds) the member blocked GC.
    pub since_unix: u64,
    pub bound_secs: u64,
    pub reason: String,
}

/// The evicted members of every group, shared by the GC tasks and the pipelines (which refuse
/// to run from or to an evicted member).
#[derive(Clone, Default)]
pub struct Evictions(Arc<RwLock<BTreeMap<(String, String), Eviction>>>);

impl Evictions {
    /// The eviction of `member` in `group`, if any.
    pub fn get(&self, group: &str, member: &str) -> Option<Eviction> {
        self.0
            .read()
            .ok()?
            .get(&(group.to_string(), member.to_string()))
            .cloned()
    }

    /// The one-line refusal for a pipeline of `group` from `source` to `target`, when either
    /// is evicted.
    pub fn refusal(&self, group: &str, source: &str, target: &str) -> Option<String> {
        [source, target]
            .into_iter()
            .find_map(|m| self.get(group, m).map(|e| refusal_message(group, m, &e)))
    }

    pub(super) fn set_group(&self, group: &str, evicted: BTreeMap<String, Eviction>) {
        if let Ok(mut map) = self.0.write() {
            map.retain(|(g, _), _| g != group);
            for (m, e) in evicted {
                map.insert((group.to_string(), m), e);
            }
        }
    }
}

/// The refusal of an evicted member's pipelines: the member, the bound, since when, what to do.
pub fn refusal_message(group: &str, member: &str, e: &Eviction) -> String {
    format!(
        "member {member} of group {group} was evicted from tombstone GC: it blocked GC rounds since {} \
         (unix {}), longer than tombstone_gc_bound ({}s), and the other members have purged tombstones \
         it may not have seen: re-clone it from another member, then run `fleetsync group readmit \
         --sync {group} --member {member} --from OTHER --position FILE:POS` ({})",
        format_unix(e.since_unix),
        e.since_unix,
        e.bound_secs,
        e.reason
    )
}

/// `YYYY-MM-DDThh:mm:ssZ` of Unix seconds (UTC), without a date crate.
pub(super) fn format_unix(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads the evictions of `group` recorded on the reachable members (their union).
pub(super) async fn load_evictions(g: &GcGroup) -> BTreeMap<String, Eviction> {
    let mut out = BTreeMap::new();
    for m in &g.members {
        let Ok(mut conn) = connect(m).await else {
            continue;
        };
        let rows: Result<Vec<(String, String, u64, String)>, _> = conn
            .exec(
                "SELECT `member`, CAST(FLOOR(UNIX_TIMESTAMP(`since`)) AS CHAR), `bound_secs`, `reason` \
                 FROM `fleetsync`.`gc_evicted` WHERE `sync_name` = ?",
                (&g.group,),
            )
            .await;
        let _ = conn.disconnect().await;
        for (member, since, bound_secs, reason) in rows.unwrap_or_default() {
            out.entry(member).or_insert(Eviction {
                since_unix: since.parse().unwrap_or(0),
                bound_secs,
                reason,
            });
        }
    }
    out
}

/// Records the eviction of `member` on every member of `on`; fails if any write fails.
pub(super) async fn record_eviction(
    g: &GcGroup,
    on: &[&GcMember],
    member: &str,
    e: &Eviction,
) -> Result<(), GcError> {
    for m in on {
        let mut conn = connect(m).await?;
        conn.query_drop(format!(
            "SET SESSION skip_replication=1; {CREATE_EVICTED_TABLE}"
        ))
        .await
        .map_err(sql_err(&m.name, "creating fleetsync.gc_evicted"))?;
        conn.exec_drop(
            "INSERT INTO `fleetsync`.`gc_evicted` (`sync_name`, `member`, `since`, `bound_secs`, `reason`) \
             VALUES (?, ?, FROM_UNIXTIME(?), ?, ?) ON DUPLICATE KEY UPDATE `member` = `member`",
            (&g.group, member, e.since_unix, e.bound_secs, &e.reason),
        )
        .await
        .map_err(sql_err(&m.name, "recording an eviction in fleetsync.gc_evicted"))?;
        let _ = conn.disconnect().await;
    }
    Ok(())
}

/// Loads the recorded evictions of `groups` into `evictions` (before the pipelines start).
pub async fn load(groups: &[GcGroup], evictions: &Evictions) {
    for g in groups {
        evictions.set_group(&g.group, load_evictions(g).await);
    }
}
