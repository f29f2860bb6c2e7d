//! Walking one table: chunks of key ranges, the drill-down into differing chunks, and the
//! whole-table multiset comparison of keyless tables.
//!
//! Chunks: the source cuts the next range (`lower < key <= upper`, `upper` = the key
//! `rows` rows further, or open at the end); both sides checksum it concurrently; the chunk
//! size then moves toward the target chunk time (by at most 4x per chunk). A differing chunk
//! is split into [`SPLIT`] sub-ranges cut from the side holding more rows in it, each
//! checksummed again, until a differing range holds at most [`LEAF_ROWS`] rows on both sides;
//! then both sides' row hashes are matched by key identity (collation weights, so `abc` and
//! `ABC` under a case-insensitive key are one row whose contents differ).

mod intkey;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleetsync_mysql::datadiff::{DiffTable, Session};
use fleetsync_mysql::SourceError;
use fleetsync_proto::codec::value_to_json;
use fleetsync_proto::datadiff::{ChunkChecksum, KeyRange, KeyValues, RowHash, TableReport};
use fleetsync_proto::Value;

use super::{Options, INITIAL_CHUNK_ROWS, METRIC_CHUNKS};

/// Rows (on the larger side) at which a differing range is compared row by row.
const LEAF_ROWS: u64 = 2_000;
/// Sub-ranges a differing range is split into.
const SPLIT: u64 = 16;
/// Chunk size bounds.
const MIN_CHUNK_ROWS: u64 = 100;
const MAX_CHUNK_ROWS: u64 = 5_000_000;

/// The differing rows of a table. For keyed tables the vectors hold keys (source keys for
/// `only_in_source` and `different`, target keys for `only_in_target`); for keyless tables
/// whole rows, one entry per surplus copy.
#[derive(Debug, Default)]
pub struct Found {
    pub keyless: bool,
    pub only_in_source: Vec<KeyValues>,
    pub only_in_target: Vec<KeyValues>,
    pub different: Vec<KeyValues>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.only_in_source.is_empty()
            && self.only_in_target.is_empty()
            && self.different.is_empty()
    }

    /// Writes the keys as JSON objects into the report.
    pub fn report_into(&self, s: &DiffTable, t: &DiffTable, report: &mut TableReport) {
        let cols: Vec<usize> = if self.keyless {
            (0..s.schema.columns.len()).collect()
        } else {
            s.key().collect()
        };
        let json = |table: &DiffTable, k: &KeyValues| {
            let mut m = serde_json::Map::new();
            for (&i, v) in cols.iter().zip(k) {
                let c = &table.schema.columns[i];
                m.insert(c.name.clone(), value_to_json(v, c));
            }
            serde_json::Value::Object(m)
        };
        report.only_in_source = self.only_in_source.iter().map(|k| json(s, k)).collect();
        report.only_in_target = self.only_in_target.iter().map(|k| json(t, k)).collect();
        report.different = self.different.iter().map(|k| json(s, k)).collect();
    }
}

pub struct Walk<'a> {
    source: &'a mut Session,
    target: &'a mut Session,
    s: &'a DiffTable,
    t: &'a DiffTable,
    opts: &'a Options,
    started: Instant,
    found: Found,
}

impl<'a> Walk<'a> {
    pub fn new(
        source: &'a mut Session,
        target: &'a mut Session,
        s: &'a DiffTable,
        t: &'a DiffTable,
        opts: &'a Options,
        started: Instant,
    ) -> Walk<'a> {
        Walk {
            source,
            target,
            s,
            t,
            opts,
            started,
            found: Found::default(),
        }
    }

    pub fn into_found(self) -> Found {
        self.found
    }

    /// Both sides' checksums of `range`, computed concurrently.
    async fn checksums(
        &mut self,
        range: &KeyRange,
    ) -> Result<(ChunkChecksum, ChunkChecksum), SourceError> {
        let (a, b) = tokio::join!(
            self.source.checksum(self.s, range),
            self.target.checksum(self.t, range)
        );
        metrics::counter!(METRIC_CHUNKS).increment(1);
        Ok((a?, b?))
    }

    /// Sets the skip reason when the table's time budget is spent or the diff is cancelled.
    fn over_budget(&self, report: &mut TableReport) -> bool {
        if self.opts.cancel.is_cancelled() {
            report.skipped = Some(format!(
                "skipped: the diff was cancelled ({} chunks, {} source rows compared)",
                report.chunks, report.rows_source
            ));
            return true;
        }
        match self.opts.max_table_time {
            Some(max) if self.started.elapsed() > max => {
                report.skipped = Some(format!(
                    "skipped: not finished within --max-table-seconds {} ({} chunks, {} source rows compared)",
                    max.as_secs(),
                    report.chunks,
                    report.rows_source
                ));
                true
            }
            _ => false,
        }
    }

    /// The chunk walk of a keyed table: integer key spans when the key is one integer column
    /// (see [`intkey`]), key ranges cut at real keys otherwise.
    pub async fn chunks(&mut self, report: &mut TableReport) -> Result<(), SourceError> {
        if self.s.int_key().is_some() && self.t.int_key().is_some() {
            return self.int_chunks(report).await;
        }
        let mut lower: Option<KeyValues> = None;
        let mut rows = INITIAL_CHUNK_ROWS;
        loop {
            if self.over_budget(report) {
                return Ok(());
            }
            let t0 = Instant::now();
            let open = KeyRange {
                lower: lower.clone(),
                upper: None,
            };
            let upper = self.source.boundary(self.s, &open, rows).await?;
            let range = KeyRange {
                lower,
                upper: upper.clone(),
            };
            let (a, b) = self.checksums(&range).await?;
            let took = t0.elapsed();
            report.chunks += 1;
            report.rows_source += a.rows;
            report.rows_target += b.rows;
            if a != b {
                self.drill(range, a, b).await?;
            }
            rows = adapt(rows, took, self.opts.chunk_time);
            match upper {
                None => return Ok(()),
                Some(u) => lower = Some(u),
            }
        }
    }

    /// Narrows a differing range down to its differing rows.
    async fn drill(
        &mut self,
        range: KeyRange,
        a: ChunkChecksum,
        b: ChunkChecksum,
    ) -> Result<(), SourceError> {
        let mut stack = vec![(range, a.rows, b.rows)];
        while let Some((r, na, nb)) = stack.pop() {
            if na.max(nb) <= LEAF_ROWS {
                self.rows(&r).await?;
                continue;
            }
            let step = na.max(nb).div_ceil(SPLIT);
            let mut lower = r.lower.clone();
            loop {
                let rest = KeyRange {
                    lower: lower.clone(),
                    upper: r.upper.clone(),
                };
                let cut = if nb > na {
                    self.target.boundary(self.t, &rest, step).await?
                } else {
                    self.source.boundary(self.s, &rest, step).await?
                };
                let cut = cut.filter(|c| Some(c) != r.upper.as_ref());
                let sub = KeyRange {
                    lower,
                    upper: cut.clone().or_else(|| r.upper.clone()),
                };
                let (x, y) = self.checksums(&sub).await?;
                if x != y {
                    stack.push((sub, x.rows, y.rows));
                }
                match cut {
                    Some(c) => lower = Some(c),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Row-by-row comparison of a small range.
    async fn rows(&mut self, r: &KeyRange) -> Result<(), SourceError> {
        let (rs, rt) = tokio::join!(
            self.source.row_hashes(self.s, r),
            self.target.row_hashes(self.t, r)
        );
        self.match_rows(rs?, rt?);
        Ok(())
    }

    /// Matches both sides' row hashes of the same key ranges by key identity.
    fn match_rows(&mut self, rs: Vec<RowHash>, rt: Vec<RowHash>) {
        let mut by_identity: HashMap<Vec<u8>, (KeyValues, u64)> = rt
            .into_iter()
            .map(|h| (h.identity, (h.key, h.hash)))
            .collect();
        for h in rs {
            match by_identity.remove(&h.identity) {
                Some((_, hash)) if hash == h.hash => {}
                Some(_) => self.found.different.push(h.key),
                None => self.found.only_in_source.push(h.key),
            }
        }
        let mut rest: Vec<KeyValues> = by_identity.into_values().map(|(k, _)| k).collect();
        rest.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
        self.found.only_in_target.extend(rest);
    }

    /// Keyless tables: one checksum of the whole table; when it differs, the multisets of
    /// row hashes, then the surplus rows of each side.
    pub async fn whole_table(&mut self, report: &mut TableReport) -> Result<(), SourceError> {
        self.found.keyless = true;
        let (a, b) = self.checksums(&KeyRange::all()).await?;
        report.chunks = 1;
        report.rows_source = a.rows;
        report.rows_target = b.rows;
        if a == b {
            return Ok(());
        }
        let none = |_: u64| false;
        let (hs, ht) = tokio::join!(
            self.source.all_row_hashes(self.s, &none),
            self.target.all_row_hashes(self.t, &none)
        );
        let mut balance: HashMap<u64, i64> = HashMap::new();
        for (h, _) in hs? {
            *balance.entry(h).or_default() += 1;
        }
        for (h, _) in ht? {
            *balance.entry(h).or_default() -= 1;
        }
        balance.retain(|_, n| *n != 0);
        let surplus = |positive: bool| {
            let b = &balance;
            move |h: u64| b.get(&h).is_some_and(|n| (*n > 0) == positive)
        };
        let (src_keep, tgt_keep) = (surplus(true), surplus(false));
        let (rs, rt) = tokio::join!(
            self.source.all_row_hashes(self.s, &src_keep),
            self.target.all_row_hashes(self.t, &tgt_keep)
        );
        let mut left = balance.clone();
        self.found.only_in_source = take_surplus(rs?, &mut left, 1);
        self.found.only_in_target = take_surplus(rt?, &mut left, -1);
        Ok(())
    }
}

/// The rows whose hash still has surplus (`sign` = +1 source, -1 target), one per copy.
fn take_surplus(
    rows: Vec<(u64, Option<Vec<Value>>)>,
    left: &mut HashMap<u64, i64>,
    sign: i64,
) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for (h, row) in rows {
        let (Some(row), Some(n)) = (row, left.get_mut(&h)) else {
            continue;
        };
        if *n * sign > 0 {
            *n -= sign;
            out.push(row);
        }
    }
    out
}

/// The next chunk size: scaled toward the target time, by at most 4x either way.
fn adapt(rows: u64, took: Duration, target: Duration) -> u64 {
    let took = took.as_secs_f64().max(0.001);
    let factor = (target.as_secs_f64() / took).clamp(0.25, 4.0);
    ((rows as f64 * factor) as u64).clamp(MIN_CHUNK_ROWS, MAX_CHUNK_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_moves_toward_target_time() {
        let t = Duration::from_millis(500);
        assert_eq!(adapt(1000, Duration::from_millis(50), t), 4000);
        assert_eq!(adapt(1000, Duration::from_millis(250), t), 2000);
        assert_eq!(adapt(1000, Duration::from_secs(4), t), 250);
        assert_eq!(adapt(100, Duration::from_secs(10), t), MIN_CHUNK_ROWS);
    }

    #[test]
    fn surplus_copies_are_taken_once_each() {
        let mut left: HashMap<u64, i64> = [(1, 2), (2, -1)].into_iter().collect();
        let r = |n: i64| Some(vec![Value::Int(n)]);
        let src = take_surplus(
            vec![(1, r(1)), (1, r(1)), (1, r(1)), (3, r(3))],
            &mut left,
            1,
        );
        assert_eq!(src.len(), 2);
        let tgt = take_surplus(vec![(2, r(2)), (2, r(2))], &mut left, -1);
        assert_eq!(tgt.len(), 1);
    }
}
