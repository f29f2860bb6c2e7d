//! Source coordinates. Ordering, printing and parsing are part of the contract.
//!
//! * [`BinlogPosition`] prints as `file:pos` (e.g. `binlog.000003:1234`) and parses back by
//!   splitting at the **last** `:`. Positions order by the numeric suffix of the file name
//!   (the digits after the last `.`, compared as numbers of any length, so `binlog.000010` comes
//!   after `binlog.000009`; a file without such a suffix sorts before any file with one), then
//!   by file name, then by byte offset.
//! * [`Gtid`] prints as MariaDB does, `domain-server-seq` (e.g. `0-1-100`).
//! * [`GtidSet`] prints as a comma-separated list sorted by domain (`0-1-100,1-2-7`); the empty
//!   set prints as the empty string. Parsing accepts what `@@gtid_binlog_pos` /
//!   `@@gtid_slave_pos` return: the empty string, surrounding whitespace and whitespace around
//!   the commas. A domain may appear only once.
//! * [`Position`] prints as `file:pos`, or `file:pos@<gtid set>` when the GTID position is known
//!   (so binlog file names must not contain `@`); parsing splits at the **first** `@`. Positions
//!   order by their binlog coordinate; the GTID set only breaks ties, so that the order is total
//!   and consistent with `Eq`.
//!
//! Every `Display` output parses back (`FromStr`) to an equal value.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A binlog file and byte offset, e.g. `binlog.000003:1234`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

/// A MariaDB GTID `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

/// A MariaDB GTID position: the last GTID per replication domain, e.g. `0-1-100,1-2-7`.
/// Each entry is keyed by its GTID's domain (maintained by [`GtidSet::update`] and `FromStr`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GtidSet(pub BTreeMap<u32, Gtid>);

/// Where a source stream stands: the binlog coordinate and, when known, the GTID position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub binlog: BinlogPosition,
    pub gtid: Option<GtidSet>,
}

/// Why a coordinate string did not parse. Every variant names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "invalid binlog position {input:?}: {reason} (expected `file:pos`, e.g. `binlog.000003:1234`)"
    )]
    BinlogPosition { input: String, reason: String },
    #[error("invalid GTID {input:?}: {reason} (expected `domain-server-seq`, e.g. `0-1-100`)")]
    Gtid { input: String, reason: String },
    #[error(
        "invalid GTID set {input:?}: {reason} (expected comma-separated `domain-server-seq`, e.g. `0-1-100,1-2-7`)"
    )]
    GtidSet { input: String, reason: String },
    #[error("invalid position {input:?}: {reason} (expected `file:pos` or `file:pos@gtid_set`)")]
    Position { input: String, reason: String },
}

// ---------------------------------------------------------------------------------------------
// BinlogPosition

impl BinlogPosition {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogPosition {
            file: file.into(),
            pos,
        }
    }

    /// The digits after the last `.` of the file name, without leading zeros (`"0"` stays
    /// `""`), or `None` when the name has no such numeric suffix.
    fn numeric_suffix(&self) -> Option<&str> {
        let (_, digits) = self.file.rsplit_once('.')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(digits.trim_start_matches('0'))
    }
}

/// Compares two decimal digit strings without leading zeros as numbers of any size.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        let suffix = match (self.numeric_suffix(), other.numeric_suffix()) {
            (Some(a), Some(b)) => cmp_digits(a, b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        };
        suffix
            .then_with(|| self.file.cmp(&other.file))
            .then_with(|| self.pos.cmp(&other.pos))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// Parses an unsigned decimal integer made of ASCII digits only (no sign, no whitespace).
fn parse_digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for BinlogPosition {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::BinlogPosition {
            input: s.to_owned(),
            reason,
        };
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| err("missing `:`".into()))?;
        if file.is_empty() {
            return Err(err("empty file name".into()));
        }
        let pos = parse_digits(pos)
            .ok_or_else(|| err(format!("offset {pos:?} is not an unsigned 64-bit integer")))?;
        Ok(BinlogPosition {
            file: file.to_owned(),
            pos,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Gtid

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::Gtid {
            input: s.to_owned(),
            reason,
        };
        let parts: Vec<&str> = s.split('-').collect();
        let [domain, server_id, seq] = parts[..] else {
            return Err(err(format!(
                "found {} `-`-separated part(s), not 3",
                parts.len()
            )));
        };
        let domain = parse_digits(domain).ok_or_else(|| {
            err(format!(
                "domain {domain:?} is not an unsigned 32-bit integer"
            ))
        })?;
        let server_id = parse_digits(server_id).ok_or_else(|| {
            err(format!(
                "server id {server_id:?} is not an unsigned 32-bit integer"
            ))
        })?;
        let seq = parse_digits(seq).ok_or_else(|| {
            err(format!(
                "sequence {seq:?} is not an unsigned 64-bit integer"
            ))
        })?;
        Ok(Gtid {
            domain,
            server_id,
            seq,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// GtidSet

impl GtidSet {
    pub fn new() -> Self {
        GtidSet::default()
    }

    /// Records `g` as the last GTID of its domain, replacing the previous one.
    pub fn update(&mut self, g: Gtid) {
        self.0.insert(g.domain, g);
    }

    /// The last GTID of `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<&Gtid> {
        self.0.get(&domain)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The GTIDs in domain order.
    pub fn iter(&self) -> impl Iterator<Item = &Gtid> + '_ {
        self.0.values()
    }
}

impl FromIterator<Gtid> for GtidSet {
    /// Later GTIDs of a domain replace earlier ones, as with [`GtidSet::update`].
    fn from_iter<I: IntoIterator<Item = Gtid>>(iter: I) -> Self {
        let mut set = GtidSet::new();
        for g in iter {
            set.update(g);
        }
        set
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for GtidSet {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::GtidSet {
            input: s.to_owned(),
            reason,
        };
        let mut set = GtidSet::new();
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(set);
        }
        for item in trimmed.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(err("empty element between commas".into()));
            }
            let g = item.parse::<Gtid>().map_err(|e| err(e.to_string()))?;
            if set.0.insert(g.domain, g).is_some() {
                return Err(err(format!("domain {} appears more than once", g.domain)));
            }
        }
        Ok(set)
    }
}

// ---------------------------------------------------------------------------------------------
// Position

impl Position {
    /// A position with no known GTID position.
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Position {
            binlog: BinlogPosition::new(file, pos),
            gtid: None,
        }
    }
}

/// Tie-break between GTID positions: `None` first, then the entries in domain order, each
/// compared field by field. Only there to make [`Position`]'s order total; not a progress order.
fn cmp_gtid_sets(a: &Option<GtidSet>, b: &Option<GtidSet>) -> Ordering {
    let entries = |s: &GtidSet| {
        s.0.iter()
            .map(|(&k, g)| (k, g.domain, g.server_id, g.seq))
            .collect::<Vec<_>>()
    };
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => entries(a).cmp(&entries(b)),
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.binlog
            .cmp(&other.binlog)
            .then_with(|| cmp_gtid_sets(&self.gtid, &other.gtid))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.binlog)?;
        if let Some(gtid) = &self.gtid {
            write!(f, "@{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |e: ParseError| ParseError::Position {
            input: s.to_owned(),
            reason: e.to_string(),
        };
        let (binlog, gtid) = match s.split_once('@') {
            Some((binlog, gtid)) => (binlog, Some(gtid.parse::<GtidSet>().map_err(err)?)),
            None => (s, None),
        };
        Ok(Position {
            binlog: binlog.parse().map_err(err)?,
            gtid,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::{
        arb_binlog_position, arb_gtid, arb_gtid_set, arb_position, arb_position_small,
    };

    fn bp(s: &str) -> BinlogPosition {
        s.parse().unwrap()
    }

    #[test]
    fn binlog_order_uses_numeric_suffix() {
        assert!(bp("binlog.000010:4") > bp("binlog.000009:999999"));
        assert!(bp("binlog.10:4") > bp("binlog.000009:4"));
        assert!(bp("binlog.1000000:4") > bp("binlog.999999:4"));
        assert!(bp("binlog.000003:5") > bp("binlog.000003:4"));
        // Same number, different spelling: falls back to the file name, then the offset.
        assert_eq!(
            bp("binlog.000010:4").cmp(&bp("binlog.10:4")),
            "binlog.000010".cmp("binlog.10")
        );
        // Files without a numeric suffix sort first.
        assert!(bp("relay:9") < bp("binlog.000001:4"));
        assert!(bp("binlog.:9") < bp("binlog.000000:0"));
    }

    #[test]
    fn binlog_display_and_parse() {
        let p = BinlogPosition::new("binlog.000003", 1234);
        assert_eq!(p.to_string(), "binlog.000003:1234");
        assert_eq!(bp("binlog.000003:1234"), p);
        assert_eq!(bp("C:\\logs\\bin.000001:4").file, "C:\\logs\\bin.000001");
        for bad in [
            "binlog.000003",
            ":4",
            "binlog.000003:",
            "binlog.000003:-1",
            "b:+4",
            "b:4 ",
        ] {
            let err = bad.parse::<BinlogPosition>().unwrap_err();
            assert!(matches!(err, ParseError::BinlogPosition { .. }), "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = "binlog.000001:x"
            .parse::<BinlogPosition>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset \"x\""), "{err}");
    }

    #[test]
    fn gtid_display_and_parse() {
        let g = Gtid {
            domain: 0,
            server_id: 1,
            seq: 100,
        };
        assert_eq!(g.to_string(), "0-1-100");
        assert_eq!("0-1-100".parse::<Gtid>().unwrap(), g);
        for bad in [
            "",
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--2",
            "0-1-",
            "-0-1-2",
            "4294967296-1-1",
        ] {
            let err = bad.parse::<Gtid>().unwrap_err();
            assert!(matches!(err, ParseError::Gtid { .. }), "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn gtid_set_display_parse_and_update() {
        let mut set = GtidSet::new();
        assert!(set.is_empty());
        assert_eq!(set.to_string(), "");
        set.update(Gtid {
            domain: 1,
            server_id: 2,
            seq: 7,
        });
        set.update(Gtid {
            domain: 0,
            server_id: 1,
            seq: 99,
        });
        set.update(Gtid {
            domain: 0,
            server_id: 1,
            seq: 100,
        });
        assert_eq!(set.to_string(), "0-1-100,1-2-7");
        assert_eq!(
            set.get(0),
            Some(&Gtid {
                domain: 0,
                server_id: 1,
                seq: 100
            })
        );
        assert_eq!(set.get(5), None);
        assert_eq!(set.len(), 2);

        assert_eq!(" 1-2-7, 0-1-100\n".parse::<GtidSet>().unwrap(), set);
        assert_eq!("".parse::<GtidSet>().unwrap(), GtidSet::new());
        assert_eq!(" \n".parse::<GtidSet>().unwrap(), GtidSet::new());
        for bad in ["0-1-1,", ",0-1-1", "0-1-1,,1-1-1", "0-1-1,0-2-2", "0-1-x"] {
            let err = bad.parse::<GtidSet>().unwrap_err();
            assert!(matches!(err, ParseError::GtidSet { .. }), "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = "0-1-1,0-2-2".parse::<GtidSet>().unwrap_err().to_string();
        assert!(err.contains("domain 0 appears more than once"), "{err}");
    }

    #[test]
    fn position_display_and_parse() {
        let mut p = Position::new("binlog.000001", 4);
        assert_eq!(p.to_string(), "binlog.000001:4");
        assert_eq!("binlog.000001:4".parse::<Position>().unwrap(), p);
        p.gtid = Some("0-1-5,2-3-4".parse().unwrap());
        assert_eq!(p.to_string(), "binlog.000001:4@0-1-5,2-3-4");
        assert_eq!(
            "binlog.000001:4@0-1-5,2-3-4".parse::<Position>().unwrap(),
            p
        );
        p.gtid = Some(GtidSet::new());
        assert_eq!(p.to_string(), "binlog.000001:4@");
        assert_eq!("binlog.000001:4@".parse::<Position>().unwrap(), p);
        for bad in [
            "binlog.000001",
            "binlog.000001:4@0-1",
            "@0-1-1",
            "b:1@0-1-1@",
        ] {
            let err = bad.parse::<Position>().unwrap_err();
            assert!(matches!(err, ParseError::Position { .. }), "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn position_orders_by_binlog_first() {
        let mut a = Position::new("binlog.000002", 4);
        a.gtid = Some("0-1-1".parse().unwrap());
        let mut b = Position::new("binlog.000001", 900);
        b.gtid = Some("0-1-999".parse().unwrap());
        assert!(a > b);
        let c = Position::new("binlog.000002", 4);
        assert!(
            c < a,
            "no GTID sorts before some GTID at the same coordinate"
        );
    }

    fn check_total_order<T: Ord + std::fmt::Debug>(
        a: &T,
        b: &T,
        c: &T,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(a.cmp(b) == Ordering::Equal, a == b);
        prop_assert_eq!(a.cmp(b), b.cmp(a).reverse());
        prop_assert_eq!(a.partial_cmp(b), Some(a.cmp(b)));
        let mut v = [a, b, c];
        v.sort();
        prop_assert!(v[0] <= v[2], "transitivity: {:?}", v);
        Ok(())
    }

    proptest! {
        #[test]
        fn binlog_position_round_trips(p in arb_binlog_position()) {
            prop_assert_eq!(p.to_string().parse::<BinlogPosition>().unwrap(), p);
        }

        #[test]
        fn gtid_round_trips(g in arb_gtid()) {
            prop_assert_eq!(g.to_string().parse::<Gtid>().unwrap(), g);
        }

        #[test]
        fn gtid_set_round_trips(s in arb_gtid_set()) {
            let text = s.to_string();
            prop_assert_eq!(text.parse::<GtidSet>().unwrap(), s.clone());
            prop_assert_eq!(format!(" {text} \n").parse::<GtidSet>().unwrap(), s);
        }

        #[test]
        fn position_round_trips(p in arb_position()) {
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }

        #[test]
        fn position_order_is_total_and_consistent_with_eq(
            a in arb_position_small(), b in arb_position_small(), c in arb_position_small(),
        ) {
            check_total_order(&a, &b, &c)?;
            check_total_order(&a.binlog, &b.binlog, &c.binlog)?;
            if a.binlog != b.binlog {
                prop_assert_eq!(a.cmp(&b), a.binlog.cmp(&b.binlog));
            }
        }

        #[test]
        fn position_order_is_total_on_arbitrary_values(
            a in arb_position(), b in arb_position(), c in arb_position(),
        ) {
            check_total_order(&a, &b, &c)?;
            check_total_order(&a, &a.clone(), &b)?;
        }

        #[test]
        fn binlog_order_follows_file_number(
            n in any::<u32>(), m in any::<u32>(), p in 0u64..4, q in 0u64..4,
            wide_n in any::<bool>(), wide_m in any::<bool>(),
        ) {
            let name = |x: u32, wide: bool| if wide { format!("binlog.{x:010}") } else { format!("binlog.{x}") };
            let a = BinlogPosition::new(name(n, wide_n), p);
            let b = BinlogPosition::new(name(m, wide_m), q);
            if n != m {
                prop_assert_eq!(a.cmp(&b), n.cmp(&m));
            } else if wide_n == wide_m {
                prop_assert_eq!(a.cmp(&b), p.cmp(&q));
            }
        }
    }
}
