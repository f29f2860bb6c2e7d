//! The binlog stream: events -> [`Transaction`]s, published in commit order.
//!
//! Invariants:
//! * A transaction is published only when its commit event (XID, `COMMIT`, or the end of a
//!   standalone GTID group) has been read; its [`Transaction::position`] is the coordinate just
//!   after that event, so resuming there neither repeats nor skips it.
//! * Rows of excluded tables are dropped here; a transaction left empty is not published,
//!   except as a position-only heartbeat at most every [`HEARTBEAT_EVERY`], so that targets
//!   record progress through traffic they do not receive.
//! * DDL on included tables is published as its own transaction and invalidates the schema
//!   cache, so later row events decode with the new definition.
//! * An event whose changes the binlog does not fully carry (a statement-form data change, a
//!   partial row image, a TABLE_MAP without column names) on an included table ends the
//!   stream with [`SourceError::Unusable`] before its transaction is published (see
//!   [`super::usable`]): nothing downstream ever moves past it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetsync_proto::record::{LOOP_MARKER_COMMENT, LOOP_MARKER_SCHEMA, LOOP_MARKER_TABLE};
use fleetsync_proto::{
    BinlogPosition, Ddl, Gtid, GtidSet, Op, Position, RowChange, TableSchema, Transaction,
};
use futures_util::StreamExt;
use mysql_async::binlog::events::{
    EventData, QueryEvent, RotateEvent, RowsEventData, TableMapEvent,
};
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use mysql_common::io::ParseBuf;
use tokio_util::sync::CancellationToken;

use super::decode::{build_table_info, decode_image, tme_column_names, tme_fingerprint, TableInfo};
use super::schema::SchemaCache;
use super::usable::{
    self, BINLOG_FORMAT, BINLOG_ROW_IMAGE, BINLOG_ROW_METADATA, METRIC_UNUSABLE_EVENTS,
};
use super::{connect, ServerInfo, SourceSpec};
use crate::ddl::{classify, Statement};
use crate::publish::Publisher;
use crate::SourceError;

/// Longest time without a published transaction while the source commits only excluded
/// changes: bounds how far a target's stored position trails the source.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// The heartbeat interval when everything since the last publish was fleetsync's own applied
/// writes (a bidirectional loop at rest): each heartbeat makes the target record progress,
/// which its own agent sees as one more marked transaction, so in a loop heartbeats would
/// bounce between the servers forever. At this pace an idle loop logs one small progress
/// write per direction every 10 s (and `status` shows at most that much lag while idle).
pub const LOOP_HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Heartbeat period the server is asked for on an idle stream (lets us notice dead peers).
const SERVER_HEARTBEAT_NS: u64 = 1_000_000_000;

const EV_QUERY: u8 = 2;
const EV_ROTATE: u8 = 4;
const EV_FORMAT_DESCRIPTION: u8 = 15;
const EV_XID: u8 = 16;
/// EXECUTE_LOAD_QUERY: a LOAD DATA logged as a statement (its file in BEGIN_LOAD_QUERY events).
const EV_EXECUTE_LOAD_QUERY: u8 = 18;
const EV_TABLE_MAP: u8 = 19;
const EV_HEARTBEAT: u8 = 27;
const EV_MARIADB_GTID: u8 = 162;
/// LOG_EVENT_ARTIFICIAL_F: events the server synthesises (fake rotate) carry no position.
const FLAG_ARTIFICIAL: u16 = 0x20;
/// LOG_EVENT_SKIP_REPLICATION_F: the event was written by a session with skip_replication=1,
/// which is how fleetsync's appliers mark their writes (loop prevention).
const FLAG_SKIP_REPLICATION: u16 = 0x8000;
pub const METRIC_LOOP_SUPPRESSED: &str = "fleetsync_loop_suppressed_events_total";
/// MariaDB GTID flag: the group is a single statement with no BEGIN/COMMIT (DDL).
const GTID_STANDALONE: u8 = 1;

pub const METRIC_BINLOG_EVENTS: &str = "fleetsync_binlog_events_total";
pub const METRIC_SOURCE_TRANSACTIONS: &str = "fleetsync_source_transactions_total";
/// Counter: parts of large source transactions published before their end (embedded bus;
/// see docs/memory.md). Label `server`.
pub const METRIC_SOURCE_PARTS: &str = "fleetsync_source_transaction_parts_total";

/// A transaction being assembled.
struct Pending {
    gtid: Option<Gtid>,
    ts_ms: u64,
    standalone: bool,
    tables: Vec<TableSchema>,
    table_idx: HashMap<u64, u32>,
    changes: Vec<RowChange>,
    ddl: Option<Ddl>,
    /// The transaction wrote `fleetsync.loop_marker`: fleetsync applied it (marker mode).
    marked: bool,
    /// About how many bytes `changes` holds ([`RowChange::mem_bytes`]): when the publisher
    /// takes parts, a part is published once this reaches its part size.
    bytes: usize,
    /// Parts of this transaction were published: its end must be published too (it commits
    /// them on the target), even with no rows left.
    parted: bool,
}

struct StreamState<'a> {
    spec: &'a SourceSpec,
    info: &'a ServerInfo,
    file: String,
    pos: u64,
    /// Where the event being handled starts (for messages: `pos` is already past it).
    event_start: u64,
    gtids: GtidSet,
    pending: Option<Pending>,
    /// Decoders per TABLE_MAP table id; `None` = excluded table.
    tables: HashMap<u64, Option<TableInfo>>,
    /// The table id of `fleetsync.loop_marker` in this binlog, once mapped.
    marker_table: Option<u64>,
    /// Whether a transaction not applied by fleetsync ended since the last publish.
    foreign_since_publish: bool,
    schema: SchemaCache,
    schema_conn: mysql_async::Conn,
    last_publish: Instant,
    next_txn_id: u64,
    /// Whether this connection has delivered its FORMAT_DESCRIPTION event yet.
    seen_fde: bool,
}

/// Streams from `from` until cancelled or an error. Transient errors are returned for the
/// caller to retry from the last acknowledged position.
pub async fn stream<P: Publisher>(
    spec: &SourceSpec,
    info: &ServerInfo,
    from: Position,
    publisher: &mut P,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    let name = spec.name.as_str();
    let mut conn = connect(spec).await?;
    let schema_conn = connect(spec).await?;
    let setup =
        format!("SET @mariadb_slave_capability=4, @master_heartbeat_period={SERVER_HEARTBEAT_NS}");
    if info.is_mariadb {
        conn.query_drop(setup)
            .await
            .map_err(|e| SourceError::from_mysql(name, "preparing binlog stream", e))?;
    }
    let request = BinlogStreamRequest::new(spec.replica_id)
        .with_filename(from.binlog.file.as_bytes())
        .with_pos(from.binlog.pos);
    let mut events = conn
        .get_binlog_stream(request)
        .await
        .map_err(|e| stream_error(spec, &from, e))?;
    tracing::info!(server = name, sync = %spec.sync, position = %from, "binlog stream started");
    let mut st = StreamState {
        spec,
        info,
        file: from.binlog.file.clone(),
        pos: from.binlog.pos,
        event_start: from.binlog.pos,
        gtids: from.gtid.clone().unwrap_or_default(),
        pending: None,
        marker_table: None,
        foreign_since_publish: true,
        tables: HashMap::new(),
        schema: SchemaCache::default(),
        schema_conn,
        last_publish: Instant::now(),
        next_txn_id: 0,
        seen_fde: false,
    };
    let events_counter = metrics::counter!(METRIC_BINLOG_EVENTS, "server" => spec.name.clone());
    loop {
        let idle_at = publisher.idle_deadline();
        let event = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            // A batching publisher ends its batch when the source goes quiet.
            _ = sleep_until_some(idle_at) => {
                publisher.idle().await?;
                continue;
            }
            ev = events.next() => ev,
        };
        let event = match event {
            None => {
                return Err(SourceError::Connection {
                    server: name.to_string(),
                    message: "binlog stream ended".into(),
                })
            }
            Some(Err(e)) => return Err(stream_error(spec, &st.position(), e)),
            Some(Ok(ev)) => ev,
        };
        events_counter.increment(1);
        st.handle(&event, publisher).await?;
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn stream_error(spec: &SourceSpec, at: &Position, e: mysql_async::Error) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        // 1236: ER_MASTER_FATAL_ERROR_READING_BINLOG (file purged, position invalid, ...).
        if s.code == 1236 {
            let lower = s.message.to_ascii_lowercase();
            if lower.contains("could not find")
                || lower.contains("purged")
                || lower.contains("first log file")
            {
                return SourceError::Purged {
                    server: spec.name.clone(),
                    position: at.clone(),
                    sync: spec.sync.clone(),
                };
            }
            return SourceError::NeedsOperator {
                server: spec.name.clone(),
                message: format!("binlog dump refused at {at}: {} (re-snapshot with `fleetsync resnapshot --config FILE --sync {}`)", s.message, spec.sync),
            };
        }
    }
    SourceError::from_mysql(&spec.name, &format!("reading binlog at {at}"), e)
}

impl StreamState<'_> {
    fn position(&self) -> Position {
        Position {
            binlog: BinlogPosition {
                file: self.file.clone(),
                pos: self.pos,
            },
            gtid: if self.gtids.is_empty() {
                None
            } else {
                Some(self.gtids.clone())
            },
        }
    }

    fn decode_error(&self, what: &str, message: impl ToString) -> SourceError {
        SourceError::Decode {
            server: self.spec.name.clone(),
            position: format!("{}:{}", self.file, self.pos),
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    /// The failure for an event fleetsync cannot replicate; logged and counted here, once.
    fn unusable(&self, setting: &'static str, detail: String) -> SourceError {
        let mut position = format!("{}:{}", self.file, self.event_start);
        if let Some(g) = self.pending.as_ref().and_then(|p| p.gtid) {
            position.push_str(&format!(" (GTID {g})"));
        }
        metrics::counter!(METRIC_UNUSABLE_EVENTS, "server" => self.spec.name.clone(), "reason" => setting)
            .increment(1);
        tracing::error!(server = %self.spec.name, sync = %self.spec.sync, %position, setting, %detail, "unusable binlog event: stopping before it");
        SourceError::Unusable {
            server: self.spec.name.clone(),
            sync: self.spec.sync.clone(),
            position,
            setting,
            detail,
        }
    }

    fn begin(&mut self, gtid: Option<Gtid>, ts: u32, standalone: bool) {
        self.pending = Some(Pending {
            gtid,
            ts_ms: u64::from(ts) * 1000,
            standalone,
            tables: Vec::new(),
            table_idx: HashMap::new(),
            changes: Vec::new(),
            ddl: None,
            marked: false,
            bytes: 0,
            parted: false,
        });
    }

    async fn handle<P: Publisher>(
        &mut self,
        event: &mysql_async::binlog::events::Event,
        publisher: &mut P,
    ) -> Result<(), SourceError> {
        let header = event.header();
        let ty = header.event_type_raw();
        if ty != EV_HEARTBEAT && header.flags_raw() & FLAG_ARTIFICIAL == 0 && header.log_pos() != 0
        {
            self.pos = u64::from(header.log_pos());
            self.event_start = self.pos.saturating_sub(u64::from(header.event_size()));
        }
        // Changes fleetsync itself applied on this server are not published again (no echo
        // loops in bidirectional syncs); their transaction boundaries still move the position.
        let marked = header.flags_raw() & FLAG_SKIP_REPLICATION != 0 && !self.spec.include_marked;
        if marked && matches!(ty, EV_TABLE_MAP | 23..=25 | 30..=32) {
            if let Some(p) = self.pending.as_mut() {
                p.marked = true;
            }
            metrics::counter!(METRIC_LOOP_SUPPRESSED, "server" => self.spec.name.clone())
                .increment(1);
            return Ok(());
        }
        if ty == EV_QUERY && !self.spec.include_marked {
            let q: QueryEvent<'_> = event
                .read_event()
                .map_err(|e| self.decode_error("QUERY", e))?;
            if q.query_raw().starts_with(LOOP_MARKER_COMMENT.as_bytes()) {
                return self.suppress_statement(publisher).await;
            }
        }
        if marked && ty == EV_QUERY {
            let q: QueryEvent<'_> = event
                .read_event()
                .map_err(|e| self.decode_error("QUERY", e))?;
            if !matches!(
                classify(&q.query()),
                Statement::Begin | Statement::Commit | Statement::Rollback
            ) {
                return self.suppress_statement(publisher).await;
            }
        }
        match ty {
            EV_ROTATE => {
                let rotate: RotateEvent<'_> = event
                    .read_event()
                    .map_err(|e| self.decode_error("ROTATE", e))?;
                let mut name = rotate.name_raw().to_vec();
                // The server's first (artificial) ROTATE precedes the FORMAT_DESCRIPTION
                // that announces checksums, so the parser leaves the 4-byte CRC in the name.
                if !self.seen_fde && name.len() > 4 {
                    name.truncate(name.len() - 4);
                }
                self.file = String::from_utf8_lossy(&name).into_owned();
                self.pos = rotate.position();
            }
            EV_MARIADB_GTID => {
                let d = event.data();
                if d.len() < 13 {
                    return Err(self.decode_error("GTID", "event too short"));
                }
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&d[0..8]);
                let mut dom = [0u8; 4];
                dom.copy_from_slice(&d[8..12]);
                let gtid = Gtid {
                    domain: u32::from_le_bytes(dom),
                    server_id: header.server_id(),
                    seq: u64::from_le_bytes(seq),
                };
                self.begin(Some(gtid), header.timestamp(), d[12] & GTID_STANDALONE != 0);
            }
            EV_QUERY => {
                let q: QueryEvent<'_> = event
                    .read_event()
                    .map_err(|e| self.decode_error("QUERY", e))?;
                self.on_query(&q, header.timestamp(), publisher).await?;
            }
            EV_TABLE_MAP => {
                let tme: TableMapEvent<'_> = event
                    .read_event()
                    .map_err(|e| self.decode_error("TABLE_MAP", e))?;
                self.on_table_map(&tme).await?;
            }
            EV_EXECUTE_LOAD_QUERY => {
                if let Ok(Some(EventData::ExecuteLoadQueryEvent(q))) = event.read_data() {
                    let statement = classify(&q.query());
                    self.check_statement(&statement, &q.schema())?;
                }
            }
            EV_FORMAT_DESCRIPTION => self.seen_fde = true,
            EV_XID => self.finish(publisher).await?,
            EV_HEARTBEAT => {
                // The server sends heartbeats only when it has nothing else to send: we are
                // caught up. A position-only transaction stamped now lets targets record that.
                if self.pending.is_none() && self.heartbeat_due() {
                    self.begin(None, 0, false);
                    self.finish(publisher).await?;
                }
            }
            _ => {
                if let Ok(Some(EventData::RowsEvent(rows))) = event.read_data() {
                    self.on_rows(&rows)?;
                    self.publish_part(publisher).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether a position-only heartbeat may be published now.
    fn heartbeat_due(&self) -> bool {
        if self.past_until() {
            return true;
        }
        let every = if self.foreign_since_publish {
            HEARTBEAT_EVERY
        } else {
            LOOP_HEARTBEAT_EVERY
        };
        self.last_publish.elapsed() >= every
    }

    /// Whether a one-shot run's end ([`SourceSpec::until`]) has been read past.
    fn past_until(&self) -> bool {
        self.spec
            .until
            .as_ref()
            .is_some_and(|u| &self.position() >= u)
    }

    /// A statement fleetsync applied (marked): not published; a standalone one (DDL) still
    /// ends its transaction, so the position moves on.
    async fn suppress_statement<P: Publisher>(
        &mut self,
        publisher: &mut P,
    ) -> Result<(), SourceError> {
        metrics::counter!(METRIC_LOOP_SUPPRESSED, "server" => self.spec.name.clone()).increment(1);
        if let Some(p) = self.pending.as_mut() {
            p.marked = true;
        }
        if self.pending.as_ref().is_none_or(|p| p.standalone) {
            self.finish(publisher).await?;
        }
        Ok(())
    }

    async fn on_query<P: Publisher>(
        &mut self,
        q: &QueryEvent<'_>,
        ts: u32,
        publisher: &mut P,
    ) -> Result<(), SourceError> {
        let sql = q.query();
        let statement = classify(&sql);
        self.check_statement(&statement, &q.schema())?;
        match statement {
            Statement::Begin => {
                if self.pending.is_none() {
                    self.begin(None, ts, false);
                }
                return Ok(());
            }
            Statement::Commit => return self.finish(publisher).await,
            Statement::Rollback => {
                self.pending = None;
                return Ok(());
            }
            Statement::TableDdl { tables, .. } => {
                let default = q.schema().into_owned();
                let resolved: Vec<(String, String)> = tables
                    .into_iter()
                    .map(|(s, t)| (s.unwrap_or_else(|| default.clone()), t))
                    .collect();
                self.schema.invalidate();
                self.tables.clear();
                if resolved.iter().any(|(s, t)| self.spec.filter.matches(s, t)) {
                    self.set_ddl(
                        Ddl {
                            schema: non_empty(default),
                            tables: resolved,
                            statement: sql.into_owned(),
                        },
                        ts,
                    );
                }
            }
            Statement::DatabaseDdl { name } => {
                self.schema.invalidate();
                if self.spec.filter.matches(&name, "") {
                    self.set_ddl(
                        Ddl {
                            schema: non_empty(q.schema().into_owned()),
                            tables: Vec::new(),
                            statement: sql.into_owned(),
                        },
                        ts,
                    );
                }
            }
            // Refused by check_statement when it touches an included table.
            Statement::Dml { .. } | Statement::Other => {}
        }
        if self.pending.as_ref().is_none_or(|p| p.standalone) {
            self.finish(publisher).await?;
        }
        Ok(())
    }

    /// Fails on a statement-form data change that may write an included table.
    fn check_statement(
        &self,
        statement: &Statement,
        default_schema: &str,
    ) -> Result<(), SourceError> {
        match usable::statement_table(statement, default_schema, &self.spec.filter) {
            None => Ok(()),
            Some(table) => Err(self.unusable(
                BINLOG_FORMAT,
                format!("a data change on {table} was logged as a statement (binlog_format STATEMENT or MIXED for that session), so its rows are not in the binlog"),
            )),
        }
    }

    fn set_ddl(&mut self, ddl: Ddl, ts: u32) {
        if self.pending.is_none() {
            self.begin(None, ts, true);
        }
        if let Some(p) = self.pending.as_mut() {
            p.ddl = Some(ddl);
        }
    }

    async fn on_table_map(&mut self, tme: &TableMapEvent<'_>) -> Result<(), SourceError> {
        let id = tme.table_id();
        if self.marker_table == Some(id) {
            // Table ids are reused: re-learned below if this is still the marker table.
            self.marker_table = None;
        }
        if let Some(Some(existing)) = self.tables.get(&id) {
            if existing.fingerprint == tme_fingerprint(tme) {
                return Ok(());
            }
        }
        let (schema, table) = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        if schema == LOOP_MARKER_SCHEMA && table == LOOP_MARKER_TABLE {
            self.marker_table = Some(id);
        }
        if !self.spec.filter.matches(&schema, &table) {
            self.tables.insert(id, None);
            return Ok(());
        }
        if tme_column_names(tme).is_none() {
            return Err(self.unusable(
                BINLOG_ROW_METADATA,
                format!("the TABLE_MAP of {schema}.{table} carries no column names (binlog_row_metadata is not FULL)"),
            ));
        }
        let info = self
            .schema
            .get(&mut self.schema_conn, &self.spec.name, &schema, &table)
            .await?;
        let built = build_table_info(tme, info.as_deref())
            .map_err(|m| self.decode_error(&format!("TABLE_MAP of {schema}.{table}"), m))?;
        self.tables.insert(id, Some(built));
        Ok(())
    }

    fn on_rows(&mut self, rows: &RowsEventData<'_>) -> Result<(), SourceError> {
        let id = rows.table_id();
        if self.marker_table == Some(id) && !self.spec.include_marked {
            if let Some(p) = self.pending.as_mut() {
                p.marked = true;
            }
            return Ok(());
        }
        let info = match self.tables.get(&id) {
            Some(Some(info)) => info,
            Some(None) => return Ok(()),
            None => {
                return Err(
                    self.decode_error("rows event", format!("no TABLE_MAP for table id {id}"))
                )
            }
        };
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(self.decode_error(
                    "rows event",
                    "partial JSON updates: set binlog_row_value_options=''",
                ))
            }
        };
        let before_bits: Option<Vec<bool>> = rows
            .columns_before_image()
            .map(|b| b.iter().by_vals().collect());
        let after_bits: Option<Vec<bool>> = rows
            .columns_after_image()
            .map(|b| b.iter().by_vals().collect());
        let columns = info.cols.len();
        if !usable::full_image(before_bits.as_deref(), columns)
            || !usable::full_image(after_bits.as_deref(), columns)
        {
            let table = format!("{}.{}", info.schema.schema, info.schema.table);
            return Err(self.unusable(
                BINLOG_ROW_IMAGE,
                format!("a row event of {table} lacks columns in its row images (binlog_row_image MINIMAL or NOBLOB for that session)"),
            ));
        }
        let mut buf = ParseBuf(rows.rows_data());
        let mut decoded = Vec::new();
        while !buf.is_empty() {
            let before = match &before_bits {
                Some(bits) => {
                    Some(decode_image(&mut buf, bits, info).map_err(|e| self.rows_error(info, e))?)
                }
                None => None,
            };
            let after = match &after_bits {
                Some(bits) => {
                    Some(decode_image(&mut buf, bits, info).map_err(|e| self.rows_error(info, e))?)
                }
                None => None,
            };
            decoded.push((before, after));
        }
        let schema = info.schema.clone();
        let Some(p) = self.pending.as_mut() else {
            return Err(self.decode_error("rows event", "row event outside a transaction"));
        };
        let first = p.changes.len();
        let next_idx = p.tables.len() as u32;
        let idx = *p.table_idx.entry(id).or_insert(next_idx);
        if idx == next_idx {
            p.tables.push((*schema).clone());
        }
        p.changes
            .extend(decoded.into_iter().map(|(before, after)| RowChange {
                table: idx,
                op,
                before,
                after,
            }));
        p.bytes += p.changes[first..]
            .iter()
            .map(RowChange::mem_bytes)
            .sum::<usize>();
        Ok(())
    }

    /// Publishes the rows of the pending transaction so far as a part when the publisher
    /// takes parts and they reach its part size (see [`Publisher::publish_part`]): a large
    /// source transaction is then never held whole. The part's position is the end of the
    /// last rows event: after the previous transaction's end, before this one's, so an
    /// applier never takes it for an applied transaction (and never stores it: parts are
    /// applied in an open target transaction that commits with the last part).
    async fn publish_part<P: Publisher>(&mut self, publisher: &mut P) -> Result<(), SourceError> {
        let Some(limit) = publisher.part_bytes() else {
            return Ok(());
        };
        let position = self.position();
        let origin = self.info.origin.clone();
        let txn_id = self.next_txn_id + 1;
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        // Marked (fleetsync's own) and DDL transactions are never split: what they carry is
        // decided at their end.
        if p.bytes < limit || p.marked || p.ddl.is_some() || p.changes.is_empty() {
            return Ok(());
        }
        let part = Transaction {
            origin,
            gtid: p.gtid,
            position,
            txn_id: p.gtid.map(|g| g.seq).unwrap_or(txn_id),
            commit_ts_ms: if p.ts_ms == 0 { now_ms() } else { p.ts_ms },
            snapshot: false,
            snapshot_done: false,
            tables: p.tables.clone(),
            changes: std::mem::take(&mut p.changes),
            ddl: None,
        };
        p.bytes = 0;
        p.parted = true;
        metrics::counter!(METRIC_SOURCE_PARTS, "server" => self.spec.name.clone()).increment(1);
        publisher.publish_part(part).await
    }

    fn rows_error(&self, info: &TableInfo, e: std::io::Error) -> SourceError {
        self.decode_error(
            &format!("row of {}.{}", info.schema.schema, info.schema.table),
            e,
        )
    }

    /// Ends the pending transaction at the current position and publishes it if it has
    /// content (or as a heartbeat when due).
    async fn finish<P: Publisher>(&mut self, publisher: &mut P) -> Result<(), SourceError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        if let Some(g) = p.gtid {
            self.gtids.update(g);
        }
        let mut p = p;
        if p.marked {
            // Applied by fleetsync (marker mode): the position moves on, nothing is published.
            let events = p.changes.len() + usize::from(p.ddl.is_some());
            metrics::counter!(METRIC_LOOP_SUPPRESSED, "server" => self.spec.name.clone())
                .increment(events as u64);
            p.changes.clear();
            p.tables.clear();
            p.ddl = None;
        }
        self.foreign_since_publish |= !p.marked;
        // A parted transaction's end commits its parts: always published.
        let has_content = !p.changes.is_empty() || p.ddl.is_some() || p.parted;
        if !has_content && !self.heartbeat_due() {
            return Ok(());
        }
        self.next_txn_id += 1;
        let txn = Transaction {
            origin: self.info.origin.clone(),
            gtid: p.gtid,
            position: self.position(),
            txn_id: p.gtid.map(|g| g.seq).unwrap_or(self.next_txn_id),
            commit_ts_ms: if p.ts_ms == 0 { now_ms() } else { p.ts_ms },
            snapshot: false,
            snapshot_done: false,
            tables: p.tables,
            changes: p.changes,
            ddl: p.ddl,
        };
        metrics::counter!(METRIC_SOURCE_TRANSACTIONS, "server" => self.spec.name.clone())
            .increment(1);
        publisher.publish(txn).await?;
        self.last_publish = Instant::now();
        self.foreign_since_publish = false;
        Ok(())
    }
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
