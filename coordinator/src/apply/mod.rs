//! The Applier: applies ordered batches of source transactions to one target MariaDB/MySQL
//! server, idempotently, with its progress stored in the target.
//!
//! # Guarantee
//!
//! * **InnoDB (transactional) tables: exactly-once effect.** The rows of a batch and the
//!   progress row (`fleetsync.sync_state`: the position after the batch's last transaction)
//!   commit in one target transaction. After a crash or a lost connection the stored position
//!   is either before or after the whole batch; on replay the applier skips every transaction
//!   whose position is at or before the stored one.
//! * **MyISAM/Aria (non-transactional) tables** ([`TableSchema::transactional`] is false):
//!   their rows are written when the statement runs, outside the transaction, and survive a
//!   rollback; a crash between them and the progress update replays them. For tables with a
//!   key this is **effectively once** (upserts and deletes by key are idempotent); for keyless
//!   non-transactional tables it is **at least once**: a replayed INSERT can duplicate rows and
//!   a replayed DELETE/UPDATE ... LIMIT 1 can hit a second identical row.
//! * **DDL** commits implicitly, so it runs on its own and the progress row is updated right
//!   after it. A crash in between replays the statement; errors meaning "already done" (table
//!   exists, duplicate column, ...) then count as success (see `ddl`).
//!
//! # How rows are applied
//!
//! Tables with a key (primary, or unique over NOT NULL columns) get multi-row upserts
//! (`INSERT ... ON DUPLICATE KEY UPDATE`) and `DELETE ... WHERE key IN (...)`. When the key is
//! the only unique index on the target, the batch is compacted to its net effect per key (see
//! `batch`), which is what makes the applier faster than native replication. Keyless tables
//! are applied row by row like native replication (full-row match, `LIMIT 1`) and are listed
//! by [`Applier::slow_tables`]. FLOAT values in such matches use the exact double of the
//! stored f32, which compares equal on MariaDB; other servers may differ.
//!
//! Rows of paused tables ([`Applier::paused_tables`]) are skipped: a missing target table
//! when `create_missing` is off, a DDL that cannot run on the target, or a target table that
//! cannot take the source table's rows after a DDL naming it (see `shape`; checked on the
//! table's first rows after the DDL, by this applier instance).
//!
//! # Session
//!
//! One connection, set up by [`Applier::connect`]: `SET NAMES binary` (literals are raw
//! column-charset bytes), `time_zone='+00:00'`, `foreign_key_checks=0`,
//! `sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'` (zero dates accepted, id 0 stays
//! 0, no strict truncation errors), READ COMMITTED, autocommit on with explicit transactions,
//! `@fleetsync_applier=1` (the version triggers of bidirectional groups skip this session;
//! see `versions` and `group`).
//! The user needs SELECT, INSERT, UPDATE, DELETE on the mapped tables, CREATE/DROP/ALTER for
//! DDL and `create_missing` (DROP also for restarting a snapshot with TRUNCATE), and all of
//! these on the `fleetsync` database.

mod batch;
mod conflict;
mod ddl;
mod detect;
mod error;
mod exec;
mod group;
mod lanes;
pub mod rank;
#[cfg(test)]
mod rank_sim;
mod run;
mod run_ddl;
mod shape;
mod sql;
mod state;
mod target;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lanes;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_parts;

use mysql_async::prelude::Queryable as _;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use fleetsync_config::{ApplyProtocol, ConflictPolicy, LoopPrevention, TableMap};
use fleetsync_proto::record::LOOP_MARKER_COMMENT;
use fleetsync_proto::{Position, TableSchema, Transaction};
use mysql_async::{Conn, Opts};

pub use conflict::{cmp_values, decide, Outcome, Version};
pub use error::ApplyError;
pub use shape::shape_problems;
pub use state::read_state;

use exec::QueryBuf;
use target::TargetTable;

// ---------------------------------------------------------------------------------------------
// Metrics

/// Counter: source row changes applied (skipped and paused rows excluded). Labels `sync`, `target`.
pub const APPLY_ROWS_TOTAL: &str = "fleetsync_apply_rows_total";
/// Histogram: duration of [`Applier::apply`] calls that succeeded. Labels `sync`, `target`.
pub const APPLY_BATCH_SECONDS: &str = "fleetsync_apply_batch_seconds";
/// Counter: source transactions applied (replayed ones excluded). Labels `sync`, `target`.
pub const APPLY_TRANSACTIONS_TOTAL: &str = "fleetsync_apply_transactions_total";
/// Counter: failed apply calls. Labels `sync`, `target`, `kind` ([`ApplyError::kind`]).
pub const APPLY_ERRORS_TOTAL: &str = "fleetsync_apply_errors_total";
/// Counter: row changes skipped because their table is paused. Labels `sync`, `target`.
pub const APPLY_SKIPPED_ROWS_TOTAL: &str = "fleetsync_apply_skipped_rows_total";

/// Gauge: share of the last parallel group's wall time a lane spent executing or committing
/// (0..1). Labels `sync`, `target`, `lane`. Only with `apply_lanes` > 1.
pub const APPLY_LANE_BUSY_RATIO: &str = "fleetsync_apply_lane_busy_ratio";
/// Counter: transactions applied alone (every earlier one committed first) while lanes are on.
/// Labels `sync`, `target`, `reason` (`ddl`, `keyless`, `snapshot`, `unkeyable`,
/// `lock_wait`: a group re-run serially after a lock wait or deadlock between lanes).
pub const APPLY_BARRIER_TOTAL: &str = "fleetsync_apply_barrier_total";

/// Counter: conflicts decided. Labels `sync`, `target`, `strategy`, `outcome`
/// (`incoming_won`, `local_kept`, `parked`).
pub const CONFLICTS_TOTAL: &str = "fleetsync_conflicts_total";

/// Registers descriptions of the applier's metrics with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(APPLY_ROWS_TOTAL, "Source row changes applied to a target");
    metrics::describe_histogram!(
        APPLY_BATCH_SECONDS,
        metrics::Unit::Seconds,
        "Time to apply one batch to a target"
    );
    metrics::describe_counter!(
        APPLY_TRANSACTIONS_TOTAL,
        "Source transactions applied to a target"
    );
    metrics::describe_counter!(
        APPLY_ERRORS_TOTAL,
        "Failed batch applications, by error kind"
    );
    metrics::describe_counter!(
        CONFLICTS_TOTAL,
        "Conflicts between incoming changes and target rows, by strategy and outcome"
    );
    metrics::describe_counter!(
        APPLY_SKIPPED_ROWS_TOTAL,
        "Row changes skipped for paused tables"
    );
    metrics::describe_gauge!(
        APPLY_LANE_BUSY_RATIO,
        "Share of the last parallel group's time an apply lane was busy"
    );
    metrics::describe_counter!(
        APPLY_BARRIER_TOTAL,
        "Transactions applied alone between parallel lanes, by reason"
    );
    metrics::describe_counter!(
        crate::versions::METRIC_LIVE_INSTALLS,
        "Group tables created while running whose row versions were installed on a member"
    );
}

struct Meters {
    rows: metrics::Counter,
    txns: metrics::Counter,
    skipped: metrics::Counter,
    batch: metrics::Histogram,
}

impl Meters {
    fn new(sync: &str, target: &str) -> Self {
        let labels = [("sync", sync.to_owned()), ("target", target.to_owned())];
        Meters {
            rows: metrics::counter!(APPLY_ROWS_TOTAL, &labels),
            txns: metrics::counter!(APPLY_TRANSACTIONS_TOTAL, &labels),
            skipped: metrics::counter!(APPLY_SKIPPED_ROWS_TOTAL, &labels),
            batch: metrics::histogram!(APPLY_BATCH_SECONDS, &labels),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public types

/// What an [`Applier`] applies and how.
#[derive(Debug, Clone)]
pub struct ApplierOptions {
    /// Name of the sync (`[[syncs]] name`): the key of the progress row, with `source`.
    pub sync: String,
    /// Name of the source server.
    pub source: String,
    /// Name of the target server, for messages and metrics.
    pub target: String,
    /// Source `schema.table` -> target `schema.table`.
    pub map: TableMap,
    /// Create missing target databases and tables from the source's definition.
    pub create_missing: bool,
    /// Run source DDL on the target (when the mapping allows it).
    pub apply_ddl: bool,
    /// Mark this applier's writes so the target's own agent does not publish them again: loop
    /// prevention for bidirectional syncs.
    pub mark_writes: bool,
    /// How writes are marked; `None`: MariaDB's `skip_replication` on MariaDB, the marker
    /// row elsewhere (MySQL has no `skip_replication`).
    pub loop_prevention: Option<LoopPrevention>,
    /// Conflict detection and resolution (`none` everywhere: applied as they come).
    pub conflicts: ConflictPolicy,
    /// How row statements are sent (`[[syncs]] apply_protocol`).
    pub protocol: ApplyProtocol,
    /// Parallel lanes (target connections); 1 = serial. More than 1 needs `conflicts` to be
    /// none and no group (the config refuses it; the applier then stays serial). See `lanes`.
    pub apply_lanes: usize,
    /// The bidirectional group this sync belongs to (`None` otherwise): a group table that a
    /// DDL creates while running gets its row versions installed (see `run_ddl`).
    pub group: Option<GroupTables>,
}

/// A group's name and table selection, for the install of tables created while running.
#[derive(Debug, Clone)]
pub struct GroupTables {
    pub name: String,
    pub tables: fleetsync_config::TableFilter,
}

/// Whether the initial snapshot of a sync is still being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    Running,
    Done,
}

/// The progress of (sync, source) on a target, as stored in `fleetsync.sync_state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedState {
    /// Source position after the last applied transaction: where to resume.
    pub position: Position,
    pub snapshot: SnapshotState,
    /// Source commit time of the last applied transaction, ms since the epoch (lag = now - this).
    pub source_commit_ts_ms: u64,
    /// Row changes applied so far.
    pub rows: u64,
    /// Bus offset (Kafka) of the last applied transaction's last message; `None` on the
    /// embedded bus. Stored in the same transaction as the rows.
    #[serde(default)]
    pub bus_offset: Option<i64>,
    /// Transactions applied so far.
    pub txns: u64,
}

/// Applies source transactions to one target server. See the module docs for the guarantee.
///
/// Calls take `&mut self` and never overlap. After an error for which
/// [`ApplyError::is_transient`] is true, call [`Applier::reconnect`] (or connect a new
/// applier) and retry the same batch: nothing of a failed batch is committed for InnoDB tables
/// and already applied transactions are skipped.
pub struct Applier {
    conn: Conn,
    target_opts: Opts,
    source_opts: Opts,
    /// Opened on first use, to read table definitions for `create_missing`.
    source_conn: Option<Conn>,
    opts: ApplierOptions,
    /// The stored progress, as of the last commit.
    state: Option<AppliedState>,
    /// Source (schema, table) -> the target table, `None` when missing. Dropped on DDL.
    tables: HashMap<(String, String), Option<TargetTable>>,
    /// Source (schema, table) -> reason, as stored in `fleetsync.paused_tables`.
    paused: BTreeMap<(String, String), String>,
    /// Pauses decided but not committed yet: written with the next progress update.
    pending_pauses: BTreeMap<(String, String), String>,
    /// Keyless tables seen, as `schema.table` (source names).
    slow: BTreeSet<String>,
    /// Source tables named by a DDL since their target was last looked up: the target's shape
    /// is checked against their next rows (see `shape`).
    reshaped: BTreeSet<(String, String)>,
    /// False while the session may not be in the state `SESSION_SETUP` leaves it in.
    session_ok: bool,
    /// Reused query buffer.
    q: QueryBuf,
    meters: Meters,
    /// Bus offset to record with the next snapshot start (see [`Applier::set_bus_offset`]).
    pending_offset: Option<i64>,
    /// The bus offset of each transaction of the batch being applied (see
    /// [`Applier::set_bus_offsets`]) and where that batch starts in memory.
    batch_offsets: Vec<Option<i64>>,
    batch_base: usize,
    /// `@@server_id` of the target, for newest-wins ties.
    target_server_id: u32,
    /// Marker-mode loop prevention in effect: every applied transaction writes
    /// `fleetsync.loop_marker`, every statement run alone carries the marker comment.
    marker: bool,
    /// `skip_replication` marking in effect (set up on every session, lanes included).
    skip_repl: bool,
    /// Lane connections (`apply_lanes` > 1), connected on first use; see `lanes`.
    lanes: Vec<Option<Conn>>,
    /// A target transaction left open by [`Applier::apply_part`]: it ends with a part of a
    /// source transaction whose rest follows. See `run` and docs/memory.md.
    open: Option<run::Open>,
}

/// How long a starting applier waits for a previous owner of its (sync, source) to go away.
const OWNERSHIP_WAIT_SECS: u32 = 120;

/// The named-lock name of (sync, source): short and ASCII (servers limit names to 64 chars).
/// See [`Applier::offset_through`]: `last` is located in the batch starting at address `base`
/// by its address (every run holds references into the batch slice); anything else gives
/// `None`, which keeps the stored offset (safe: the feed then re-reads and skips by position).
fn offset_through(base: usize, offsets: &[Option<i64>], last: &Transaction) -> Option<i64> {
    let size = std::mem::size_of::<Transaction>().max(1);
    let delta = (last as *const Transaction as usize).checked_sub(base)?;
    if delta % size != 0 {
        return None;
    }
    offsets.get(..=delta / size)?.iter().rev().find_map(|o| *o)
}

fn lock_name(sync: &str, source: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sync.bytes().chain([0u8]).chain(source.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fleetsync:{h:016x}")
}

/// Every named lock an applier of (sync, source) holds on its target: its own connection's
/// and each possible lane's (any lane count up to the maximum). Whoever holds one of them may
/// still commit rows and progress of (sync, source); a coordinator group's new owner ends
/// their connections (fencing, see docs/scaling.md) before it reads the stored position.
pub fn owner_locks(sync: &str, source: &str) -> Vec<String> {
    let base = lock_name(sync, source);
    std::iter::once(base.clone())
        .chain((1..=fleetsync_config::MAX_APPLY_LANES).map(|lane| format!("{base}:{lane}")))
        .collect()
}

/// Session settings; see the module docs.
const SESSION_SETUP: &str = "SET NAMES binary; SET time_zone='+00:00'; SET foreign_key_checks=0; \
    SET sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'; \
    SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET autocommit=1; \
    SET @fleetsync_applier=1";

impl Applier {
    /// Connects (a single connection), prepares the session, creates the `fleetsync` database
    /// and state tables if missing, and loads the stored progress and paused tables.
    pub async fn connect(
        target: Opts,
        source: Opts,
        opts: ApplierOptions,
    ) -> Result<Self, ApplyError> {
        let (target, protocol) = (exec::with_stmt_cache(target), opts.protocol);
        let conn = Conn::new(target.clone())
            .await
            .map_err(|e| ApplyError::Connect {
                target: opts.target.clone(),
                source: Box::new(e),
            })?;
        let meters = Meters::new(&opts.sync, &opts.target);
        let mut applier = Applier {
            conn,
            target_opts: target,
            source_opts: source,
            source_conn: None,
            opts,
            state: None,
            tables: HashMap::new(),
            paused: BTreeMap::new(),
            pending_pauses: BTreeMap::new(),
            slow: BTreeSet::new(),
            reshaped: BTreeSet::new(),
            session_ok: false,
            q: QueryBuf::new(protocol),
            meters,
            pending_offset: None,
            batch_offsets: Vec::new(),
            batch_base: 0,
            target_server_id: 0,
            marker: false,
            skip_repl: false,
            lanes: Vec::new(),
            open: None,
        };
        applier.setup().await?;
        Ok(applier)
    }

    /// Replaces the connection (after a transient error), then reloads the stored progress
    /// and paused tables. Cached table information is dropped.
    pub async fn reconnect(&mut self) -> Result<(), ApplyError> {
        let conn = Conn::new(self.target_opts.clone())
            .await
            .map_err(|e| ApplyError::Connect {
                target: self.opts.target.clone(),
                source: Box::new(e),
            })?;
        let old = std::mem::replace(&mut self.conn, conn);
        // The old connection may be broken: do not wait for a polite goodbye.
        drop(old);
        // Lane connections are replaced too (dropped: the server rolls back their work).
        self.lanes.clear();
        self.session_ok = false;
        self.tables.clear();
        self.setup().await
    }

    async fn setup(&mut self) -> Result<(), ApplyError> {
        self.ensure_session().await?;
        self.take_ownership().await?;
        self.wait_for_old_lanes().await?;
        exec::run_text(&mut self.conn, state::CREATE_STATE_TABLES.as_bytes())
            .await
            .map_err(|source| self.sql_error("creating the fleetsync state tables", source))?;
        if !self.opts.conflicts.is_none() {
            exec::run_text(&mut self.conn, conflict::CREATE_CONFLICT_TABLES.as_bytes())
                .await
                .map_err(|source| {
                    self.sql_error("creating the fleetsync conflict tables", source)
                })?;
        }
        self.load_state().await?;
        self.paused = state::read_paused(&mut self.conn, &self.opts.sync)
            .await
            .map_err(|source| self.sql_error("reading fleetsync.paused_tables", source))?;
        Ok(())
    }

    async fn ensure_session(&mut self) -> Result<(), ApplyError> {
        if !self.session_ok {
            exec::run_text(&mut self.conn, SESSION_SETUP.as_bytes())
                .await
                .map_err(|source| self.sql_error("setting up the session", source))?;
            // Loop prevention: mark everything this session writes, so the target's own agent
            // (when the target is also a source) recognises fleetsync's writes and does not
            // publish them again. MariaDB only (MySQL has no skip_replication); needs no SUPER.
            let found: Option<(String, u32)> = self
                .conn
                .query_first::<(String, u32), _>("SELECT @@version, @@server_id")
                .await
                .map_err(|source| self.sql_error("reading the server version", source))?;
            self.target_server_id = found.as_ref().map_or(0, |f| f.1);
            let mariadb = found
                .as_ref()
                .is_some_and(|f| f.0.to_ascii_lowercase().contains("mariadb"));
            let flag = match (self.opts.loop_prevention, mariadb) {
                (Some(LoopPrevention::SkipReplication), false) => {
                    return Err(ApplyError::State {
                        target: self.opts.target.clone(),
                        sync: self.opts.sync.clone(),
                        source_name: self.opts.source.clone(),
                        reason: "loop_prevention = \"skip_replication\" needs a MariaDB target (this server has no skip_replication): use \"marker\"".into(),
                    });
                }
                (Some(LoopPrevention::SkipReplication), true) | (None, true) => true,
                (Some(LoopPrevention::Marker), _) | (None, false) => false,
            };
            self.marker = self.opts.mark_writes && !flag;
            self.skip_repl = self.opts.mark_writes && flag;
            if self.opts.mark_writes && flag {
                exec::run_text(&mut self.conn, b"SET SESSION skip_replication=1")
                    .await
                    .map_err(|source| {
                        self.sql_error("marking the session skip_replication", source)
                    })?;
            }
            self.session_ok = true;
        }
        Ok(())
    }

    /// Takes the server-side named lock of (sync, source) on this target, held for the
    /// connection's lifetime. A coordinator killed mid-batch leaves its last query running on
    /// the server, which then commits it; a restarted applier must not read the stored
    /// position before that commit, or it would apply the batch again. The server releases the
    /// lock only when the dead connection (and its transaction) is gone, so waiting for it
    /// closes that window. It also keeps two coordinators off the same (sync, target).
    async fn take_ownership(&mut self) -> Result<(), ApplyError> {
        let name = lock_name(&self.opts.sync, &self.opts.source);
        let q = format!("SELECT GET_LOCK('{name}', {OWNERSHIP_WAIT_SECS})");
        let got: Option<Option<i64>> = self
            .conn
            .query_first(q)
            .await
            .map_err(|source| self.sql_error("taking the applier lock", source))?;
        if got.flatten() == Some(1) {
            return Ok(());
        }
        Err(ApplyError::State {
            target: self.opts.target.clone(),
            sync: self.opts.sync.clone(),
            source_name: self.opts.source.clone(),
            reason: format!(
                "another applier still owns this sync on the target after {OWNERSHIP_WAIT_SECS} s \
                 (another coordinator running, or a killed one's last transaction still committing)"
            ),
        })
    }

    /// The stored progress of (sync, source) on this target, if any.
    pub async fn load_state(&mut self) -> Result<Option<AppliedState>, ApplyError> {
        let state = state::read_state_as(
            &mut self.conn,
            &self.opts.target,
            &self.opts.sync,
            &self.opts.source,
        )
        .await?;
        self.state = state.clone();
        Ok(state)
    }

    /// Tables applied row by row because they have no usable key, as `schema.table` (source
    /// names), for `status` warnings.
    /// The bus offset of the snapshot marker passed to the next [`Applier::begin_snapshot`]:
    /// stored with the snapshot's `Running` state.
    pub fn set_bus_offset(&mut self, offset: Option<i64>) {
        self.pending_offset = offset;
    }

    /// The bus offset of the last message of each transaction of the next batch passed to
    /// [`Applier::apply`] (same length and order). A batch may commit in several target
    /// transactions (around DDL, barriers, lanes): each commit stores the offset of *its own*
    /// last transaction with its rows, so a consumer restarting from the stored offset
    /// neither skips the transactions of a later commit that never happened nor repeats any.
    pub fn set_bus_offsets(&mut self, offsets: Vec<Option<i64>>) {
        self.batch_offsets = offsets;
    }

    /// The offset to store with a commit whose last transaction is `last` (an element of the
    /// batch being applied): the latest offset up to it, `None` (keep the stored one) when
    /// unknown.
    pub(super) fn offset_through(&self, last: &Transaction) -> Option<i64> {
        offset_through(self.batch_base, &self.batch_offsets, last)
    }

    pub fn slow_tables(&self) -> Vec<String> {
        self.slow.iter().cloned().collect()
    }

    /// Paused tables as (`schema.table` with source names, reason), including pauses decided
    /// in a batch that has not committed yet.
    pub fn paused_tables(&self) -> Vec<(String, String)> {
        let mut all = self.paused.clone();
        all.extend(
            self.pending_pauses
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all.into_iter()
            .map(|((s, t), reason)| (format!("{s}.{t}"), reason))
            .collect()
    }

    /// Applies whole source transactions, in order.
    ///
    /// Runs of row transactions are applied in ONE target transaction whose last statement
    /// records the position of the run's last transaction (and the snapshot state: `Done`
    /// once a transaction has `snapshot_done`, `Running` while snapshot chunks arrive without
    /// it). A DDL transaction ends the run before it, runs on its own, then records its
    /// position. Transactions at or before the stored position are skipped (replay after a
    /// crash), except snapshot chunks while a snapshot is running.
    ///
    /// Exactly-once effect for InnoDB tables; for non-transactional tables effectively once
    /// with a key and at least once without (see the module docs). On error, the open
    /// transaction is rolled back and the stored progress is that of the last commit.
    pub async fn apply(&mut self, batch: &[Transaction]) -> Result<AppliedState, ApplyError> {
        let started = Instant::now();
        let result = self.apply_batch(batch, false).await;
        match &result {
            Ok(_) => self.meters.batch.record(started.elapsed().as_secs_f64()),
            Err(e) => self.count_error(e),
        }
        result
    }

    /// Like [`Applier::apply`], for a batch whose last transaction is a part of a source
    /// transaction whose rest follows (the embedded bus's parts): its rows are sent in a target
    /// transaction that stays open, without the progress row; the next batch continues it
    /// (it must start with the rest of that source transaction) and the one that holds the
    /// source transaction's end commits it with its progress row. A crash or error before
    /// then rolls the whole target transaction back, so the stored position never points
    /// inside a source transaction. Returns the progress stored so far (unchanged).
    /// Only with one lane and without conflict detection (see docs/memory.md).
    pub async fn apply_part(&mut self, batch: &[Transaction]) -> Result<AppliedState, ApplyError> {
        let started = Instant::now();
        let result = self.apply_batch(batch, true).await;
        match &result {
            Ok(_) => self.meters.batch.record(started.elapsed().as_secs_f64()),
            Err(e) => self.count_error(e),
        }
        result
    }

    /// Called before the first chunk of an initial snapshot taken at `position` and covering
    /// `tables`. If a previous snapshot was interrupted (stored state `Running`), empties the
    /// mapped target tables (TRUNCATE: the snapshot restarts from scratch and we own them).
    /// Creates missing target databases and tables when `create_missing` is on (else pauses
    /// them), then records state `Running` at `position`.
    pub async fn begin_snapshot(
        &mut self,
        position: &Position,
        tables: &[TableSchema],
    ) -> Result<(), ApplyError> {
        let result = self.begin_snapshot_inner(position, tables).await;
        if let Err(e) = &result {
            self.count_error(e);
        }
        result
    }

    fn count_error(&self, e: &ApplyError) {
        metrics::counter!(
            APPLY_ERRORS_TOTAL,
            "sync" => self.opts.sync.clone(),
            "target" => self.opts.target.clone(),
            "kind" => e.kind()
        )
        .increment(1);
    }

    fn sql_error(&self, context: impl Into<String>, source: mysql_async::Error) -> ApplyError {
        ApplyError::Sql {
            target: self.opts.target.clone(),
            context: context.into(),
            source: Box::new(source),
        }
    }

    fn is_paused(&self, key: &(String, String)) -> bool {
        self.paused.contains_key(key) || self.pending_pauses.contains_key(key)
    }

    fn pause(&mut self, schema: &str, table: &str, reason: String) {
        let key = (schema.to_owned(), table.to_owned());
        if !self.is_paused(&key) {
            tracing::warn!(
                sync = %self.opts.sync,
                target = %self.opts.target,
                table = %format!("{schema}.{table}"),
                %reason,
                "pausing table"
            );
            self.pending_pauses.insert(key, reason);
        }
    }

    /// The target table of source `schema`.`table`, creating it when missing and allowed.
    /// `None` when the table is (now) paused.
    async fn ensure_table(
        &mut self,
        schema: &TableSchema,
    ) -> Result<Option<TargetTable>, ApplyError> {
        let key = (schema.schema.clone(), schema.table.clone());
        if self.is_paused(&key) {
            return Ok(None);
        }
        if let Some(Some(t)) = self.tables.get(&key) {
            return Ok(Some(t.clone()));
        }
        let (ts, tt) = self.opts.map.target(&schema.schema, &schema.table);
        let name = sql::table_name(&ts, &tt);
        let mut found = target::inspect(&mut self.conn, &ts, &tt)
            .await
            .map_err(|source| self.sql_error(format!("looking up target table {name}"), source))?;
        if found.is_none() {
            if self.opts.create_missing {
                if let Err(reason) = self
                    .create_table(&schema.schema, &schema.table, &ts, &tt)
                    .await?
                {
                    self.pause(&schema.schema, &schema.table, reason);
                    return Ok(None);
                }
                found = target::inspect(&mut self.conn, &ts, &tt)
                    .await
                    .map_err(|source| {
                        self.sql_error(format!("looking up target table {name}"), source)
                    })?;
            } else {
                let reason = format!("target table {name} does not exist (create_missing is off)");
                self.pause(&schema.schema, &schema.table, reason);
                return Ok(None);
            }
        }
        let Some(found) = found else {
            let reason = format!("target table {name} still does not exist after creating it");
            self.pause(&schema.schema, &schema.table, reason);
            return Ok(None);
        };
        // After a source DDL the target may no longer fit the rows (a column it already had
        // with another type, a DDL that could not follow): every batch would fail, or values
        // be truncated silently. Pause only this table. (Preflight checks the shapes at start;
        // a target changed by hand while running fails the pipeline instead, so that the
        // operator's fix is picked up by its retries.)
        if self.reshaped.contains(&key) {
            let columns = fleetsync_mysql::schema::read_table(&mut self.conn, &ts, &tt)
                .await
                .map_err(|source| {
                    self.sql_error(format!("reading the columns of {name}"), source)
                })?;
            self.reshaped.remove(&key);
            let problems = columns.map_or_else(Vec::new, |c| shape_problems(schema, &c));
            if !problems.is_empty() {
                let reason = format!(
                    "after a source DDL, target table {name} cannot take the rows of {}.{}: {}",
                    schema.schema,
                    schema.table,
                    problems.join("; ")
                );
                self.pause(&schema.schema, &schema.table, reason);
                return Ok(None);
            }
        }
        self.tables.insert(key, Some(found.clone()));
        Ok(Some(found))
    }

    /// Creates target `ts`.`tt` (and its database) from the source's `SHOW CREATE TABLE` of
    /// `schema`.`table`. `Ok(Err(reason))` when the definition cannot be used.
    async fn create_table(
        &mut self,
        schema: &str,
        table: &str,
        ts: &str,
        tt: &str,
    ) -> Result<Result<(), String>, ApplyError> {
        let source_err = |this: &Self, source| ApplyError::Source {
            source_name: this.opts.source.clone(),
            target: this.opts.target.clone(),
            table: sql::table_name(schema, table),
            source: Box::new(source),
        };
        if self.source_conn.is_none() {
            let conn = Conn::new(self.source_opts.clone())
                .await
                .map_err(|e| source_err(self, e))?;
            self.source_conn = Some(conn);
        }
        let Some(source_conn) = self.source_conn.as_mut() else {
            return Ok(Err("no source".into()));
        };
        let create = match target::show_create(source_conn, schema, table).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok(Err(format!(
                    "source returned no definition for {schema}.{table}"
                )))
            }
            Err(e) => {
                if error::is_transient_mysql(&e) {
                    self.source_conn = None;
                }
                return Err(source_err(self, e));
            }
        };
        let Some(create) = target::retarget_create(&create, ts, tt) else {
            return Ok(Err(format!(
                "source definition of {schema}.{table} is not a plain CREATE TABLE"
            )));
        };
        let mut db = b"CREATE DATABASE IF NOT EXISTS ".to_vec();
        sql::push_ident(&mut db, ts);
        let name = sql::table_name(ts, tt);
        tracing::info!(sync = %self.opts.sync, target = %self.opts.target, table = %name, "creating missing target table");
        self.run_utf8(&[&db, create.as_bytes()])
            .await
            .map_err(|(_, source)| {
                self.sql_error(format!("creating target table {name}"), source)
            })?;
        Ok(Ok(()))
    }

    /// Runs each of `statements` as its own query with `SET NAMES utf8mb4` (their text is
    /// UTF-8, not column bytes), then restores the binary session. Fails with the index of the
    /// failing statement.
    async fn run_utf8(&mut self, statements: &[&[u8]]) -> Result<(), (usize, mysql_async::Error)> {
        self.session_ok = false;
        let mut result = exec::run_text(&mut self.conn, b"SET NAMES utf8mb4")
            .await
            .map_err(|e| (usize::MAX, e));
        if result.is_ok() {
            for (i, s) in statements.iter().enumerate() {
                let marked;
                let s: &[u8] = if self.marker {
                    marked = [LOOP_MARKER_COMMENT.as_bytes(), s].concat();
                    &marked
                } else {
                    s
                };
                if let Err(e) = exec::run_text(&mut self.conn, s).await {
                    result = Err((i, e));
                    break;
                }
            }
        }
        if exec::run_text(&mut self.conn, b"SET NAMES binary")
            .await
            .is_ok()
        {
            self.session_ok = true;
        }
        result
    }
}
