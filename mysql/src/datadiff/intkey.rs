//! The integer-key fast path: key ranges cut by arithmetic and per-bucket checksums.
//!
//! For a table whose key is one integer column `k`, a chunk is `k BETWEEN lo AND hi`
//! ([`IntSpan`], inclusive) cut by arithmetic on the key values: no boundary query (the
//! `LIMIT 1 OFFSET n` scan of the generic walk), so both sides are busy checksumming all the
//! time. The coordinator sizes spans from the rows earlier spans held and checks a new span
//! against the optimizer's estimate ([`Session::estimate_rows`]: `EXPLAIN`, i.e. index dives,
//! no scan) before it runs, so a dense stretch after a sparse one cannot make one query huge.
//!
//! A span can be checksummed per bucket, `(k - lo) DIV width`, in the same scan
//! ([`Session::bucket_checksums`]): the drill-down then reads row hashes only for the buckets
//! that differ, instead of re-checksumming sub-ranges.
//!
//! Invariant: `hi - lo < 2^62` (the coordinator caps spans at [`MAX_SPAN`]) and every row of
//! the span has `k >= lo`, so `k - lo` never overflows a BIGINT, signed or unsigned.

use std::collections::BTreeMap;

use fleetsync_proto::datadiff::{ChunkChecksum, RowHash};
use fleetsync_proto::ColumnType;
use mysql_async::prelude::Queryable;

use super::{err, expr, DiffTable, Session};
use crate::SourceError;

/// The widest span (`hi - lo`) the fast path uses.
pub const MAX_SPAN: u128 = 1 << 62;

/// `lo <= k <= hi` over an integer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntSpan {
    pub lo: i128,
    pub hi: i128,
}

impl IntSpan {
    /// Key values the span covers.
    pub fn width(&self) -> u128 {
        (self.hi - self.lo) as u128 + 1
    }
}

impl DiffTable {
    /// The key column when the key is a single integer column (the fast path applies).
    pub fn int_key(&self) -> Option<usize> {
        let key: Vec<usize> = self.key().collect();
        let &[k] = key.as_slice() else {
            return None;
        };
        matches!(
            self.schema.columns[k].ty,
            ColumnType::TinyInt
                | ColumnType::SmallInt
                | ColumnType::MediumInt
                | ColumnType::Int
                | ColumnType::BigInt
        )
        .then_some(k)
    }
}

/// An integer key value as i128 (both signed and unsigned BIGINT fit).
fn int_of(v: &mysql_async::Value) -> Option<i128> {
    match v {
        mysql_async::Value::Int(i) => Some(i128::from(*i)),
        mysql_async::Value::UInt(u) => Some(i128::from(*u)),
        mysql_async::Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// `k BETWEEN lo AND hi OR ...`.
fn spans_condition(k: &str, spans: &[IntSpan]) -> String {
    spans
        .iter()
        .map(|s| format!("({k} BETWEEN {} AND {})", s.lo, s.hi))
        .collect::<Vec<_>>()
        .join(" OR ")
}

impl Session {
    /// `(MIN(k), MAX(k))` of the table (read from the index ends), `None` when it is empty.
    pub async fn int_key_bounds(
        &mut self,
        t: &DiffTable,
    ) -> Result<Option<(i128, i128)>, SourceError> {
        let k = key_ident(t)?;
        let sql = format!("SELECT MIN({k}), MAX({k}) FROM {}", expr::from_table(t));
        let ctx = format!("reading the key range of {}", t.name());
        let row: Option<mysql_async::Row> = self
            .conn
            .query_first(sql)
            .await
            .map_err(err(&self.server, &ctx))?;
        let Some(row) = row else { return Ok(None) };
        let vals = row.unwrap();
        match (vals.first().and_then(int_of), vals.get(1).and_then(int_of)) {
            (Some(lo), Some(hi)) => Ok(Some((lo, hi))),
            _ => Ok(None),
        }
    }

    /// The optimizer's estimate of the rows in `span` (`EXPLAIN`: index dives, no scan).
    pub async fn estimate_rows(
        &mut self,
        t: &DiffTable,
        span: IntSpan,
    ) -> Result<u64, SourceError> {
        let k = key_ident(t)?;
        let sql = format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {k} BETWEEN {} AND {}",
            expr::from_table(t),
            span.lo,
            span.hi
        );
        let ctx = format!("estimating a chunk of {}", t.name());
        let row: Option<mysql_async::Row> = self
            .conn
            .query_first(sql)
            .await
            .map_err(err(&self.server, &ctx))?;
        Ok(row
            .and_then(|r| r.get_opt::<Option<u64>, _>("rows").and_then(Result::ok))
            .flatten()
            .unwrap_or(0))
    }

    /// Checksums of `span`: one per bucket `(k - lo) DIV width` holding rows, or with
    /// `width == None` a single entry (bucket 0, also when the span is empty). With `float`
    /// the sums are DOUBLEs, exact only for entries of fewer than
    /// [`expr::FLOAT_EXACT_ROWS`] rows: the caller checks the counts.
    pub async fn bucket_checksums(
        &mut self,
        t: &DiffTable,
        span: IntSpan,
        width: Option<u128>,
        float: bool,
    ) -> Result<BTreeMap<u64, ChunkChecksum>, SourceError> {
        let k = key_ident(t)?;
        let (bucket, group) = match width {
            Some(w) => (
                // A power of two is a shift (5% cheaper per row than DIV, measured).
                if w.is_power_of_two() {
                    format!("({k} - ({})) >> {}", span.lo, w.trailing_zeros())
                } else {
                    format!("({k} - ({})) DIV {}", span.lo, w.max(1))
                },
                " GROUP BY 1 ORDER BY NULL",
            ),
            None => ("0".to_string(), ""),
        };
        let sql = format!(
            "SELECT {bucket}, {} FROM {} WHERE {k} BETWEEN {} AND {}{group}",
            expr::chunk_aggregates(t, self.checksum, float),
            expr::from_table(t),
            span.lo,
            span.hi
        );
        self.throttle().await?;
        let ctx = format!("checksumming {}", t.name());
        let rows: Vec<(u64, u64, Vec<u8>, Vec<u8>)> = self
            .conn
            .query(sql)
            .await
            .map_err(err(&self.server, &ctx))?;
        let mut out = BTreeMap::new();
        for (b, n, x, y) in rows {
            out.insert(b, self.chunk_checksum(&ctx, n, &x, &y)?);
        }
        Ok(out)
    }

    /// Key, identity and hash of every row in `spans`.
    pub async fn row_hashes_in(
        &mut self,
        t: &DiffTable,
        spans: &[IntSpan],
    ) -> Result<Vec<RowHash>, SourceError> {
        let k = key_ident(t)?;
        let mut out = Vec::new();
        for batch in spans.chunks(200) {
            let cond = spans_condition(&k, batch);
            out.extend(self.row_hashes_where(t, &cond).await?);
        }
        Ok(out)
    }
}

fn key_ident(t: &DiffTable) -> Result<String, SourceError> {
    let k = t.int_key().ok_or_else(|| SourceError::NeedsOperator {
        server: String::new(),
        message: format!("{}: the key is not a single integer column", t.name()),
    })?;
    Ok(expr::ident(&t.schema.columns[k].name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_render_as_between() {
        let s = [IntSpan { lo: -5, hi: 3 }, IntSpan { lo: 10, hi: 10 }];
        assert_eq!(
            spans_condition("`id`", &s),
            "(`id` BETWEEN -5 AND 3) OR (`id` BETWEEN 10 AND 10)"
        );
        assert_eq!(s[0].width(), 9);
    }
}
