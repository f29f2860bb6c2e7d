//! `fleetsync coordinator`: one consumer + applier per (sync, target) over Kafka, the
//! pipelines' target locks and, with `[coordinator] group`, ownership and fencing (see the
//! parent module's docs).

use super::*;

pub async fn coordinator(path: &Path, metrics_listen: Option<&str>) -> Result<()> {
    let file = crate::opts::load_serving(path, metrics_listen).await?;
    // The API's tokens and audit log are on the brokers: no replica keeps them on disk.
    let api_state = match &file.api {
        Some(api) => {
            let state = crate::api::kstate::KafkaState::open(&file.bus).await?;
            let tokens = crate::api::tokens::TokenCache::kafka(state.clone());
            crate::api::check_with(api, &tokens)?;
            Some(state)
        }
        None => None,
    };
    let settings = kafka_settings(&file)?;
    // The file's syncs are checked first (API-made ones were checked when made).
    for sync in &file.syncs {
        for target in &sync.targets {
            let conn = mysql_async::Conn::new(opts_by_name(&file, target)?)
                .await
                .map_err(|e| anyhow!("sync {}: {}", sync.name, source::connect_error(target, e)))?;
            let _ = conn.disconnect().await;
        }
    }
    // Refuse unsafe topics before consuming; a topic not created yet (its agent has not run)
    // is waited for by its pipelines (which check it again before each start).
    let topics = kafka_topics::consumed_topics(&file);
    let states = kafka_topics::prepare(&file.bus, &topics, false).await?;
    for ((topic, _), state) in topics.iter().zip(states) {
        if state == TopicState::Missing {
            tracing::warn!(topic = %topic, "topic does not exist yet: waiting for its agent to create it");
        }
    }
    // The file's definitions and the API's (the definitions topic, followed live).
    let defs = crate::defs::Defs::open_for(file, true).await?;
    // Subscribed before the API serves: no change can fall between the start and the loop.
    let mut changes = defs.subscribe();
    let config = Arc::new((*changes.borrow_and_update().1).clone());
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let cancel = CancellationToken::new();
    let controls = Controls::default();
    let addr = http::serve(config.metrics_addr()?, registry.clone(), cancel.clone()).await?;
    if let Some(api) = &config.api {
        crate::api::serve(
            config.clone(),
            api,
            registry.clone(),
            controls.clone(),
            defs.clone(),
            api_state,
            cancel.clone(),
        )
        .await?;
    }
    let evictions = fleetsync_coordinator::gc::Evictions::default();
    crate::group::start_gc(&config, &evictions, &cancel).await?;
    let shared = Shared {
        checkpoints: None,
        registry,
        controls,
        evictions,
    };
    // `[coordinator] group`: join the group (its topics, the pairs' slots) before any pipeline
    // starts; without it every coordinator runs every pair (the target's lock decides).
    // SIGTERM while joining (slow brokers) ends the process cleanly too.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let cgroup = match &config.coordinator.group {
        Some(_) => tokio::select! {
            g = crate::cgroup::Group::join(&config) => Some(g?),
            _ = &mut signal => return Ok(()),
        },
        None => None,
    };
    // The same supervisor as `fleetsync run`: API-made syncs start, restart and stop live.
    let mut supervisor =
        Supervisor::new(shared, cancel.clone(), config.clone()).with_kafka(settings);
    if let Some(g) = &cgroup {
        supervisor = supervisor.with_group(g.membership.clone());
    }
    for sync in &config.syncs {
        supervisor.start(&config, sync)?;
    }
    tracing::info!(metrics = %addr, syncs = config.syncs.len(), "fleetsync coordinator running");
    loop {
        tokio::select! {
            _ = &mut signal => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    (&mut signal).await;
                    break;
                }
                let (generation, next) = changes.borrow_and_update().clone();
                if let Some(g) = &cgroup {
                    // New pairs get their slots before their pipelines start (a pipeline
                    // without a slot would wait in standby until one is registered).
                    if let Err(e) = g.register(&next).await {
                        tracing::error!(error = %crate::exit::one_line(e.as_ref()), "coordinator group: new pairs got no slot");
                    }
                }
                supervisor.reconcile(next).await;
                defs.applied(generation);
            }
        }
    }
    cancel.cancel();
    supervisor.shutdown().await;
    if let Some(g) = cgroup {
        g.leave().await;
    }
    Ok(())
}

/// Where the pipeline of (`sync`, `target`) reads from under `fleetsync coordinator`.
pub fn feed_spec(
    config: &Config,
    settings: &KafkaSettings,
    sync: &SyncConfig,
    target: &str,
) -> Result<KafkaFeedSpec> {
    Ok(KafkaFeedSpec {
        bus: config.bus.clone(),
        settings: settings.clone(),
        topic: config.bus.topic(&sync.source),
        partition: partition_for(&sync.source, 1),
        group: format!("fleetsync.{}.{}", sync.name, target),
        filter: sync.filter()?,
    })
}

/// Checks the topic before a pipeline consumes it: unsafe settings stop the pipeline
/// ([`FeedError::UnsafeTopic`]); a missing topic or unreachable brokers are retried.
async fn check_feed_topic(feed: &KafkaFeedSpec) -> Result<()> {
    let topics = [(feed.topic.clone(), TopicRole::Changes)];
    match kafka_topics::prepare(&feed.bus, &topics, false).await {
        Ok(states) if states.first() == Some(&TopicState::Missing) => Err(anyhow!(
            "topic {} does not exist yet: start the agent of its server, which creates it",
            feed.topic
        )),
        Ok(_) => Ok(()),
        Err(TopicError::Unsafe(line)) => Err(FeedError::UnsafeTopic(line).into()),
        Err(e) => Err(e.into()),
    }
}

/// How long one attempt to take a pipeline's lock on its target waits (`GET_LOCK`).
const LOCK_WAIT_SECS: u32 = 2;
/// Coordinator groups: how often a fenced pipeline looks whether the pair's lock was let go.
const FENCED_RECHECK: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Takes the named lock of this (sync, target) on the target (`GET_LOCK`, held by the
    /// returned connection, released when it closes — also when the process dies), waiting
    /// while another coordinator holds it. `None`: cancelled while waiting.
    async fn apply_lock(&self, cancel: &CancellationToken) -> Result<Option<mysql_async::Conn>> {
        use mysql_async::prelude::Queryable;
        let name = lock_name(&self.applier.sync, &self.applier.target);
        let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
        let mut told = false;
        loop {
            let got: Option<Option<i64>> = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                r = conn.exec_first("SELECT GET_LOCK(?, ?)", (&name, LOCK_WAIT_SECS)) => r?,
            };
            if got.flatten() == Some(1) {
                if told {
                    tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "took over applying");
                }
                return Ok(Some(conn));
            }
            if !told {
                tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "another coordinator applies this sync to this target: standing by");
                self.update(|s| s.state = "standby".into());
                told = true;
            }
        }
    }

    /// Coordinator groups: takes the pair's lock while this member owns the pair, fencing a
    /// previous owner that still holds it (a stalled or half-open process): every connection
    /// holding the pair's lock or its applier's locks is ended (`KILL CONNECTION`), which
    /// rolls back its open transaction and frees the locks. Once the pair's lock is ours,
    /// holders of the applier's locks left over from a previous owner are ended too, so that
    /// the applier (which reads the stored position only after taking its own lock) starts at
    /// once. `None`: cancelled, the pair was revoked, or this pipeline was fenced (it held the
    /// lock since it got the pair and another member holds it now: it drops the pair and
    /// never fences back; see [`Pipeline::wait_owned`]).
    async fn group_lock(
        &self,
        member: &crate::cgroup::Membership,
        cancel: &CancellationToken,
    ) -> Result<Option<mysql_async::Conn>> {
        use mysql_async::prelude::Queryable;
        let (sync, target) = (&self.applier.sync, &self.applier.target);
        let key = crate::cgroup::pair_key(sync, target);
        let name = lock_name(sync, target);
        let applier_locks = fleetsync_coordinator::apply::owner_locks(sync, &self.applier.source);
        let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
        let me = u64::from(conn.id());
        // The first try does not wait: a holder is fenced at once (the group already waited
        // the session timeout); after a fence, the wait lets the ended connection go. A
        // pipeline that held the lock waits too: its own previous connection may still be
        // closing, which must not look like being fenced.
        let mut wait = if self.held.load(Ordering::SeqCst) {
            LOCK_WAIT_SECS
        } else {
            0
        };
        loop {
            if !member.owns(&key) {
                return Ok(None);
            }
            let got: Option<Option<i64>> = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                r = conn.exec_first("SELECT GET_LOCK(?, ?)", (&name, wait)) => r?,
            };
            wait = LOCK_WAIT_SECS;
            if got.flatten() == Some(1) {
                self.held.store(true, Ordering::SeqCst);
                let n = kill_holders(&mut conn, &applier_locks, me).await?;
                if n > 0 {
                    tracing::warn!(sync = %sync, target = %target, connections = n, "fenced a previous owner's applier connections on the target");
                }
                record_owner(&mut conn, sync, target, &member.member).await?;
                tracing::info!(sync = %sync, target = %target, member = %member.member, "owner of this pair: applying");
                return Ok(Some(conn));
            }
            if self.held.swap(false, Ordering::SeqCst) {
                // We held the lock since we got the pair; someone else holds it now: another
                // member took the pair over and ended our connections.
                self.fenced.store(true, Ordering::SeqCst);
                metrics::counter!(crate::cgroup::METRIC_FENCED, "sync" => sync.clone(), "target" => target.clone()).increment(1);
                tracing::warn!(sync = %sync, target = %target, member = %member.member, "fenced: another coordinator of the group took this pair over; dropping it");
                return Ok(None);
            }
            let locks: Vec<String> = std::iter::once(name.clone())
                .chain(applier_locks.iter().cloned())
                .collect();
            let n = kill_holders(&mut conn, &locks, me).await?;
            tracing::warn!(sync = %sync, target = %target, connections = n, "the pair's previous owner still holds its lock on the target: fencing it (ended its connections)");
        }
    }

    /// Coordinator groups: waits until this member owns the pair (`standby` meanwhile). A
    /// fenced pipeline waits until the pair is revoked (the group caught up: it is `standby`
    /// again) or its lock is let go (the member that fenced it stopped while this one still
    /// owns the pair); it never fences back. `false`: cancelled.
    async fn wait_owned(
        &self,
        member: &crate::cgroup::Membership,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        use mysql_async::prelude::Queryable;
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        let mut owned = member.subscribe();
        let mut shown = String::new();
        loop {
            let ours = owned.borrow_and_update().contains(&key);
            if !ours {
                self.held.store(false, Ordering::SeqCst);
                self.fenced.store(false, Ordering::SeqCst);
            }
            let fenced = self.fenced.load(Ordering::SeqCst);
            if ours && fenced {
                let name = lock_name(&self.applier.sync, &self.applier.target);
                let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
                let holder: Option<Option<u64>> =
                    conn.exec_first("SELECT IS_USED_LOCK(?)", (&name,)).await?;
                let _ = conn.disconnect().await;
                if holder.flatten().is_none() {
                    tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "the member that fenced this pair let it go: applying it again");
                    self.fenced.store(false, Ordering::SeqCst);
                    return Ok(true);
                }
            } else if ours {
                return Ok(true);
            }
            let state = if fenced { "fenced" } else { "standby" };
            if shown != state {
                shown = state.to_string();
                self.update(|s| {
                    s.state = state.into();
                    s.owner = None;
                    s.error = None;
                    s.failure = None;
                });
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(false),
                changed = owned.changed() => if changed.is_err() { return Ok(false) },
                _ = tokio::time::sleep(FENCED_RECHECK), if fenced => {}
            }
        }
    }
}

/// Ends every connection but `me` that holds one of `locks` on the target. A connection gone
/// meanwhile is fine. Ending another user's connection needs `CONNECTION ADMIN` (MariaDB
/// 10.5+) or `SUPER`; every coordinator of a group uses the same user in practice.
async fn kill_holders(conn: &mut mysql_async::Conn, locks: &[String], me: u64) -> Result<usize> {
    use mysql_async::prelude::Queryable;
    let mut killed = 0;
    for name in locks {
        let holder: Option<Option<u64>> =
            conn.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
        let Some(id) = holder.flatten().filter(|id| *id != me) else {
            continue;
        };
        match conn.query_drop(format!("KILL CONNECTION {id}")).await {
            Ok(()) => killed += 1,
            // ER_NO_SUCH_THREAD: it went away by itself.
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(e) => {
                return Err(anyhow!(
                    "cannot end the previous owner's connection {id} (it holds {name}): {e}; the coordinators must connect as the same user, or have CONNECTION ADMIN"
                ))
            }
        }
    }
    Ok(killed)
}

/// The pair's owner as `fleetsync status` shows it: written by the owner on its lock
/// connection, believed only while that connection holds the pair's lock.
const OWNER_TABLE: &str = "CREATE DATABASE IF NOT EXISTS fleetsync; \
    CREATE TABLE IF NOT EXISTS fleetsync.pair_owner (sync_name VARCHAR(64) NOT NULL, \
    target VARCHAR(64) NOT NULL, member VARCHAR(255) NOT NULL, connection_id BIGINT UNSIGNED NOT NULL, \
    since_ms BIGINT UNSIGNED NOT NULL, PRIMARY KEY (sync_name, target)) ENGINE=InnoDB";

async fn record_owner(
    conn: &mut mysql_async::Conn,
    sync: &str,
    target: &str,
    member: &str,
) -> Result<()> {
    use mysql_async::prelude::Queryable;
    conn.query_drop(OWNER_TABLE).await?;
    conn.exec_drop(
        "REPLACE INTO fleetsync.pair_owner VALUES (?, ?, ?, CONNECTION_ID(), ?)",
        (
            sync,
            target,
            member,
            fleetsync_agent::source::stream::now_ms(),
        ),
    )
    .await?;
    Ok(())
}

/// The member applying (`sync`, `target`) according to the target: the recorded owner while
/// its connection holds the pair's lock; `None` when nobody holds it (or it is unknown).
pub async fn owner_of(conn: &mut mysql_async::Conn, sync: &str, target: &str) -> Option<String> {
    use mysql_async::prelude::Queryable;
    let name = lock_name(sync, target);
    let row: Option<(String, Option<u64>, Option<u64>)> = conn
        .exec_first(
            "SELECT member, connection_id, IS_USED_LOCK(?) FROM fleetsync.pair_owner WHERE sync_name = ? AND target = ?",
            (&name, sync, target),
        )
        .await
        .ok()
        .flatten();
    let (member, recorded, holder) = row?;
    (recorded.is_some() && recorded == holder).then_some(member)
}

/// Pings the lock's connection every [`LOCK_PING`] (every [`GROUP_LOCK_PING`] in a
/// coordinator group: a fenced member notices its ended connection at once); returns when it
/// fails.
async fn keep_lock(conn: &mut mysql_async::Conn, group: bool) -> anyhow::Error {
    use mysql_async::prelude::Queryable;
    let every = if group { GROUP_LOCK_PING } else { LOCK_PING };
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = conn.ping().await {
            return anyhow!("lost the connection that holds the apply lock on the target: {e}");
        }
    }
}

/// The lock connection's keepalive: far below any server's `wait_timeout`.
const LOCK_PING: Duration = Duration::from_secs(60);
/// The lock connection's ping in a coordinator group.
const GROUP_LOCK_PING: Duration = Duration::from_secs(1);

/// The pair's lock name: at most 64 characters (MariaDB's limit), a hash past that.
fn lock_name(sync: &str, target: &str) -> String {
    let name = format!("fleetsync.apply.{sync}.{target}");
    if name.len() <= 64 {
        return name;
    }
    // A stable hash: every coordinator (any build) must name the same lock.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("fleetsync.apply.{hex}")
}

/// Where a Kafka pipeline reads from.
#[derive(Clone)]
pub struct KafkaFeedSpec {
    /// For the topic check before each start.
    pub bus: BusConfig,
    pub settings: KafkaSettings,
    pub topic: String,
    pub partition: i32,
    pub group: String,
    pub filter: TableFilter,
}

impl Pipeline {
    /// Consumes after the offset stored in the target until cancelled or an error. In a
    /// coordinator group, only while this member owns the pair: it waits for ownership, and
    /// a revoke ends the attempt (its target connections close, which frees the locks) and
    /// goes back to waiting.
    pub async fn kafka_once(&self, feed: &KafkaFeedSpec, cancel: &CancellationToken) -> Result<()> {
        let Some(member) = self.cgroup.clone() else {
            return self.kafka_attempt(feed, cancel, None).await;
        };
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        loop {
            if !self.wait_owned(&member, cancel).await? {
                return Ok(());
            }
            member.activate(&key);
            let result = self.kafka_attempt(feed, cancel, Some(&member)).await;
            member.released(&key);
            self.update(|s| s.owner = None);
            result?;
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// One connection + feed attempt: consume after the offset stored in the target. In a
    /// group, `Ok` also when the pair was revoked or this member was fenced.
    async fn kafka_attempt(
        &self,
        feed: &KafkaFeedSpec,
        cancel: &CancellationToken,
        member: Option<&crate::cgroup::Membership>,
    ) -> Result<()> {
        // One applier per (sync, target) across the fleet: every coordinator follows the same
        // API-made syncs, and the one holding the target's lock applies (the others stand by).
        let lock = match member {
            None => self.apply_lock(cancel).await?,
            Some(m) => self.group_lock(m, cancel).await?,
        };
        let Some(mut lock) = lock else {
            return Ok(());
        };
        if let Some(m) = member {
            let id = m.member.clone();
            self.update(|s| s.owner = Some(id));
        }
        let result = self.attempt_locked(feed, cancel, member, &mut lock).await;
        // In a group, an error under the lock (at any step: a member stalled while starting
        // finds its applier's connection ended) may be another member ending our connections
        // (fencing): if the pair's lock is now held by a connection not ours, drop the pair
        // (never retry into the lock, never fence back). A stalled member that wakes up may
        // see the revoke first: the check is the same.
        let result = match (result, member) {
            (r, Some(m)) if !cancel.is_cancelled() && self.fenced_now(&lock).await => {
                self.held.store(false, Ordering::SeqCst);
                self.fenced.store(true, Ordering::SeqCst);
                metrics::counter!(crate::cgroup::METRIC_FENCED, "sync" => self.applier.sync.clone(), "target" => self.applier.target.clone()).increment(1);
                let why = r.err().map(|e| crate::exit::one_line(e.as_ref()));
                tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, member = %m.member, error = ?why, "fenced: another coordinator of the group took this pair over and ended our connections; dropping it");
                Ok(())
            }
            (r, _) => r,
        };
        let _ = lock.disconnect().await;
        result
    }

    /// The part of an attempt that runs under the pair's lock (`lock`): the applier, the
    /// feed, the apply loop. In a group, `Ok` also when the pair was revoked.
    async fn attempt_locked(
        &self,
        feed: &KafkaFeedSpec,
        cancel: &CancellationToken,
        member: Option<&crate::cgroup::Membership>,
        lock: &mut mysql_async::Conn,
    ) -> Result<()> {
        let mut applier = Applier::connect(
            self.target_opts.clone(),
            self.spec.opts.clone(),
            self.applier.clone(),
        )
        .await?;
        self.refuse_evicted()?;
        let state = applier.load_state().await?;
        let after = state.as_ref().and_then(|s| s.bus_offset);
        check_feed_topic(feed).await?;
        let mut kafka = KafkaFeed::new(
            feed.settings.client_config(),
            &feed.settings.redactor,
            &feed.group,
            &feed.topic,
            feed.partition,
            after,
            feed.filter.clone(),
        )?;
        tracing::info!(sync = %self.applier.sync, target = %self.applier.target, topic = %feed.topic, after = ?after, "consuming");
        // The lock lives as long as its connection: keep it from idling out (`wait_timeout`);
        // a lost lock connection stops applying (the pipeline retries and takes it again).
        let key = crate::cgroup::pair_key(&self.applier.sync, &self.applier.target);
        let result = tokio::select! {
            r = self.apply_loop(&mut applier, &mut kafka, cancel) => r,
            e = keep_lock(lock, member.is_some()) => Err(e),
            _ = revoked(member, &key) => {
                tracing::info!(sync = %self.applier.sync, target = %self.applier.target, "pair revoked: letting go of the target");
                Ok(())
            }
        };
        // The target connections close now (the locks go with them) — also mid-batch: the
        // open transaction rolls back, and the next owner reads the position after the lock.
        drop(applier);
        // librdkafka's consumer close can block for long: drop it off the runtime.
        tokio::task::spawn_blocking(move || drop(kafka));
        result
    }
}

impl Pipeline {
    /// Whether the pair's lock is held by a connection other than `lock` (ours): another
    /// member fenced this one (a member moving the pair normally waits for this one to let
    /// go, so it cannot hold the lock yet). Unknown (the target unreachable) counts as not
    /// fenced.
    async fn fenced_now(&self, lock: &mysql_async::Conn) -> bool {
        use mysql_async::prelude::Queryable;
        let name = lock_name(&self.applier.sync, &self.applier.target);
        let check = async {
            let mut conn = mysql_async::Conn::new(self.target_opts.clone()).await?;
            let holder: Option<Option<u64>> =
                conn.exec_first("SELECT IS_USED_LOCK(?)", (&name,)).await?;
            let _ = conn.disconnect().await;
            anyhow::Ok(holder.flatten())
        };
        match tokio::time::timeout(Duration::from_secs(5), check).await {
            Ok(Ok(holder)) => {
                tracing::debug!(sync = %self.applier.sync, target = %self.applier.target, holder = ?holder, ours = lock.id(), "who holds the pair's lock");
                holder.is_some_and(|id| id != u64::from(lock.id()))
            }
            Ok(Err(e)) => {
                tracing::warn!(sync = %self.applier.sync, target = %self.applier.target, error = %crate::exit::one_line(e.as_ref()), "cannot tell whether another member fenced this one");
                false
            }
            Err(_) => false,
        }
    }
}

/// Resolves when `member` no longer owns `key` (never without a group).
async fn revoked(member: Option<&crate::cgroup::Membership>, key: &str) {
    let Some(m) = member else {
        return std::future::pending().await;
    };
    let mut owned = m.subscribe();
    loop {
        if !owned.borrow_and_update().contains(key) {
            return;
        }
        if owned.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
