//! The one total order per key that makes a bidirectional group converge (pure: no I/O).
//!
//! # The rule
//!
//! Every write of a key (insert, update, **delete**) gets a [`Rank`] when it is made, on the
//! member that makes it, and keeps it everywhere:
//!
//! ```text
//! rank = (primary, version, origin)      compared lexicographically; primary NULL < any value
//! ```
//!
//! * `version`: the predecessor's version + 1 (1 for a key without a record): a per-key
//!   Lamport counter.
//! * `origin`: the `@@server_id` of the member that made the write (distinct in a group).
//! * `primary`, by strategy, with the **inheritance rule** `primary = max(base, predecessor's
//!   primary)` (absent base: the predecessor's):
//!
//! | strategy | base of a write | a delete's base |
//! |---|---|---|
//! | `newest_wins` | the value of `newest_column` (encoded as a number, NULL lowest) | none |
//! | `source_wins` | the origin's priority (first in `priority` = highest) | none |
//! | `manual` | none (primary stays NULL: version, then origin decide) | none |
//!
//! The *predecessor* is the record the writing member holds for the key when the write is
//! made: the live row or the tombstone, or, when it has neither, the member's GC floor (the
//! highest rank of the tombstones it purged; see below).
//!
//! Every member keeps, per key, the record of the highest rank it has seen ([`wins`]): a live
//! row or a tombstone. Because of the inheritance rule a member's own write always ranks above
//! the record it replaces, so "each member holds the highest-ranked write it has seen" stays
//! true for local writes too; once every member has seen every write, they all hold the same
//! one: the write of the highest rank in the whole history, whatever the delivery order, with
//! duplicates, after crashes. Without inheritance ("priority first" while a member may still
//! overwrite a row that a higher-priority member wrote) the member that overwrote keeps its
//! own version and the others keep the older one: the members diverge (the tests show it).
//!
//! What inheritance means for users: a write never ranks below the version it replaced on
//! its own member. Under `newest_wins` a write that moves `newest_column` backwards still
//! ranks like the value it replaced; under `source_wins` a low-priority member's edit of a
//! row last written by a higher-priority member carries that member's priority against
//! concurrent writes (it is that row's successor).
//!
//! # Tombstone garbage collection
//!
//! A tombstone `T` may be purged on member `m` only when every other member `o` has durably
//! applied `T`'s write, and `m` has durably applied every write `o` made before `o` applied
//! `T` (per-member watermarks, never age alone). Purging raises `m`'s floor to `T`'s rank, so
//! writes `m` makes later on keys without a record still rank above `T`. [`purge_allowed`]
//! states the rule; the simulation checks that it keeps convergence; `crate::gc` establishes
//! it on real members with rounds of binlog ends and applied positions.

use std::cmp::Ordering;

/// The rank of one write of one key (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rank {
    /// Strategy's primary component, scaled by [`SCALE`]; `None` ranks lowest.
    pub primary: Option<i128>,
    /// Per-key Lamport counter.
    pub version: u64,
    /// `@@server_id` of the member that made the write.
    pub origin: u32,
}

/// Fixed-point scale of [`Rank::primary`]: the stored value is a DECIMAL with 6 decimals.
pub const SCALE: i128 = 1_000_000;

impl Rank {
    /// The rank of a write made on `origin` with `base` (see the table in the module docs)
    /// over `pred`, the record the writing member holds for the key (or its GC floor).
    pub fn successor(pred: Option<&Rank>, base: Option<i128>, origin: u32) -> Rank {
        let pred_primary = pred.and_then(|p| p.primary);
        Rank {
            primary: base.max(pred_primary),
            version: pred.map_or(1, |p| p.version.saturating_add(1)),
            origin,
        }
    }
}

/// Whether an incoming write of rank `incoming` replaces the record `local` (`None`: the
/// member holds nothing for the key). Equal ranks are the same write (a redelivery): kept.
pub fn wins(incoming: &Rank, local: Option<&Rank>) -> bool {
    local.is_none_or(|l| incoming.cmp(l) == Ordering::Greater)
}

/// The `source_wins` base of `member`: the first of `priority` ranks highest. Members not
/// listed rank below every listed one (config validation keeps them out of groups).
pub fn priority_base(priority: &[String], member: &str) -> i128 {
    let n = priority.len() as i128;
    match priority.iter().position(|p| p == member) {
        Some(i) => (n - i as i128) * SCALE,
        None => 0,
    }
}

/// Parses a DECIMAL text (as the server returns `DECIMAL(65,6)`) into a scaled integer.
/// `None` when it is not a number or out of range (more than ~10^32).
pub fn parse_decimal(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 32
    {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes() {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let mut f: i128 = 0;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |b| i128::from(b - b'0'));
        f = f * 10 + d;
    }
    let v = v.checked_mul(SCALE)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// Renders a scaled integer as the DECIMAL text [`parse_decimal`] reads.
pub fn format_decimal(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let scale = SCALE as u128;
    format!("{sign}{}.{:06}", a / scale, a % scale)
}

/// The GC rule for a tombstone (see the module docs), for one purging member, given for every
/// other member `o`: whether `o` has durably applied the tombstone's write, and whether the
/// purging member has durably applied `o`'s stream up to where `o` applied it.
pub fn purge_allowed(others: impl IntoIterator<Item = (bool, bool)>) -> bool {
    others
        .into_iter()
        .all(|(applied_it, caught_up)| applied_it && caught_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: Option<i128>, v: u64, o: u32) -> Rank {
        Rank {
            primary: p,
            version: v,
            origin: o,
        }
    }

    #[test]
    fn order_is_primary_then_version_then_origin() {
        assert!(r(None, 9, 9) < r(Some(-5), 1, 1));
        assert!(r(Some(1), 9, 9) < r(Some(2), 1, 1));
        assert!(r(Some(1), 1, 9) < r(Some(1), 2, 1));
        assert!(r(Some(1), 2, 1) < r(Some(1), 2, 2));
        assert!(wins(&r(Some(1), 1, 1), None));
        assert!(!wins(&r(Some(1), 1, 1), Some(&r(Some(1), 1, 1))));
    }

    #[test]
    fn successor_inherits_and_counts() {
        let pred = r(Some(10), 4, 1);
        assert_eq!(Rank::successor(Some(&pred), Some(3), 2), r(Some(10), 5, 2));
        assert_eq!(Rank::successor(Some(&pred), Some(30), 2), r(Some(30), 5, 2));
        assert_eq!(Rank::successor(Some(&pred), None, 2), r(Some(10), 5, 2));
        assert_eq!(Rank::successor(None, None, 7), r(None, 1, 7));
        assert!(Rank::successor(Some(&pred), Some(3), 0) > pred);
    }

    #[test]
    fn decimals_round_trip() {
        for (t, v) in [
            ("0.000000", 0),
            ("1.5", 1_500_000),
            ("-2.000001", -2_000_001),
            ("20240501120000.123456", 20_240_501_120_000_123_456),
            (
                "18446744073709551615.000000",
                18_446_744_073_709_551_615_000_000,
            ),
        ] {
            assert_eq!(parse_decimal(t), Some(v), "{t}");
            assert_eq!(parse_decimal(&format_decimal(v)), Some(v));
        }
        for bad in ["", "-", "1e5", "abc", "1.2.3", "."] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn priority_base_orders_members() {
        let p: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(priority_base(&p, "a") > priority_base(&p, "b"));
        assert!(priority_base(&p, "c") > priority_base(&p, "x"));
    }
}
