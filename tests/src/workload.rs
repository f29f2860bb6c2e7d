//! A seeded random OLTP workload: inserts, updates and deletes in multi-row transactions.
//!
//! The table is `(id BIGINT, k INT, s VARCHAR(64), d DECIMAL(12,4), t DATETIME(6),
//! b VARBINARY(32))`, with `id` the primary key or, for a keyless table, a plain column. The
//! generator tracks the live ids (and, for a keyless table, how many identical copies each has:
//! `INSERT … SELECT` makes exact duplicates on purpose), so updates and deletes hit existing rows
//! and the count of row changes is exact. Values cover NULLs, quotes, backslashes, 4-byte
//! UTF-8 and arbitrary bytes. Several transactions go to the server in one multi-statement
//! string; the same seed produces the same SQL.

use std::collections::HashMap;

use anyhow::Result;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::mariadb::{hex_literal, quote_ident, quote_str};

/// Largest transaction, in row changes.
pub const MAX_TXN_ROWS: u64 = 50;
/// SQL sent per round trip before it is flushed.
const BATCH_BYTES: usize = 64 * 1024;

/// Characters the random strings are drawn from: ASCII, SQL-special, 2/3/4-byte UTF-8.
const CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', '0', '9', ' ', '\'', '"', '\\', '%', '_', 'é', 'ß', 'ж', '中',
    '€', '😀', '🚀',
];

/// Live ids with O(1) random pick and removal.
#[derive(Default)]
struct IdSet {
    ids: Vec<i64>,
    pos: HashMap<i64, usize>,
}

impl IdSet {
    fn insert(&mut self, id: i64) {
        self.pos.insert(id, self.ids.len());
        self.ids.push(id);
    }

    fn remove(&mut self, id: i64) {
        if let Some(i) = self.pos.remove(&id) {
            self.ids.swap_remove(i);
            if let Some(&moved) = self.ids.get(i) {
                self.pos.insert(moved, i);
            }
        }
    }

    fn pick(&self, rng: &mut StdRng) -> Option<i64> {
        (!self.ids.is_empty()).then(|| self.ids[rng.gen_range(0..self.ids.len())])
    }
}

/// The workload generator (see the module doc).
pub struct Workload {
    rng: StdRng,
    keyless: bool,
    next_id: i64,
    live: IdSet,
    /// Keyless only: how many identical rows each live id has.
    copies: HashMap<i64, u64>,
    /// Row changes generated so far.
    pub changes: u64,
    /// Transactions generated so far.
    pub transactions: u64,
}

impl Workload {
    /// A workload on a table with `id` as primary key.
    pub fn new(seed: u64) -> Self {
        Self::with_mode(seed, false)
    }

    /// A workload on a table without any key, with exact duplicate rows.
    pub fn keyless(seed: u64) -> Self {
        Self::with_mode(seed, true)
    }

    fn with_mode(seed: u64, keyless: bool) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            keyless,
            next_id: 1,
            live: IdSet::default(),
            copies: HashMap::new(),
            changes: 0,
            transactions: 0,
        }
    }

    /// `CREATE TABLE db.table (...)` for this workload.
    pub fn create_table_sql(&self, db: &str, table: &str) -> String {
        let id = if self.keyless {
            "id BIGINT NOT NULL"
        } else {
            "id BIGINT NOT NULL PRIMARY KEY"
        };
        format!(
            "CREATE TABLE {}.{} ({id}, k INT NULL, s VARCHAR(64) NULL, d DECIMAL(12,4) NULL, \
             t DATETIME(6) NULL, b VARBINARY(32) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            quote_ident(db),
            quote_ident(table)
        )
    }

    /// Runs about `changes` row changes (never fewer) in transactions of 1..=50 changes,
    /// several transactions per round trip. Returns the row changes made.
    pub async fn run(&mut self, pool: &Pool, db: &str, table: &str, changes: u64) -> Result<u64> {
        let target = format!("{}.{}", quote_ident(db), quote_ident(table));
        let mut conn = pool.get_conn().await?;
        let mut done = 0u64;
        let mut batch = String::new();
        while done < changes {
            let want = self.rng.gen_range(1..=MAX_TXN_ROWS).min(changes - done);
            let (sql, n) = self.transaction(&target, want);
            batch.push_str(&sql);
            done += n;
            if batch.len() >= BATCH_BYTES {
                conn.query_drop(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            conn.query_drop(batch).await?;
        }
        Ok(done)
    }

    /// One transaction of at least `want` row changes, as `START TRANSACTION; …; COMMIT;`.
    pub fn transaction(&mut self, target: &str, want: u64) -> (String, u64) {
        let mut sql = String::from("START TRANSACTION;");
        let mut n = 0u64;
        while n < want {
            let roll = self.rng.gen_range(0..100);
            n += match roll {
                _ if self.live.ids.is_empty() => self.insert(&mut sql, target, want - n),
                0..=49 => self.insert(&mut sql, target, want - n),
                50..=79 => self.update(&mut sql, target, want - n),
                80..=89 if self.keyless => self.duplicate(&mut sql, target),
                _ => self.delete(&mut sql, target),
            };
        }
        sql.push_str("COMMIT;");
        self.changes += n;
        self.transactions += 1;
        (sql, n)
    }

    /// A single-row or multi-row INSERT of up to `max` rows.
    fn insert(&mut self, sql: &mut String, target: &str, max: u64) -> u64 {
        let rows = if self.rng.gen_bool(0.3) {
            self.rng.gen_range(1..=max.min(10))
        } else {
            1
        };
        let mut values = Vec::new();
        for _ in 0..rows {
            let id = self.next_id;
            self.next_id += 1;
            self.live.insert(id);
            self.copies.insert(id, 1);
            values.push(format!("({id}, {})", self.values().join(", ")));
        }
        sql.push_str(&format!(
            "INSERT INTO {target} (id, k, s, d, t, b) VALUES {};",
            values.join(", ")
        ));
        rows
    }

    /// Updates one row by id, or several with `id IN (...)`.
    fn update(&mut self, sql: &mut String, target: &str, max: u64) -> u64 {
        let v = self.values();
        let set = format!(
            "k = {}, s = {}, d = {}, t = {}, b = {}",
            v[0], v[1], v[2], v[3], v[4]
        );
        let count = if self.rng.gen_bool(0.2) {
            self.rng.gen_range(1..=max.min(5))
        } else {
            1
        };
        let mut ids: Vec<i64> = (0..count)
            .filter_map(|_| self.live.pick(&mut self.rng))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() == 1 && self.rng.gen_bool(0.5) {
            // Change only some columns now and then, so row images differ in few cells.
            sql.push_str(&format!(
                "UPDATE {target} SET k = {} WHERE id = {};",
                v[0], ids[0]
            ));
        } else {
            let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            sql.push_str(&format!(
                "UPDATE {target} SET {set} WHERE id IN ({});",
                list.join(",")
            ));
        }
        ids.iter().map(|id| self.copies_of(*id)).sum()
    }

    fn copies_of(&self, id: i64) -> u64 {
        if self.keyless {
            self.copies.get(&id).copied().unwrap_or(0)
        } else {
            1
        }
    }

    fn delete(&mut self, sql: &mut String, target: &str) -> u64 {
        let Some(id) = self.live.pick(&mut self.rng) else {
            return 0;
        };
        if self.keyless {
            // Only one of possibly several identical rows goes.
            sql.push_str(&format!("DELETE FROM {target} WHERE id = {id} LIMIT 1;"));
            let left = self.copies_of(id).saturating_sub(1);
            if left > 0 {
                self.copies.insert(id, left);
                return 1;
            }
            self.copies.remove(&id);
        } else {
            sql.push_str(&format!("DELETE FROM {target} WHERE id = {id};"));
        }
        self.live.remove(id);
        1
    }

    /// Keyless only: copies one row, making an exact duplicate.
    fn duplicate(&mut self, sql: &mut String, target: &str) -> u64 {
        let Some(id) = self.live.pick(&mut self.rng) else {
            return 0;
        };
        sql.push_str(&format!(
            "INSERT INTO {target} SELECT * FROM {target} WHERE id = {id} LIMIT 1;"
        ));
        *self.copies.entry(id).or_insert(0) += 1;
        1
    }

    /// SQL literals for k, s, d, t, b.
    fn values(&mut self) -> [String; 5] {
        let r = &mut self.rng;
        let null = |r: &mut StdRng| r.gen_bool(0.1);
        let k = if null(r) {
            "NULL".into()
        } else {
            r.gen::<i32>().to_string()
        };
        let s = if null(r) {
            "NULL".into()
        } else {
            let len = r.gen_range(0..=64);
            let text: String = (0..len)
                .map(|_| CHARS[r.gen_range(0..CHARS.len())])
                .collect();
            quote_str(&text)
        };
        let d = if null(r) {
            "NULL".into()
        } else {
            let sign = if r.gen_bool(0.3) { "-" } else { "" };
            format!(
                "{sign}{}.{:04}",
                r.gen_range(0..100_000_000u64),
                r.gen_range(0..10_000)
            )
        };
        let t = if null(r) {
            "NULL".into()
        } else {
            format!(
                "'{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}'",
                r.gen_range(1000..=9999),
                r.gen_range(1..=12),
                r.gen_range(1..=28),
                r.gen_range(0..24),
                r.gen_range(0..60),
                r.gen_range(0..60),
                r.gen_range(0..1_000_000)
            )
        };
        let b = if null(r) {
            "NULL".into()
        } else {
            let len = r.gen_range(0..=32);
            let bytes: Vec<u8> = (0..len).map(|_| r.gen()).collect();
            hex_literal(&bytes)
        };
        [k, s, d, t, b]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sql() {
        let (mut a, mut b) = (Workload::new(7), Workload::new(7));
        for _ in 0..20 {
            assert_eq!(a.transaction("t", 30), b.transaction("t", 30));
        }
        assert_eq!(a.changes, 600);
    }

    #[test]
    fn transactions_are_bounded_and_keyless_duplicates() {
        let mut w = Workload::keyless(1);
        let mut saw_dup = false;
        for _ in 0..200 {
            let (sql, n) = w.transaction("t", 10);
            // An update of an id with duplicates may overshoot by the extra copies.
            assert!((10..=20).contains(&n), "{n}");
            assert!(sql.starts_with("START TRANSACTION;") && sql.ends_with("COMMIT;"));
            saw_dup |= sql.contains("SELECT * FROM t");
        }
        assert!(saw_dup);
    }
}
