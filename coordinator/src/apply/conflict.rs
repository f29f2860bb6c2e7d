//! Conflict resolution: the pure decision, the value order used by newest-wins, and the SQL
//! of the conflict tables.
//!
//! # Who wins
//!
//! A conflict pits the *incoming* version (the final image of a key's run of changes in the
//! batch, or "absent" when the run ends with a delete) against the *local* version (the
//! target's current row, or "absent" when there is none).
//!
//! * `target-wins`: the local version is kept.
//! * `source-wins`: the incoming version wins iff its origin server ranks before the target
//!   in `priority` (listed servers by position, unlisted ones after them ordered by name).
//! * `newest-wins`: the incoming version wins iff
//!   `(incoming newest, origin server id) > (local newest, target server id)`, where `newest`
//!   is the value of `newest_column` and an absent row (deleted or missing) ranks below every
//!   value, NULL included, and NULL ranks below every non-NULL value. Server ids are the
//!   servers' `@@server_id`. Both sides of a conflict therefore pick the same winner. Ties on
//!   the column are broken by the server id of the *server holding* each version: for a local
//!   row that itself came from a third server, that is the target's id, not the third
//!   server's (fleetsync keeps no per-row origin), so exact ties between three servers may be
//!   broken differently on different servers.
//! * `manual`: the local version is kept and both versions are parked in `fleetsync.conflicts`.
//!
//! Values of `newest_column` are ordered by [`cmp_values`]: numbers numerically, temporal
//! values chronologically, strings and bytes bytewise.

use std::cmp::Ordering;

use fleetsync_config::{ConflictPolicy, ConflictStrategy};
use fleetsync_proto::Value;

/// What happened to a conflicting change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The incoming change was applied.
    IncomingWon,
    /// The incoming change was skipped: the target's row stays.
    LocalKept,
    /// The incoming change was skipped and parked for a person to decide (manual).
    Parked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::IncomingWon => "incoming_won",
            Outcome::LocalKept => "local_kept",
            Outcome::Parked => "parked",
        }
    }
}

/// One side of a conflict.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// fleetsync name of the server holding this version.
    pub server: &'a str,
    /// `@@server_id` of that server.
    pub server_id: u32,
    /// The `newest_column` value; `None` when the row is absent (deleted or missing).
    pub newest: Option<&'a Value>,
}

/// Decides a conflict on the target holding `local`. See the module docs.
pub fn decide(
    strategy: ConflictStrategy,
    policy: &ConflictPolicy,
    incoming: &Version<'_>,
    local: &Version<'_>,
) -> Outcome {
    match strategy {
        // No detection runs for `none`; should it be asked, applying is today's behaviour.
        ConflictStrategy::None => Outcome::IncomingWon,
        ConflictStrategy::TargetWins => Outcome::LocalKept,
        ConflictStrategy::Manual => Outcome::Parked,
        ConflictStrategy::SourceWins => {
            if policy.rank(incoming.server) < policy.rank(local.server) {
                Outcome::IncomingWon
            } else {
                Outcome::LocalKept
            }
        }
        ConflictStrategy::NewestWins => {
            let order = cmp_newest(incoming.newest, local.newest)
                .then(incoming.server_id.cmp(&local.server_id));
            if order == Ordering::Greater {
                Outcome::IncomingWon
            } else {
                Outcome::LocalKept
            }
        }
    }
}

/// Absent < NULL < values (by [`cmp_values`]).
fn cmp_newest(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => cmp_values(a, b),
    }
}

enum Key<'a> {
    Null,
    Int(i128),
    Float(f64),
    Time(i128),
    Bytes(&'a [u8]),
}

fn key(v: &Value) -> Key<'_> {
    const US: i128 = 1_000_000;
    let civil = |y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32| -> i128 {
        // Lexicographic encoding, not an instant: only order matters. Zero dates sort first.
        ((((((i128::from(y) * 13 + i128::from(mo)) * 32 + i128::from(d)) * 24 + i128::from(h))
            * 60
            + i128::from(mi))
            * 60
            + i128::from(s))
            * US)
            + i128::from(us)
    };
    match v {
        Value::Null => Key::Null,
        Value::Int(n) => Key::Int(i128::from(*n)),
        Value::UInt(n) => Key::Int(i128::from(*n)),
        Value::Year(n) => Key::Int(i128::from(*n)),
        Value::Enum(n) => Key::Int(i128::from(*n)),
        Value::Set(n) | Value::Bit(n) => Key::Int(i128::from(*n)),
        Value::Float(f) => Key::Float(f64::from(*f)),
        Value::Double(f) => Key::Float(*f),
        Value::Decimal(s) => Key::Float(s.parse().unwrap_or(f64::NAN)),
        Value::Date { year, month, day } => Key::Time(civil(*year, *month, *day, 0, 0, 0, 0)),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => Key::Time(civil(*year, *month, *day, *hour, *minute, *second, *micros)),
        Value::Timestamp { secs, micros } => {
            let days = (*secs / 86_400) as i64;
            let rem = *secs % 86_400;
            let (y, mo, d) = super::sql::civil_from_days(days);
            Key::Time(civil(
                y.clamp(0, 9999) as u16,
                mo,
                d,
                (rem / 3600) as u8,
                ((rem / 60) % 60) as u8,
                (rem % 60) as u8,
                *micros,
            ))
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let t = ((i128::from(*hours) * 60 + i128::from(*minutes)) * 60 + i128::from(*seconds))
                * US
                + i128::from(*micros);
            Key::Int(if *negative { -t } else { t })
        }
        Value::Text(b) | Value::Bytes(b) | Value::Geometry(b) => Key::Bytes(b),
        Value::Json(s) => Key::Bytes(s.as_bytes()),
    }
}

/// A total order on values for newest-wins: NULL first; integers, floats and DECIMAL
/// numerically (DECIMAL through f64); DATE, DATETIME and TIMESTAMP (UTC) chronologically;
/// TIME by duration; character and binary data bytewise. Values of different families
/// (which one column never mixes) order by family.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    let family = |k: &Key<'_>| match k {
        Key::Null => 0,
        Key::Int(_) | Key::Float(_) => 1,
        Key::Time(_) => 2,
        Key::Bytes(_) => 3,
    };
    let (ka, kb) = (key(a), key(b));
    match (&ka, &kb) {
        (Key::Int(x), Key::Int(y)) => x.cmp(y),
        (Key::Int(x), Key::Float(y)) => (*x as f64).total_cmp(y),
        (Key::Float(x), Key::Int(y)) => x.total_cmp(&(*y as f64)),
        (Key::Float(x), Key::Float(y)) => x.total_cmp(y),
        (Key::Time(x), Key::Time(y)) => x.cmp(y),
        (Key::Bytes(x), Key::Bytes(y)) => x.cmp(y),
        _ => family(&ka).cmp(&family(&kb)),
    }
}

/// Creates the conflict tables if missing. Idempotent.
pub(crate) const CREATE_CONFLICT_TABLES: &str = "\
CREATE TABLE IF NOT EXISTS `fleetsync`.`conflicts` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `sync_name` VARCHAR(64) NOT NULL,
  `schema_name` VARCHAR(64) NOT NULL,
  `table_name` VARCHAR(64) NOT NULL,
  `key_json` LONGTEXT NOT NULL,
  `incoming_json` LONGTEXT NULL,
  `local_json` LONGTEXT NULL,
  `origin_server` VARCHAR(64) NOT NULL,
  `source_position` VARCHAR(512) NOT NULL,
  `detected_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  `status` VARCHAR(16) NOT NULL DEFAULT 'open',
  `resolution` VARCHAR(255) NULL,
  `resolved_at` TIMESTAMP(6) NULL,
  `apply_sql` LONGBLOB NOT NULL,
  PRIMARY KEY (`id`),
  KEY `status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS `fleetsync`.`conflict_log` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `sync_name` VARCHAR(64) NOT NULL,
  `schema_name` VARCHAR(64) NOT NULL,
  `table_name` VARCHAR(64) NOT NULL,
  `key_json` LONGTEXT NOT NULL,
  `incoming_json` LONGTEXT NULL,
  `local_json` LONGTEXT NULL,
  `origin_server` VARCHAR(64) NOT NULL,
  `source_position` VARCHAR(512) NOT NULL,
  `strategy` VARCHAR(16) NOT NULL,
  `outcome` VARCHAR(16) NOT NULL,
  `decided_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
ALTER TABLE `fleetsync`.`conflicts` ADD COLUMN IF NOT EXISTS `before_json` LONGTEXT NULL";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dt(s: u8, us: u32) -> Value {
        Value::DateTime {
            year: 2024,
            month: 5,
            day: 1,
            hour: 12,
            minute: 0,
            second: s,
            micros: us,
        }
    }

    fn policy(priority: &[&str]) -> ConflictPolicy {
        ConflictPolicy {
            priority: priority.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn newest_wins_examples() {
        let p = policy(&[]);
        let (old, new) = (dt(1, 0), dt(1, 1));
        let v = |server, server_id, newest| Version {
            server,
            server_id,
            newest,
        };
        let nw = ConflictStrategy::NewestWins;
        assert_eq!(
            decide(nw, &p, &v("a", 1, Some(&new)), &v("b", 2, Some(&old))),
            Outcome::IncomingWon
        );
        assert_eq!(
            decide(nw, &p, &v("a", 1, Some(&old)), &v("b", 2, Some(&new))),
            Outcome::LocalKept
        );
        // Tie: the greater server id wins.
        assert_eq!(
            decide(nw, &p, &v("a", 1, Some(&old)), &v("b", 2, Some(&old))),
            Outcome::LocalKept
        );
        assert_eq!(
            decide(nw, &p, &v("b", 2, Some(&old)), &v("a", 1, Some(&old))),
            Outcome::IncomingWon
        );
        // An absent row loses to any version, a NULL one too.
        assert_eq!(
            decide(nw, &p, &v("a", 1, Some(&Value::Null)), &v("b", 2, None)),
            Outcome::IncomingWon
        );
        assert_eq!(
            decide(nw, &p, &v("b", 2, None), &v("a", 1, Some(&Value::Null))),
            Outcome::LocalKept
        );
        assert_eq!(
            decide(
                ConflictStrategy::TargetWins,
                &p,
                &v("a", 1, None),
                &v("b", 2, None)
            ),
            Outcome::LocalKept
        );
        assert_eq!(
            decide(
                ConflictStrategy::Manual,
                &p,
                &v("a", 1, None),
                &v("b", 2, None)
            ),
            Outcome::Parked
        );
    }

    #[test]
    fn value_order() {
        assert_eq!(cmp_values(&Value::Int(-1), &Value::UInt(1)), Ordering::Less);
        assert_eq!(
            cmp_values(&Value::Decimal("10.5".into()), &Value::Int(10)),
            Ordering::Greater
        );
        assert_eq!(cmp_values(&dt(59, 0), &dt(1, 999_999)), Ordering::Greater);
        assert_eq!(
            cmp_values(
                &Value::Timestamp {
                    secs: 86_400,
                    micros: 0
                },
                &Value::Timestamp {
                    secs: 86_399,
                    micros: 999_999
                }
            ),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::Text(b"b".to_vec()), &Value::Text(b"ab".to_vec())),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&Value::Null, &Value::Int(i64::MIN)),
            Ordering::Less
        );
    }

    fn arb_newest() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (0u8..3, 0u32..3).prop_map(|(s, us)| Some(dt(s, us))),
            (-3i64..3).prop_map(|n| Some(Value::Int(n))),
        ]
    }

    proptest! {
        /// Two servers holding different versions of a row, each receiving the other's:
        /// exactly one of them keeps its own version, so both end with the same winner.
        #[test]
        fn newest_wins_both_sides_agree(
            na in arb_newest(), nb in arb_newest(), ida in 1u32..5, dif in 1u32..5,
        ) {
            let idb = ida + dif; // distinct server ids
            let p = policy(&[]);
            let a = Version { server: "a", server_id: ida, newest: na.as_ref() };
            let b = Version { server: "b", server_id: idb, newest: nb.as_ref() };
            let on_a = decide(ConflictStrategy::NewestWins, &p, &b, &a);
            let on_b = decide(ConflictStrategy::NewestWins, &p, &a, &b);
            // Winner seen from a: b's version iff the incoming won on a.
            let winner_a = if on_a == Outcome::IncomingWon { "b" } else { "a" };
            let winner_b = if on_b == Outcome::IncomingWon { "a" } else { "b" };
            prop_assert_eq!(winner_a, winner_b);
        }

        #[test]
        fn source_wins_both_sides_agree(
            order in proptest::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4),
            x in 0usize..4, y in 0usize..4,
        ) {
            let names = ["a", "b", "c", "d"];
            prop_assume!(x != y);
            let p = policy(&order);
            let v = |s| Version { server: s, server_id: 0, newest: None };
            let (sx, sy) = (names[x], names[y]);
            let on_x = decide(ConflictStrategy::SourceWins, &p, &v(sy), &v(sx));
            let on_y = decide(ConflictStrategy::SourceWins, &p, &v(sx), &v(sy));
            let winner_x = if on_x == Outcome::IncomingWon { sy } else { sx };
            let winner_y = if on_y == Outcome::IncomingWon { sx } else { sy };
            prop_assert_eq!(winner_x, winner_y);
        }

        /// newest-wins among any number of versions: the version every server ends with is
        /// the maximum, whatever order they arrive in (a last-writer-wins register).
        #[test]
        fn newest_wins_converges_to_the_maximum(
            versions in proptest::collection::vec((0u8..3, 0u32..2), 2..5),
            perm_seed in any::<u64>(),
        ) {
            let p = policy(&[]);
            let vals: Vec<Value> = versions.iter().map(|&(s, us)| dt(s, us)).collect();
            let vs: Vec<Version<'_>> = vals.iter().enumerate().map(|(i, v)| Version {
                server: "x", server_id: i as u32 + 1, newest: Some(v),
            }).collect();
            let best = (0..vs.len()).max_by(|&i, &j| {
                cmp_values(&vals[i], &vals[j]).then(vs[i].server_id.cmp(&vs[j].server_id))
            }).unwrap_or(0);
            // Server h holds version h and receives the others in a shuffled order.
            for h in 0..vs.len() {
                let mut order: Vec<usize> = (0..vs.len()).filter(|&i| i != h).collect();
                let mut s = perm_seed.wrapping_add(h as u64);
                for i in (1..order.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    order.swap(i, (s >> 33) as usize % (i + 1));
                }
                let mut held = h;
                for i in order {
                    // The held version's own server id breaks ties (the version's origin).
                    if decide(ConflictStrategy::NewestWins, &p, &vs[i], &vs[held]) == Outcome::IncomingWon {
                        held = i;
                    }
                }
                prop_assert_eq!(held, best);
            }
        }
    }
}
