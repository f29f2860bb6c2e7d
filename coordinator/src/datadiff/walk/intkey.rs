//! The chunk walk of a table keyed by one integer column (see
//! `fleetsync_mysql::datadiff::intkey`).
//!
//! Spans `lo <= k <= hi` are cut by arithmetic from `MIN(k)` to `MAX(k)` over both sides, so
//! there is no boundary scan and both sides checksum concurrently all the time. A span's
//! width follows the target chunk time (by at most 4x per chunk, as in the generic walk); a
//! span whose optimizer estimate exceeds [`NARROW_ABOVE`] times the rows wanted is narrowed
//! before it runs.
//!
//! Drill-down in one scan: a differing span is checksummed again per bucket of about
//! [`BUCKET_ROWS`] rows (`GROUP BY (k - lo) DIV width`), and then row hashes are read only for
//! the buckets that differ. Differences cluster (a bad import, a missed range), so after a
//! span whose differences reach into its last quarter the next span is checksummed per
//! bucket right away ("drilling"), which saves its second scan.
//!
//! Sums are DOUBLEs here (cheaper to accumulate than DECIMALs, above all per bucket): exact
//! while an entry holds fewer than `FLOAT_EXACT_ROWS` (2^21) rows; spans aim at half that at
//! most, and a span with a larger entry is checksummed again with DECIMAL sums.

use std::time::{Duration, Instant};

use fleetsync_mysql::datadiff::expr::FLOAT_EXACT_ROWS;
use fleetsync_mysql::datadiff::intkey::{IntSpan, MAX_SPAN};
use fleetsync_mysql::SourceError;
use fleetsync_proto::datadiff::{ChunkChecksum, TableReport};

use super::{Walk, MIN_CHUNK_ROWS};
use crate::datadiff::{INITIAL_CHUNK_ROWS, METRIC_CHUNKS};

/// Rows per bucket when a span is checksummed per bucket: the rows read again for one
/// differing row.
const BUCKET_ROWS: u64 = 256;
/// A span estimated at more than this many times the rows wanted is narrowed first (InnoDB's
/// range estimates run up to about 2x high; this guards against jumps in key density, not
/// for precision).
const NARROW_ABOVE: u64 = 4;
/// Rows wanted in one span at most: half of what DOUBLE sums take exactly, so that the
/// DECIMAL re-run of `bucket_pair` stays rare.
const MAX_SPAN_ROWS: u64 = FLOAT_EXACT_ROWS / 2;
/// Narrowing attempts for a span the optimizer estimates too large.
const NARROW_TRIES: usize = 4;

type Buckets = std::collections::BTreeMap<u64, ChunkChecksum>;

impl Walk<'_> {
    /// The chunk walk over integer key spans.
    pub async fn int_chunks(&mut self, report: &mut TableReport) -> Result<(), SourceError> {
        let (a, b) = tokio::join!(
            self.source.int_key_bounds(self.s),
            self.target.int_key_bounds(self.t)
        );
        let (a, b) = (a?, b?);
        // Spans also end where one side's keys end (or before the other's start): the keys
        // beyond are on one side only, and a span holding just them is drilled cheaply
        // instead of re-scanning a large equal stretch with them.
        let breaks: Vec<i128> = [a, b]
            .into_iter()
            .flatten()
            .flat_map(|(l, h)| [l - 1, h])
            .collect();
        let (lo, hi) = match (a, b) {
            (None, None) => {
                // Both empty: one (empty) chunk, as the generic walk reports it.
                let full = IntSpan { lo: 0, hi: 0 };
                let (x, y) = self.bucket_pair(full, None).await?;
                report.chunks += 1;
                self.compare_span(full, None, x, y, report).await?;
                return Ok(());
            }
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) => (x.0.min(y.0), x.1.max(y.1)),
        };
        let est = self.s.estimated_rows.max(self.t.estimated_rows).max(1);
        let density = est as f64 / ((hi - lo) as f64 + 1.0);
        let mut goal = INITIAL_CHUNK_ROWS;
        let mut width = width_for(goal, density);
        let mut start = lo;
        let mut drilling = false;
        while start <= hi {
            if self.over_budget(report) {
                return Ok(());
            }
            let mut span = IntSpan {
                lo: start,
                hi: end_of(start, width, hi),
            };
            let cut = breaks.iter().filter(|&&c| c >= start && c < span.hi).min();
            if let Some(&cut) = cut {
                span.hi = cut;
            }
            span = self.narrow(span, goal).await?;
            let t0 = Instant::now();
            let bucket = drilling.then(|| bucket_width(span, goal));
            let (x, y) = self.bucket_pair(span, bucket).await?;
            let took = t0.elapsed();
            report.chunks += 1;
            let rows = x
                .values()
                .map(|c| c.rows)
                .sum::<u64>()
                .max(y.values().map(|c| c.rows).sum::<u64>());
            tracing::debug!(
                table = %self.s.name(),
                lo = %span.lo,
                hi = %span.hi,
                rows,
                bucketed = bucket.is_some(),
                differs = x != y,
                ms = took.as_millis() as u64,
                "data diff span"
            );
            drilling = self.compare_span(span, bucket, x, y, report).await?;
            let factor = factor(took, self.opts.chunk_time);
            if rows > 0 {
                goal = ((rows as f64 * factor) as u64).clamp(MIN_CHUNK_ROWS, MAX_SPAN_ROWS);
            }
            if cut.is_none() {
                // A span cut short at a side's end says little about the next one's width.
                width = ((span.width() as f64 * factor) as u128).clamp(1, MAX_SPAN);
            }
            start = span.hi + 1;
        }
        Ok(())
    }

    /// Both sides' bucket checksums of `span`, computed concurrently: DOUBLE sums (cheaper),
    /// taken again as exact DECIMALs in the rare case that an entry holds too many rows for
    /// a DOUBLE to stay exact.
    async fn bucket_pair(
        &mut self,
        span: IntSpan,
        bucket: Option<u128>,
    ) -> Result<(Buckets, Buckets), SourceError> {
        let mut float = true;
        loop {
            let (a, b) = tokio::join!(
                self.source.bucket_checksums(self.s, span, bucket, float),
                self.target.bucket_checksums(self.t, span, bucket, float)
            );
            metrics::counter!(METRIC_CHUNKS).increment(1);
            let (a, b) = (a?, b?);
            let exact = a
                .values()
                .chain(b.values())
                .all(|c| c.rows < FLOAT_EXACT_ROWS);
            if exact || !float {
                return Ok((a, b));
            }
            float = false;
        }
    }

    /// Counts the span's rows and drills into it when the sides differ: per-bucket checksums
    /// (a second scan, unless `bucket` says they were taken already), then row hashes of the
    /// differing buckets. Returns whether differences reach into the span's last quarter
    /// (then the next span is checksummed per bucket right away).
    async fn compare_span(
        &mut self,
        span: IntSpan,
        bucket: Option<u128>,
        x: Buckets,
        y: Buckets,
        report: &mut TableReport,
    ) -> Result<bool, SourceError> {
        let rows = |m: &Buckets| m.values().map(|c| c.rows).sum::<u64>();
        report.rows_source += rows(&x);
        report.rows_target += rows(&y);
        if x == y {
            return Ok(false);
        }
        let (width, x, y) = match bucket {
            Some(w) => (w, x, y),
            None => {
                let w = bucket_width(span, rows(&x).max(rows(&y)));
                let (x, y) = self.bucket_pair(span, Some(w)).await?;
                (w, x, y)
            }
        };
        let spans = differing_spans(span, width, &x, &y);
        let (rs, rt) = tokio::join!(
            self.source.row_hashes_in(self.s, &spans),
            self.target.row_hashes_in(self.t, &spans)
        );
        self.match_rows(rs?, rt?);
        let tail = span.hi - (span.width() / 4) as i128;
        Ok(spans.last().is_some_and(|s| s.hi >= tail))
    }

    /// Narrows `span` while the optimizer estimates more than [`NARROW_ABOVE`] times `goal`
    /// rows in it.
    async fn narrow(&mut self, mut span: IntSpan, goal: u64) -> Result<IntSpan, SourceError> {
        for _ in 0..NARROW_TRIES {
            if span.lo == span.hi {
                break;
            }
            let est = self.source.estimate_rows(self.s, span).await?;
            if est <= goal.saturating_mul(NARROW_ABOVE) {
                break;
            }
            let w = (span.width() as f64 * goal as f64 / est as f64) as u128;
            span.hi = end_of(span.lo, w.max(1), span.hi);
        }
        Ok(span)
    }
}

/// The last key of a span of `width` values from `start`, at most `hi`.
fn end_of(start: i128, width: u128, hi: i128) -> i128 {
    let w = width.clamp(1, MAX_SPAN) as i128;
    start.saturating_add(w - 1).min(hi)
}

/// Key values per `goal` rows at `density` rows per key value.
fn width_for(goal: u64, density: f64) -> u128 {
    ((goal as f64 / density.max(f64::MIN_POSITIVE)) as u128).clamp(1, MAX_SPAN)
}

/// The bucket width giving about [`BUCKET_ROWS`] rows (up to twice that) per bucket in a
/// span of `rows` rows.
fn bucket_width(span: IntSpan, rows: u64) -> u128 {
    let buckets = rows.div_ceil(BUCKET_ROWS).max(1);
    // A power of two (the bucket is then a shift): at most 2x the rows aimed at.
    span.width()
        .div_ceil(u128::from(buckets))
        .max(1)
        .next_power_of_two()
}

/// The key spans of the buckets whose checksums differ, adjacent ones merged.
fn differing_spans(span: IntSpan, width: u128, x: &Buckets, y: &Buckets) -> Vec<IntSpan> {
    let mut ids: Vec<u64> = x
        .iter()
        .filter(|(b, c)| y.get(b) != Some(c))
        .map(|(b, _)| *b)
        .chain(y.keys().filter(|b| !x.contains_key(b)).copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out: Vec<IntSpan> = Vec::new();
    for b in ids {
        let lo = span.lo + (u128::from(b) * width) as i128;
        let hi = end_of(lo, width, span.hi);
        match out.last_mut() {
            Some(last) if last.hi + 1 == lo => last.hi = hi,
            _ => out.push(IntSpan { lo, hi }),
        }
    }
    out
}

/// How much the next chunk should grow (or shrink) to take the target time: 0.25x..4x.
fn factor(took: Duration, target: Duration) -> f64 {
    (target.as_secs_f64() / took.as_secs_f64().max(0.001)).clamp(0.25, 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rows: u64, s: u128) -> ChunkChecksum {
        ChunkChecksum {
            rows,
            crc32_sum: s,
            crc32c_sum: s,
        }
    }

    #[test]
    fn differing_buckets_become_merged_key_spans() {
        let span = IntSpan { lo: -10, hi: 89 };
        let x: Buckets = [(0, c(10, 1)), (1, c(10, 2)), (2, c(10, 3)), (5, c(1, 1))]
            .into_iter()
            .collect();
        let y: Buckets = [(0, c(10, 1)), (1, c(10, 9)), (2, c(9, 3)), (9, c(1, 1))]
            .into_iter()
            .collect();
        let got = differing_spans(span, 10, &x, &y);
        assert_eq!(
            got,
            vec![
                IntSpan { lo: 0, hi: 19 },
                IntSpan { lo: 40, hi: 49 },
                IntSpan { lo: 80, hi: 89 },
            ]
        );
    }

    #[test]
    fn spans_stay_within_the_key_range_and_the_cap() {
        assert_eq!(end_of(5, 10, 100), 14);
        assert_eq!(end_of(5, 10, 8), 8);
        assert_eq!(
            end_of(i128::from(u64::MAX) - 1, MAX_SPAN * 4, i128::from(u64::MAX)),
            i128::from(u64::MAX)
        );
        assert_eq!(end_of(-5, 0, 100), -5);
        let s = IntSpan { lo: 1, hi: 10_000 };
        assert_eq!(bucket_width(s, 5_120), 512);
        assert_eq!(bucket_width(s, 0), 16_384);
        assert_eq!(width_for(1_000, 0.5), 2_000);
    }
}
