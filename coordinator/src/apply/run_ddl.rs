//! DDL in the apply loop (run, paused or skipped, then recorded) and the start of an initial
//! snapshot: the parts of [`Applier`] that change the target's schema.

use fleetsync_proto::{KeyKind, Position, TableSchema, Transaction};

use super::ddl::{self, DdlAction};
use super::exec::{self, Mark};
use super::run::Exec;
use super::sql;
use super::{AppliedState, Applier, ApplyError, SnapshotState};

impl Applier {
    /// Runs (or pauses or skips) the DDL of `txn`; the caller then records its position.
    pub(super) async fn apply_ddl(&mut self, txn: &Transaction) -> Result<(), ApplyError> {
        let Some(d) = &txn.ddl else { return Ok(()) };
        let already_paused = d
            .tables
            .iter()
            .find(|(s, t)| self.is_paused(&(s.clone(), t.clone())));
        let action = match already_paused {
            Some((s, t)) => DdlAction::Pause {
                reason: format!("DDL not applied: table {s}.{t} is paused: {}", d.statement),
            },
            None => ddl::decide(d, &self.opts.map, self.opts.apply_ddl),
        };
        // Whatever happens, cached knowledge of these tables is stale now.
        for (s, t) in &d.tables {
            let key = (s.clone(), t.clone());
            self.tables.remove(&key);
            self.slow.remove(&format!("{s}.{t}"));
            self.reshaped.insert(key);
        }
        if let (true, Some(schema)) = (d.tables.is_empty(), &d.schema) {
            self.tables.retain(|(s, _), _| s != schema);
        }
        let reason = match action {
            DdlAction::Run { use_schema } => match self.run_ddl(txn, use_schema).await? {
                None => return self.install_group_tables(d).await,
                Some(reason) => reason,
            },
            DdlAction::Pause { reason } => reason,
            DdlAction::Skip { reason } => {
                tracing::warn!(sync = %self.opts.sync, target = %self.opts.target, position = %txn.position, %reason, "DDL skipped");
                return Ok(());
            }
        };
        for (s, t) in &d.tables {
            self.pause(s, t, reason.clone());
        }
        if d.tables.is_empty() {
            tracing::warn!(sync = %self.opts.sync, target = %self.opts.target, position = %txn.position, %reason, "DDL skipped");
        }
        Ok(())
    }

    /// In a bidirectional group, after a DDL ran on the target: installs the group's row
    /// versions, tombstone table and triggers for each of its tables that lacks them, on the
    /// source (the member the DDL came from: its writes since the DDL have none) and then on
    /// the target, before this applier writes any of the table's rows there. A table created
    /// while running so gets them on every member as the DDL reaches it through the group
    /// (the same idempotent install as at start, `versions::install_live`). Rows written on
    /// a member before its install carry no versions and rank lowest (see `group`). What the
    /// install refuses (a keyless table, ...) is logged; the table's rows are then refused.
    async fn install_group_tables(&mut self, d: &fleetsync_proto::Ddl) -> Result<(), ApplyError> {
        for (s, t) in &d.tables {
            self.install_group_table(s, t).await?;
        }
        Ok(())
    }

    /// Installs the group's row versions for source table `s`.`t` on the source and then on
    /// the target, where missing (see [`Self::install_group_tables`]). `Ok(true)` when
    /// anything was installed; `Ok(false)` outside a group, for a table outside its selection
    /// or one already installed, and for what the install refuses (logged).
    pub(super) async fn install_group_table(
        &mut self,
        s: &str,
        t: &str,
    ) -> Result<bool, ApplyError> {
        let Some(group) = self.opts.group.clone() else {
            return Ok(false);
        };
        if !self.opts.conflicts.group || !group.tables.matches(s, t) {
            return Ok(false);
        }
        let (ts, tt) = self.opts.map.target(s, t);
        let members = [
            (&self.source_opts, &self.opts.source, s, t),
            (
                &self.target_opts,
                &self.opts.target,
                ts.as_str(),
                tt.as_str(),
            ),
        ];
        let mut any = false;
        for (opts, server, schema, table) in members {
            let policy = &self.opts.conflicts;
            match crate::versions::install_live(opts, server, &group.name, schema, table, policy)
                .await
            {
                Ok(done) => any |= done,
                Err(crate::versions::VersionsError::Refused { reason, .. }) => {
                    tracing::warn!(sync = %self.opts.sync, server = %server, table = %format!("{schema}.{table}"), %reason, "group table created while running: row versions not installed, its rows are refused");
                }
                Err(crate::versions::VersionsError::Sql {
                    context, source, ..
                }) => {
                    return Err(self.sql_error(
                        format!("installing the group's row versions for {schema}.{table} on member {server}: {context}"),
                        *source,
                    ));
                }
            }
        }
        Ok(any)
    }

    /// Runs the DDL statement of `txn`. `Ok(Some(reason))` when its tables must be paused
    /// instead (the target database is missing and may not be created).
    async fn run_ddl(
        &mut self,
        txn: &Transaction,
        use_schema: Option<String>,
    ) -> Result<Option<String>, ApplyError> {
        let Some(d) = &txn.ddl else { return Ok(None) };
        let mut create_db = Vec::new();
        let mut use_db = Vec::new();
        if let Some(db) = &use_schema {
            create_db.extend_from_slice(b"CREATE DATABASE IF NOT EXISTS ");
            sql::push_ident(&mut create_db, db);
            use_db.extend_from_slice(b"USE ");
            sql::push_ident(&mut use_db, db);
        }
        let mut statements: Vec<&[u8]> = Vec::new();
        if self.opts.create_missing && use_schema.is_some() {
            statements.push(&create_db);
        }
        let use_at = statements.len();
        if use_schema.is_some() {
            statements.push(&use_db);
        }
        let stmt_at = statements.len();
        statements.push(d.statement.as_bytes());
        tracing::info!(sync = %self.opts.sync, target = %self.opts.target, position = %txn.position, statement = %d.statement, "applying DDL");
        let Err((failed, e)) = self.run_utf8(&statements).await else {
            return Ok(None);
        };
        let code = super::error::server_code(&e);
        if failed == use_at && code == Some(1049) {
            let db = use_schema.unwrap_or_default();
            return Ok(Some(format!(
                "target database `{db}` does not exist (create_missing is off): {}",
                d.statement
            )));
        }
        if failed == stmt_at {
            if let Some(code) = code {
                if ddl::already_done(code)
                    || (code == 1146 && ddl::is_rename(&d.statement) && self.rename_done(d).await)
                {
                    tracing::info!(sync = %self.opts.sync, target = %self.opts.target, position = %txn.position, code, "DDL already applied; continuing");
                    return Ok(None);
                }
            }
        }
        let what = if failed == stmt_at {
            "running DDL"
        } else {
            "preparing DDL"
        };
        Err(self.sql_error(
            format!(
                "{what} at source position {}: {}",
                txn.position, d.statement
            ),
            e,
        ))
    }

    /// For a RENAME that failed with "no such table": true when its last named table (the new
    /// name) exists on the target, i.e. the rename ran before.
    async fn rename_done(&mut self, d: &fleetsync_proto::Ddl) -> bool {
        let Some((s, t)) = d.tables.last() else {
            return false;
        };
        let (ts, tt) = self.opts.map.target(s, t);
        matches!(
            super::target::inspect(&mut self.conn, &ts, &tt).await,
            Ok(Some(_))
        )
    }

    pub(super) async fn begin_snapshot_inner(
        &mut self,
        position: &Position,
        tables: &[TableSchema],
    ) -> Result<(), ApplyError> {
        self.ensure_session().await?;
        let stored = self.load_state().await?;
        // Any stored progress means the target tables hold our earlier copy: an interrupted
        // snapshot (embedded bus) or an earlier one the agent is now replacing (Kafka, after
        // the agent lost its checkpoint). Either way the new snapshot starts from empty tables.
        // Not in a bidirectional group: there the target's tables hold every member's writes
        // (and its triggers), and snapshot rows are merged by rank like any change.
        if stored.is_some() && !self.opts.conflicts.group {
            for t in tables {
                if self.is_paused(&(t.schema.clone(), t.table.clone())) {
                    continue;
                }
                let (ts, tt) = self.opts.map.target(&t.schema, &t.table);
                let name = sql::table_name(&ts, &tt);
                let exists = super::target::inspect(&mut self.conn, &ts, &tt)
                    .await
                    .map_err(|source| {
                        self.sql_error(format!("looking up target table {name}"), source)
                    })?;
                if exists.is_some() {
                    // With create_missing the table is ours to shape: drop it so it is
                    // re-created from the source's current definition (the source may have
                    // been altered while the snapshot was interrupted). Otherwise keep the
                    // operator's structure and only empty it.
                    let verb: &[u8] = if self.opts.create_missing {
                        b"DROP TABLE "
                    } else {
                        b"TRUNCATE TABLE "
                    };
                    tracing::info!(sync = %self.opts.sync, target = %self.opts.target, table = %name, recreate = self.opts.create_missing, "resetting table of an interrupted snapshot");
                    self.tables.remove(&(t.schema.clone(), t.table.clone()));
                    let mut q = verb.to_vec();
                    q.extend_from_slice(name.as_bytes());
                    exec::run_text(&mut self.conn, &q).await.map_err(|source| {
                        self.sql_error(
                            format!("emptying {name} to restart the snapshot at {position}"),
                            source,
                        )
                    })?;
                }
            }
        }
        for t in tables {
            self.ensure_table(t).await?;
            if t.key_kind == KeyKind::None || t.key.is_empty() {
                self.slow.insert(format!("{}.{}", t.schema, t.table));
            }
        }
        let new_state = AppliedState {
            position: position.clone(),
            snapshot: SnapshotState::Running,
            source_commit_ts_ms: stored.as_ref().map_or(0, |s| s.source_commit_ts_ms),
            rows: stored.as_ref().map_or(0, |s| s.rows),
            txns: stored.as_ref().map_or(0, |s| s.txns),
            bus_offset: self
                .pending_offset
                .or(stored.as_ref().and_then(|s| s.bus_offset)),
        };
        let mut q = std::mem::take(&mut self.q);
        q.clear();
        let result = self
            .execute(&mut q, &[], &[], &new_state, None, false, false)
            .await;
        q.clear();
        self.q = q;
        result.map_err(|(mark, e)| match e {
            Exec::Sql(source) => {
                let what = match mark {
                    Mark::Control(w) => w,
                    Mark::Rows { .. } => "recording the snapshot start",
                };
                self.sql_error(
                    format!("{what} (snapshot at source position {position})"),
                    source,
                )
            }
            Exec::Value(_, reason) | Exec::State(reason) => self.state_error(reason),
        })?;
        self.paused.append(&mut self.pending_pauses);
        self.state = Some(new_state);
        Ok(())
    }
}
