//! `backup create`: a consistent, parallel dump of the selected tables.
//!
//! Order of work:
//! 1. Read the table list, definitions (`SHOW CREATE TABLE`), views and databases on a
//!    metadata connection (`SET NAMES utf8mb4`).
//! 2. Delete the leftovers of dead runs ([`running::clean_leftovers`]), pick a free
//!    `<dir>/<id>/`, write its `running.json` (refreshed by a heartbeat task), then the
//!    schema files.
//! 3. `LOCK TABLES ... READ` the non-transactional tables ([`snapshot::lock_tables`]), then
//!    open the snapshot on N connections ([`snapshot::open`]).
//! 4. Plan key ranges ([`chunk::plan`]) in parallel; dump non-transactional tables first,
//!    release their lock, then dump the rest. One task per connection takes ranges from a
//!    queue; each range streams rows (binary protocol, decoded by `from_mysql`) into files of
//!    at most `chunk_rows` rows or [`FILE_MAX_BYTES`], compressed/encrypted on the blocking
//!    pool and uploaded to the store while the next rows stream in. Each connection has at
//!    most one file in the writer while it fills the next, so memory is bounded by
//!    `threads` x 2 x (a file's plaintext + its encoded form) and nothing is copied locally.
//! 5. Write `pin.json` (with `--pin`), then the manifest, last, and delete `running.json`;
//!    set the metrics. A failure or a cancel deletes every object of the backup instead
//!    (what cannot be deleted then, e.g. the store is unreachable, is left to the next run).
//!
//! DDL on the dumped tables during a backup is not supported (the definitions are read
//! before the snapshot); triggers, routines and events are not backed up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleetsync_config::TableFilter;
use fleetsync_proto::{ColumnType, TableSchema};
use fleetsync_store::Store;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio_util::sync::CancellationToken;

use super::chunk::{self, quote, KeyCol, Range};
use super::files::{put_stored, safe_name, Codec};
use super::manifest::{self, DatabaseEntry, FileEntry, Manifest, Status, TableEntry, ViewEntry};
use super::running::{self, Running};
use super::{pool, snapshot, BackupError, Progress, Settings};
use crate::source::decode::from_mysql;
use crate::source::schema::{list_tables, load_table};
use crate::SourceError;

/// Target size of one INSERT statement (one line of a data file).
pub const STATEMENT_BYTES: usize = 1 << 20;
/// A data file is cut when its plaintext reaches this size (bounds memory for wide rows).
pub const FILE_MAX_BYTES: usize = 64 << 20;

/// What to back up and how.
pub struct CreateRequest {
    pub server: String,
    pub opts: Opts,
    pub filter: TableFilter,
    pub settings: Settings,
    pub progress: Arc<dyn Progress>,
    /// Checked between key ranges: once cancelled, the dump stops after the ranges in hand
    /// and its objects are deleted (a cancelled backup leaves no trace).
    pub cancel: CancellationToken,
    /// `--name`: unique among the backups, accepted wherever an id is.
    pub name: Option<String>,
    /// `--pin`: the backup is pinned from the moment it is complete.
    pub pin: bool,
}

/// One table being dumped.
struct TableDump {
    database: String,
    table: String,
    engine: String,
    transactional: bool,
    schema: TableSchema,
    /// `` `db`.`t` ``
    qualified: String,
    select: String,
    insert_prefix: Vec<u8>,
    key: Vec<KeyCol>,
    est_rows: u64,
    create_sql: Vec<u8>,
    next_file: AtomicUsize,
}

struct ViewDef {
    database: String,
    view: String,
    create_sql: Vec<u8>,
}

/// Shared by the dump tasks.
struct DumpCtx {
    server: String,
    /// The store rooted at this backup.
    root: Store,
    codec: Codec,
    chunk_rows: usize,
    progress: Arc<dyn Progress>,
    files: Mutex<Vec<(usize, FileEntry)>>,
}

struct Unit {
    table: usize,
    dump: Arc<TableDump>,
    range: Range,
}

fn mysql_err(server: &str, ctx: String) -> impl Fn(mysql_async::Error) -> BackupError + '_ {
    move |e| BackupError::Source(SourceError::from_mysql(server, &ctx, e))
}

/// Takes a backup; returns its (complete) manifest.
pub async fn create(req: &CreateRequest) -> Result<Manifest, BackupError> {
    let server = req.server.as_str();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let codec = Codec {
        compression: req.settings.compression,
        zstd_level: req.settings.zstd_level,
        key: req.settings.key.load()?,
    };
    let mut meta = snapshot::connect(&req.opts, server).await?;
    meta.query_drop("SET NAMES utf8mb4")
        .await
        .map_err(mysql_err(server, "preparing the metadata session".into()))?;
    let version: String = meta
        .query_first("SELECT @@version")
        .await
        .map_err(mysql_err(server, "reading the version".into()))?
        .unwrap_or_default();
    let tables = read_tables(&mut meta, server, &req.filter).await?;
    let views = read_views(&mut meta, server, &req.filter).await?;
    let databases = read_databases(&mut meta, server, &tables, &views).await?;
    if tables.is_empty() && views.is_empty() {
        tracing::warn!(
            server,
            "no table matches the backup's selection: the backup will be empty"
        );
    }
    let store = &req.settings.store;
    if let Some(name) = &req.name {
        manifest::check_name(name)?;
        if manifest::resolve(store, name).await? != *name
            || store.list(name).await.map(|v| !v.is_empty())?
        {
            return Err(BackupError::Refused(format!(
                "backup name {name:?} is already used (names are unique; pick another or delete that backup)"
            )));
        }
    }
    match running::clean_leftovers(store, None, false).await {
        Ok(cleaned) => {
            for (id, why) in cleaned {
                tracing::info!(server, backup = %id, reason = %why, "removed the leftovers of an unfinished backup");
            }
        }
        Err(e) => {
            tracing::warn!(server, error = %e, "cannot remove the leftovers of unfinished backups")
        }
    }
    let (id, root, lease) = allocate(store, server, started_at, req.name.clone()).await?;
    let stop_beat = CancellationToken::new();
    running::spawn_heartbeat(root.clone(), lease, stop_beat.clone());
    let _stop_beat = stop_beat.clone().drop_guard();
    let mut m = Manifest {
        format_version: manifest::FORMAT_VERSION,
        id: id.clone(),
        name: req.name.clone(),
        server: server.to_string(),
        server_version: version,
        status: Status::Running,
        error: None,
        started: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished: None,
        duration_seconds: None,
        position: None,
        consistency: String::new(),
        compression: manifest::compression_name(codec.compression).into(),
        encrypted: codec.key.is_some(),
        threads: req.settings.threads,
        databases,
        tables: Vec::new(),
        views: Vec::new(),
        total_rows: 0,
        total_bytes: 0,
        notes: Vec::new(),
        checksum: String::new(),
    };
    tracing::info!(server, backup = %id, location = %store.describe(), tables = tables.len(), views = views.len(), "backup started");
    let ctx = Arc::new(DumpCtx {
        server: server.to_string(),
        root: root.clone(),
        codec,
        chunk_rows: req.settings.chunk_rows,
        progress: req.progress.clone(),
        files: Mutex::new(Vec::new()),
    });
    let mut result = run(req, &ctx, &mut m, tables, views).await;
    let _ = meta.disconnect().await;
    m.finished = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    m.duration_seconds = Some(started.elapsed().as_secs_f64());
    if result.is_ok() {
        m.status = Status::Complete;
        result = finish_backup(store, &root, &mut m, req.pin).await;
    }
    stop_beat.cancel();
    match result {
        Ok(()) => {
            record_success(&m);
            tracing::info!(server, backup = %id, rows = m.total_rows, bytes = m.total_bytes, seconds = m.duration_seconds.unwrap_or_default(), position = m.position.as_deref().unwrap_or(""), "backup complete");
            Ok(m)
        }
        Err(e) => {
            // Nothing of a failed or cancelled backup stays: its objects (and any dangling
            // multipart upload) are deleted; if that fails too, the next run does it.
            match store.delete_prefix(&id).await {
                Ok(_) => {}
                Err(de) => {
                    tracing::warn!(server, backup = %id, error = %de, "cannot delete the unfinished backup's objects: the next backup create or prune will")
                }
            }
            if matches!(e, BackupError::Cancelled) {
                tracing::info!(server, backup = %id, "backup cancelled: its objects are deleted");
            } else {
                tracing::warn!(server, backup = %id, error = %e, "backup failed: its objects are deleted");
                metrics::counter!(super::METRIC_BACKUP_FAILURES, "server" => server.to_string())
                    .increment(1);
            }
            Err(e)
        }
    }
}

/// The end of a complete backup: the pin (if asked), the manifest last, then the in-progress
/// object goes.
async fn finish_backup(
    store: &Store,
    root: &Store,
    m: &mut Manifest,
    pin: bool,
) -> Result<(), BackupError> {
    if pin {
        manifest::set_pinned(root, true).await?;
    }
    manifest::write(store, m).await?;
    if let Err(e) = root.delete(running::RUNNING_FILE).await {
        tracing::warn!(backup = %m.id, error = %e, "cannot delete the finished backup's running.json (harmless: the manifest is there)");
    }
    Ok(())
}

fn record_success(m: &Manifest) {
    let s = m.server.clone();
    let now = chrono::Utc::now().timestamp() as f64;
    metrics::gauge!(super::METRIC_BACKUP_LAST_SUCCESS, "server" => s.clone()).set(now);
    metrics::gauge!(super::METRIC_BACKUP_DURATION, "server" => s.clone())
        .set(m.duration_seconds.unwrap_or_default());
    metrics::gauge!(super::METRIC_BACKUP_BYTES, "server" => s.clone()).set(m.total_bytes as f64);
    metrics::gauge!(super::METRIC_BACKUP_ROWS, "server" => s).set(m.total_rows as f64);
}

/// Picks a free `<server>-<UTC time>[-N]` in `store` and claims it by writing its
/// `running.json` (two processes starting a backup of the same server in the same second
/// could pick the same id: scheduled backups run one at a time per server).
async fn allocate(
    store: &Store,
    server: &str,
    at: chrono::DateTime<chrono::Utc>,
    name: Option<String>,
) -> Result<(String, Store, Running), BackupError> {
    let taken: std::collections::HashSet<String> = store.list_dirs("").await?.into_iter().collect();
    let base = format!("{server}-{}", at.format("%Y%m%dT%H%M%SZ"));
    for n in 1..1000 {
        let id = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if taken.contains(&id) {
            continue;
        }
        manifest::check_id(&id)?;
        let root = store.child(&id);
        let lease = Running::new(&id, server, name);
        running::write(&root, &lease).await?;
        return Ok((id, root, lease));
    }
    Err(BackupError::Refused(format!(
        "{}: no free backup id for {base}",
        store.describe()
    )))
}

/// Schema files, snapshot, dump; fills the manifest's tables, views, position and totals.
async fn run(
    req: &CreateRequest,
    ctx: &Arc<DumpCtx>,
    m: &mut Manifest,
    tables: Vec<TableDump>,
    views: Vec<ViewDef>,
) -> Result<(), BackupError> {
    let server = req.server.as_str();
    let mut schema_files = Vec::with_capacity(tables.len());
    for t in &tables {
        let rel = format!(
            "schema/{}.{}{}",
            safe_name(&t.database),
            safe_name(&t.table),
            ctx.codec.schema_suffix()
        );
        schema_files.push(write_schema(ctx, &rel, &t.create_sql).await?);
    }
    for v in &views {
        let rel = format!(
            "schema/{}.{}.view{}",
            safe_name(&v.database),
            safe_name(&v.view),
            ctx.codec.schema_suffix()
        );
        let schema_file = write_schema(ctx, &rel, &v.create_sql).await?;
        m.views.push(ViewEntry {
            database: v.database.clone(),
            view: v.view.clone(),
            schema_file,
        });
    }
    let locked: Vec<(String, String)> = tables
        .iter()
        .filter(|t| !t.transactional)
        .map(|t| (t.database.clone(), t.table.clone()))
        .collect();
    let mut lock = snapshot::lock_tables(&req.opts, server, &locked).await?;
    if !locked.is_empty() {
        m.notes.push(if lock.is_some() {
            format!("{} non-transactional table(s) were read under LOCK TABLES ... READ, held from before the snapshot until they were dumped (writes to them waited)", locked.len())
        } else {
            format!("{} non-transactional table(s) could not be locked (no LOCK TABLES privilege): their content may not match the snapshot position", locked.len())
        });
    }
    if req.cancel.is_cancelled() {
        return Err(BackupError::Cancelled);
    }
    let snap = snapshot::open(&req.opts, server, req.settings.threads).await?;
    m.position = Some(snap.position.to_string());
    m.consistency = snap.consistency.to_string();
    tracing::info!(server, position = %snap.position, consistency = snap.consistency, connections = snap.conns.len(), "backup snapshot taken");
    let est: u64 = tables.iter().map(|t| t.est_rows).sum();
    ctx.progress.planned(tables.len(), est);
    let dumps: Vec<Arc<TableDump>> = tables.into_iter().map(Arc::new).collect();
    let (conns, units) = plan_all(snap.conns, server, &dumps, ctx.chunk_rows).await?;
    let (first, rest): (Vec<Unit>, Vec<Unit>) =
        units.into_iter().partition(|u| !u.dump.transactional);
    let worker = {
        let (ctx, cancel) = (ctx.clone(), req.cancel.clone());
        move |conn: Conn, unit: Unit| {
            let (ctx, cancel) = (ctx.clone(), cancel.clone());
            async move {
                if cancel.is_cancelled() {
                    return Err(BackupError::Cancelled);
                }
                dump_unit(conn, &ctx, unit).await
            }
        }
    };
    let conns = pool::run(conns, first, worker.clone()).await?;
    if let Some(mut l) = lock.take() {
        l.query_drop("UNLOCK TABLES")
            .await
            .map_err(mysql_err(server, "UNLOCK TABLES".into()))?;
        let _ = l.disconnect().await;
    }
    let conns = pool::run(conns, rest, worker).await?;
    if req.cancel.is_cancelled() {
        return Err(BackupError::Cancelled);
    }
    for mut c in conns {
        let _ = c.query_drop("COMMIT").await;
        let _ = c.disconnect().await;
    }
    ctx.progress.finish();
    let files = std::mem::take(&mut *ctx.files.lock().map_err(|_| poisoned())?);
    fill_tables(m, &dumps, schema_files, files);
    Ok(())
}

fn poisoned() -> BackupError {
    BackupError::Refused("a backup worker panicked".into())
}

async fn write_schema(ctx: &DumpCtx, rel: &str, sql: &[u8]) -> Result<FileEntry, BackupError> {
    let stored = ctx
        .codec
        .encode(sql, false, rel)
        .map_err(|e| BackupError::object(&ctx.root, rel, e))?;
    put_stored(&ctx.root, rel, stored, 0, 0).await
}

fn fill_tables(
    m: &mut Manifest,
    dumps: &[Arc<TableDump>],
    schema_files: Vec<FileEntry>,
    files: Vec<(usize, FileEntry)>,
) {
    let mut by_table: HashMap<usize, Vec<FileEntry>> = HashMap::new();
    for (i, f) in files {
        by_table.entry(i).or_default().push(f);
    }
    for (i, (t, schema_file)) in dumps.iter().zip(schema_files).enumerate() {
        let mut files = by_table.remove(&i).unwrap_or_default();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        m.tables.push(TableEntry {
            database: t.database.clone(),
            table: t.table.clone(),
            engine: t.engine.clone(),
            transactional: t.transactional,
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            schema_file,
            files,
        });
    }
    m.total_rows = m.tables.iter().map(|t| t.rows).sum();
    m.total_bytes = m.files().map(|f| f.bytes).sum();
}

/// A table (by index) and its ranges.
type Planned = (usize, Vec<Range>);

/// Plans every table's ranges on the snapshot connections, largest tables first.
async fn plan_all(
    conns: Vec<Conn>,
    server: &str,
    dumps: &[Arc<TableDump>],
    chunk_rows: usize,
) -> Result<(Vec<Conn>, Vec<Unit>), BackupError> {
    let mut order: Vec<usize> = (0..dumps.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(dumps[i].est_rows));
    let planned: Arc<Mutex<Vec<Planned>>> = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<(usize, Arc<TableDump>)> =
        order.iter().map(|&i| (i, dumps[i].clone())).collect();
    let worker = {
        let (planned, server) = (planned.clone(), server.to_string());
        move |mut conn: Conn, (i, t): (usize, Arc<TableDump>)| {
            let (planned, server) = (planned.clone(), server.clone());
            async move {
                let ranges = chunk::plan(
                    &mut conn,
                    &server,
                    &t.qualified,
                    &t.key,
                    t.est_rows,
                    chunk_rows,
                )
                .await?;
                planned.lock().map_err(|_| poisoned())?.push((i, ranges));
                Ok(conn)
            }
        }
    };
    let conns = pool::run(conns, items, worker).await?;
    let mut planned = std::mem::take(&mut *planned.lock().map_err(|_| poisoned())?);
    // Biggest expected units first (a keyless table is one long unit: start it early), so
    // that no connection is left with a long unit at the end while the others idle.
    planned.sort_by_key(|(i, ranges)| {
        std::cmp::Reverse(dumps[*i].est_rows / ranges.len().max(1) as u64)
    });
    let units = planned
        .into_iter()
        .flat_map(|(i, ranges)| ranges.into_iter().map(move |range| (i, range)))
        .map(|(i, range)| Unit {
            table: i,
            dump: dumps[i].clone(),
            range,
        })
        .collect();
    Ok((conns, units))
}

/// Rows rendered into one data file's plaintext.
struct FileBuf {
    buf: Vec<u8>,
    rows: u64,
    statements: u64,
    stmt_start: Option<usize>,
}

impl FileBuf {
    fn new() -> Self {
        FileBuf {
            buf: Vec::with_capacity(STATEMENT_BYTES + 64 * 1024),
            rows: 0,
            statements: 0,
            stmt_start: None,
        }
    }

    fn push(&mut self, t: &TableDump, values: Vec<mysql_async::Value>) -> Result<(), BackupError> {
        if let Some(s) = self.stmt_start {
            if self.buf.len() - s >= STATEMENT_BYTES {
                self.buf.extend_from_slice(b";\n");
                self.stmt_start = None;
            }
        }
        match self.stmt_start {
            None => {
                self.stmt_start = Some(self.buf.len());
                self.buf.extend_from_slice(&t.insert_prefix);
                self.statements += 1;
            }
            Some(_) => self.buf.push(b','),
        }
        self.buf.push(b'(');
        for (i, (col, v)) in t.schema.columns.iter().zip(values).enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            let bad = |m: String| {
                BackupError::Refused(format!(
                    "{}.{} column {}: {m}",
                    t.database, t.table, col.name
                ))
            };
            let v = from_mysql(col.ty, col.unsigned, v).map_err(|e| bad(e.to_string()))?;
            fleetsync_proto::sql::push_value(&mut self.buf, &v).map_err(|e| bad(e.0))?;
        }
        self.buf.push(b')');
        self.rows += 1;
        Ok(())
    }

    fn full(&self, chunk_rows: usize) -> bool {
        self.rows >= chunk_rows as u64 || self.buf.len() >= FILE_MAX_BYTES
    }

    fn take(&mut self) -> (Vec<u8>, u64, u64) {
        if self.stmt_start.take().is_some() {
            self.buf.extend_from_slice(b";\n");
        }
        let out = (std::mem::take(&mut self.buf), self.rows, self.statements);
        *self = FileBuf::new();
        out
    }
}

type Pending = tokio::task::JoinHandle<Result<(usize, FileEntry), BackupError>>;

/// Dumps one range of one table into one or more data files.
async fn dump_unit(mut conn: Conn, ctx: &Arc<DumpCtx>, unit: Unit) -> Result<Conn, BackupError> {
    let t = &unit.dump;
    let (cond, params) = chunk::where_clause(&t.key, &unit.range);
    let sql = format!("SELECT {} FROM {}{cond}", t.select, t.qualified);
    let what = format!("reading {}", t.qualified);
    let mut pending: Option<Pending> = None;
    let mut out = FileBuf::new();
    {
        let mut result = conn
            .exec_iter(sql, params)
            .await
            .map_err(mysql_err(&ctx.server, what.clone()))?;
        while let Some(row) = result
            .next()
            .await
            .map_err(mysql_err(&ctx.server, what.clone()))?
        {
            out.push(t, row.unwrap())?;
            if out.full(ctx.chunk_rows) {
                finish(ctx, &mut pending).await?;
                pending = Some(spawn_write(ctx, &unit, out.take()));
            }
        }
    }
    finish(ctx, &mut pending).await?;
    if out.rows > 0 {
        pending = Some(spawn_write(ctx, &unit, out.take()));
        finish(ctx, &mut pending).await?;
    }
    Ok(conn)
}

async fn finish(ctx: &DumpCtx, pending: &mut Option<Pending>) -> Result<(), BackupError> {
    if let Some(p) = pending.take() {
        let (table, entry) = p
            .await
            .map_err(|e| BackupError::Refused(format!("a file writer stopped: {e}")))??;
        ctx.progress.rows(entry.rows);
        ctx.files
            .lock()
            .map_err(|_| poisoned())?
            .push((table, entry));
    }
    Ok(())
}

fn spawn_write(
    ctx: &Arc<DumpCtx>,
    unit: &Unit,
    (plain, rows, stmts): (Vec<u8>, u64, u64),
) -> Pending {
    let t = &unit.dump;
    let seq = t.next_file.fetch_add(1, Ordering::Relaxed) + 1;
    let rel = format!(
        "data/{}.{}.{seq:06}{}",
        safe_name(&t.database),
        safe_name(&t.table),
        ctx.codec.data_suffix()
    );
    let (ctx, table) = (ctx.clone(), unit.table);
    tokio::spawn(async move {
        let codec = ctx.codec.clone();
        let name = rel.clone();
        let stored = tokio::task::spawn_blocking(move || codec.encode(&plain, true, &name))
            .await
            .map_err(|e| BackupError::Refused(format!("a file encoder stopped: {e}")))?
            .map_err(|e| BackupError::object(&ctx.root, &rel, e))?;
        Ok((
            table,
            put_stored(&ctx.root, &rel, stored, rows, stmts).await?,
        ))
    })
}

type TableRow = (String, String, Option<String>, Option<u64>);

/// Definitions of every selected base table.
async fn read_tables(
    meta: &mut Conn,
    server: &str,
    filter: &TableFilter,
) -> Result<Vec<TableDump>, BackupError> {
    let names = list_tables(meta, server, |s, t| filter.matches(s, t)).await?;
    let stats: Vec<TableRow> = meta
        .query("SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'")
        .await
        .map_err(mysql_err(server, "reading table statistics".into()))?;
    let stats: HashMap<(String, String), (String, u64)> = stats
        .into_iter()
        .map(|(s, t, e, r)| ((s, t), (e.unwrap_or_default(), r.unwrap_or(0))))
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for (db, table) in names {
        let Some(info) = load_table(meta, server, &db, &table).await? else {
            continue;
        };
        let collations: Vec<(String, Option<String>)> = meta
            .exec(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&db, &table),
            )
            .await
            .map_err(mysql_err(server, format!("reading {db}.{table}")))?;
        let qualified = fleetsync_proto::sql::table_name(&db, &table);
        let create: Option<(String, Vec<u8>)> = meta
            .query_first(format!("SHOW CREATE TABLE {qualified}"))
            .await
            .map_err(mysql_err(server, format!("SHOW CREATE TABLE {qualified}")))?;
        let Some((_, mut create_sql)) = create else {
            continue;
        };
        create_sql.extend_from_slice(b";\n");
        let schema = info.to_schema();
        let key = schema
            .key
            .iter()
            .filter_map(|&k| schema.columns.get(k as usize))
            .map(|c| KeyCol {
                name: c.name.clone(),
                ty: c.ty,
                charset: c.charset.clone(),
                collation: collations
                    .iter()
                    .find(|(n, _)| n == &c.name)
                    .and_then(|(_, coll)| coll.clone()),
            })
            .collect();
        let (engine, est_rows) = stats
            .get(&(db.clone(), table.clone()))
            .cloned()
            .unwrap_or_default();
        out.push(TableDump {
            select: select_list(&schema),
            insert_prefix: insert_prefix(&schema),
            transactional: info.transactional,
            database: db,
            table,
            engine,
            schema,
            qualified,
            key,
            est_rows,
            create_sql,
            next_file: AtomicUsize::new(0),
        });
    }
    Ok(out)
}

/// Columns to read; ENUM and SET as their numbers (exact, whatever the members' charset).
fn select_list(schema: &TableSchema) -> String {
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Enum | ColumnType::Set => format!("{}+0", quote(&c.name)),
            _ => quote(&c.name),
        })
        .collect();
    cols.join(", ")
}

/// ``INSERT INTO `t` (`a`,`b`) VALUES `` (unqualified: the restore picks the database).
fn insert_prefix(schema: &TableSchema) -> Vec<u8> {
    let mut b = b"INSERT INTO ".to_vec();
    fleetsync_proto::sql::push_ident(&mut b, &schema.table);
    b.extend_from_slice(b" (");
    for (i, c) in schema.columns.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        fleetsync_proto::sql::push_ident(&mut b, &c.name);
    }
    b.extend_from_slice(b") VALUES ");
    b
}

type ViewRow = (String, String, String, String, String, String);

/// Selected views as `CREATE VIEW` statements without DEFINER.
async fn read_views(
    meta: &mut Conn,
    server: &str,
    filter: &TableFilter,
) -> Result<Vec<ViewDef>, BackupError> {
    let rows: Vec<ViewRow> = meta
        .query("SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE, ALGORITHM FROM information_schema.VIEWS ORDER BY 1, 2")
        .await
        .map_err(mysql_err(server, "listing views".into()))?;
    Ok(rows
        .into_iter()
        .filter(|(s, v, ..)| filter.matches(s, v))
        .map(|(database, view, def, check, security, algorithm)| {
            let mut sql =
                format!("CREATE ALGORITHM={algorithm} SQL SECURITY {security} VIEW ").into_bytes();
            fleetsync_proto::sql::push_ident(&mut sql, &view);
            sql.extend_from_slice(b" AS ");
            sql.extend_from_slice(def.as_bytes());
            if check != "NONE" {
                sql.extend_from_slice(format!(" WITH {check} CHECK OPTION").as_bytes());
            }
            sql.extend_from_slice(b";\n");
            ViewDef {
                database,
                view,
                create_sql: sql,
            }
        })
        .collect())
}

/// Character set and collation of every database that has a selected table or view.
async fn read_databases(
    meta: &mut Conn,
    server: &str,
    tables: &[TableDump],
    views: &[ViewDef],
) -> Result<Vec<DatabaseEntry>, BackupError> {
    let rows: Vec<(String, String, String)> = meta
        .query("SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .await
        .map_err(mysql_err(server, "listing databases".into()))?;
    Ok(rows
        .into_iter()
        .filter(|(n, ..)| {
            tables.iter().any(|t| &t.database == n) || views.iter().any(|v| &v.database == n)
        })
        .map(|(name, charset, collation)| DatabaseEntry {
            name,
            charset,
            collation,
        })
        .collect())
}
