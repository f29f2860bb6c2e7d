use super::*;

fn pos(p: u64) -> Position {
    Position {
        binlog: BinlogPosition::new("binlog.000001", p),
        gtid: None,
    }
}

fn round() -> Round {
    Round {
        started_unix: 0,
        cutoffs: BTreeMap::new(),
        ends: ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), BinlogPosition::new("binlog.000001", 100)))
            .collect(),
    }
}

fn progress(
    rows: &[(&str, &str, u64, bool)],
) -> BTreeMap<String, BTreeMap<String, (Position, bool)>> {
    let mut out: BTreeMap<String, BTreeMap<String, (Position, bool)>> = BTreeMap::new();
    for (t, s, p, done) in rows {
        out.entry(t.to_string())
            .or_default()
            .insert(s.to_string(), (pos(*p), *done));
    }
    out
}

#[test]
fn a_round_completes_when_every_stream_is_applied_past_its_end() {
    let all = |p: u64, done: bool| {
        let mut rows = Vec::new();
        for t in ["a", "b", "c"] {
            for s in ["a", "b", "c"] {
                if s != t {
                    rows.push((t, s, p, done));
                }
            }
        }
        progress(&rows)
    };
    assert!(lagging(&round(), &all(100, true)).is_empty());
    assert!(lagging(&round(), &all(150, true)).is_empty());
    assert_eq!(lagging(&round(), &all(99, true)).len(), 6);
    assert_eq!(
        lagging(&round(), &all(150, false)).len(),
        6,
        "snapshot running"
    );
    // A missing progress row (the pipeline never ran) blocks too.
    let mut p = all(150, true);
    p.get_mut("b").map(|m| m.remove("a"));
    assert_eq!(lagging(&round(), &p), vec![("b".into(), "a".into())]);
}

#[test]
fn blame_picks_the_lagging_target_or_the_silent_source() {
    let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let l = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // b applies nothing: b lags on a and c.
    let b: BTreeSet<String> = ["b".to_string()].into();
    assert_eq!(blame(&members, &l(&[("b", "a"), ("b", "c")])), b);
    // Nobody applied b's stream: b's agent or binlog is the problem.
    assert_eq!(blame(&members, &l(&[("a", "b"), ("c", "b")])), b);
}

#[test]
fn the_refusal_names_member_bound_since_and_the_way_back() {
    let e = Eviction {
        since_unix: 1_700_000_000,
        bound_secs: 604_800,
        reason: "unreachable".into(),
    };
    let m = refusal_message("realms", "eu2", &e);
    for want in [
        "eu2",
        "realms",
        "604800s",
        "2023-11-14T22:13:20Z",
        "re-clone",
        "fleetsync group readmit",
    ] {
        assert!(m.contains(want), "{want}: {m}");
    }
    let ev = Evictions::default();
    ev.set_group("realms", [("eu2".to_string(), e)].into());
    assert!(ev.refusal("realms", "eu1", "eu2").is_some());
    assert!(ev.refusal("realms", "eu2", "us1").is_some());
    assert!(ev.refusal("realms", "eu1", "us1").is_none());
    assert!(ev.refusal("other", "eu2", "us1").is_none());
}

/// Against a real server (skipped unless `FLEETSYNC_TEST_MARIADB_URL` is set): the
/// install's triggers and floor, a purge, and a local write on a purged key.
#[tokio::test]
async fn purge_raises_the_floor_and_a_new_write_ranks_above_it() {
    let Ok(url) = std::env::var("FLEETSYNC_TEST_MARIADB_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED purge_raises_the_floor: set FLEETSYNC_TEST_MARIADB_URL to run it against a MariaDB server"
        );
        return;
    };
    let opts = Opts::from_url(&url).expect("valid test URL");
    let mut conn = Conn::new(opts).await.expect("connects");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let db = format!("gc_{}_{nanos}", std::process::id());
    let group = format!("g{nanos}");
    conn.query_drop(format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT, \
         updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
    ))
    .await
    .expect("creates");
    let policy = fleetsync_config::ConflictPolicy {
        default: fleetsync_config::TablePolicy {
            strategy: fleetsync_config::ConflictStrategy::NewestWins,
            newest_column: Some("updated_at".into()),
        },
        group: true,
        ..Default::default()
    };
    let tables = [(db.clone(), "t".to_string())];
    let plans = crate::versions::plan_member(&mut conn, "s", "s", &tables, &policy)
        .await
        .expect("plans");
    crate::versions::install(&mut conn, "s", &group, &plans)
        .await
        .expect("installs");
    conn.query_drop("SET SESSION skip_replication=0").await.ok();
    conn.query_drop(format!(
        "INSERT INTO `{db}`.t (id, v, updated_at) VALUES (1, 1, '2030-01-01 00:00:00'), (2, 2, '2020-01-01 00:00:00'); \
         DELETE FROM `{db}`.t"
    ))
    .await
    .expect("writes");
    let ts = crate::versions::tombstone_table(&db, "t");
    assert_eq!(
        count_tombstones(&mut conn, "s", &group)
            .await
            .expect("counts"),
        2
    );
    // A cutoff in the past purges nothing; one in the future purges both.
    assert_eq!(
        purge_member(&mut conn, "s", &group, "1.000000")
            .await
            .expect("purges"),
        0
    );
    let future = format!("{}.000000", unix_now() + 3600);
    conn.query_drop("SET @fleetsync_applier=NULL").await.ok();
    assert_eq!(
        purge_member(&mut conn, "s", &group, &future)
            .await
            .expect("purges"),
        2
    );
    assert_eq!(
        count_tombstones(&mut conn, "s", &group)
            .await
            .expect("counts"),
        0
    );
    let floor: Option<(String, u64, u64)> = conn
        .query_first(format!(
            "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version, purged FROM fleetsync.ts_floor WHERE tombstones = '{ts}'"
        ))
        .await
        .expect("reads the floor");
    let (floor_rank, floor_version, purged) = floor.expect("a floor row");
    assert_eq!(purged, 2);
    assert_eq!(floor_version, 2, "the deletes' version: insert 1, delete 2");
    assert_eq!(
        floor_rank, "20300101000000.000000",
        "the highest purged rank"
    );
    // A local write to a purged key (no row, no tombstone) ranks above the floor even with
    // an older newest_column.
    conn.query_drop("SET @fleetsync_applier=NULL")
        .await
        .expect("resets");
    conn.query_drop(format!(
        "INSERT INTO `{db}`.t (id, v, updated_at) VALUES (2, 3, '2021-01-01 00:00:00')"
    ))
    .await
    .expect("re-inserts");
    let row: Option<(String, u64)> = conn
        .query_first(format!(
            "SELECT CAST(fleetsync_rank AS CHAR), fleetsync_version FROM `{db}`.t WHERE id = 2"
        ))
        .await
        .expect("reads");
    assert_eq!(row, Some(("20300101000000.000000".to_string(), 3)));
    conn.query_drop(format!(
        "DROP DATABASE `{db}`; DROP TABLE fleetsync.`{ts}`; DELETE FROM fleetsync.ts_floor WHERE tombstones = '{ts}'"
    ))
    .await
    .ok();
}
