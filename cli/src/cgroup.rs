//! Coordinator groups (`[coordinator] group`): coordinators that share a fleet's (sync, target)
//! pairs through Kafka's consumer-group protocol. See docs/scaling.md for the argument.
//!
//! * **Slots.** The group's work topic `<topic_prefix>.coordinators.<group>` has one partition
//!   per *slot*; a slot carries at most one pair. Members subscribe to it with the
//!   cooperative-sticky assignor: the broker's group coordinator balances partition counts
//!   (12 pairs over 3 members: 4 each), and a join or leave moves only what must move. No
//!   message is ever written to the work topic: its partitions only name units of work.
//! * **Pair → slot table.** Kept in `<topic_prefix>.coordinators.<group>.slots` (one partition,
//!   never compacted, infinite retention): a record `sync/target` → slot. Every member reads it
//!   from the start, in order; the **first** record of a pair wins, and a record naming a slot
//!   already taken by another pair is void. So the table is the same for every member whatever
//!   its local configuration, and two members never map one pair to two slots. A member whose
//!   configuration has a pair the table lacks proposes the lowest free slot, reads the topic
//!   back and tries again if it lost; then grows the work topic (CreatePartitions) to cover it.
//!   A deleted pair keeps its slot (re-adding it reuses the slot).
//! * **Ownership.** A member owns the pairs of its assigned slots. A revoke (`pre_rebalance`)
//!   removes them first and waits up to [`REVOKE_GRACE`] for their pipelines to drop their
//!   target connections (which releases their locks); an assign (`post_rebalance`) adds them.
//!   The pipelines themselves ([`crate::kafka_cmds`]) wait for ownership, take the pair's lock
//!   on the target, fencing a stalled previous owner, and stop when ownership goes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use fleetsync_config::{BusConfig, Config, CoordinatorConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

/// How long a revoke waits for the revoked pairs' pipelines to let go of the target.
pub const REVOKE_GRACE: Duration = Duration::from_secs(10);
/// One admin or metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long registering the pairs' slots may take (reading the table, proposing, reading back).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the membership thread serves each consumer.
const POLL: Duration = Duration::from_millis(100);
/// New partitions of the work topic (added slots) are seen within this.
const METADATA_REFRESH_MS: &str = "2000";

/// Counter: pairs this member stopped applying because another member fenced it (killed its
/// target connections). Labels `sync`, `target`.
pub const METRIC_FENCED: &str = "fleetsync_fenced_total";
/// Gauge: pairs this member owns (applies) in its coordinator group.
pub const METRIC_OWNED_PAIRS: &str = "fleetsync_coordinator_owned_pairs";

/// The key of a pair, in the slot table and the status registry.
pub fn pair_key(sync: &str, target: &str) -> String {
    format!("{sync}/{target}")
}

/// The group's work topic (partitions = slots).
pub fn work_topic(bus: &BusConfig, group: &str) -> String {
    format!("{}.coordinators.{group}", bus.topic_prefix)
}

/// The group's pair → slot table.
pub fn slots_topic(bus: &BusConfig, group: &str) -> String {
    format!("{}.slots", work_topic(bus, group))
}

/// The Kafka consumer group id of the coordinators of `group`.
pub fn group_id(group: &str) -> String {
    format!("fleetsync.coordinators.{group}")
}

/// This process's member id: host name and pid (a pod's host name is its name).
pub fn member_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}

/// The pair → slot table: first record of a pair wins, a slot belongs to its first pair.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlotTable {
    pub by_pair: BTreeMap<String, i32>,
    pub by_slot: BTreeMap<i32, String>,
}

impl SlotTable {
    /// Applies one record of the table's topic, in topic order.
    pub fn apply(&mut self, pair: &str, slot: i32) {
        if slot < 0 || self.by_pair.contains_key(pair) || self.by_slot.contains_key(&slot) {
            return;
        }
        self.by_pair.insert(pair.to_string(), slot);
        self.by_slot.insert(slot, pair.to_string());
    }

    /// The lowest slot no pair has.
    pub fn free_slot(&self) -> i32 {
        (0..).find(|s| !self.by_slot.contains_key(s)).unwrap_or(0)
    }

    /// Slots needed to cover every pair (the work topic's partition count).
    pub fn slots_needed(&self) -> i32 {
        self.by_slot.keys().next_back().map_or(1, |s| s + 1)
    }
}

/// What the membership thread, the rebalance callbacks and the pipelines share.
pub struct Membership {
    pub member: String,
    pub group: String,
    state: Mutex<State>,
    /// Signalled when a pipeline lets go of its pair (see [`Membership::released`]).
    released_cv: Condvar,
    owned: watch::Sender<BTreeSet<String>>,
    /// Next offset of the slots topic to read (everything before it is in the table).
    read_next: AtomicI64,
    /// Set once the pairs are registered: the thread subscribes (joins the group).
    join: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    table: SlotTable,
    assigned: BTreeSet<i32>,
    /// Pairs whose pipeline holds (or is taking) target connections.
    active: HashSet<String>,
}

impl Membership {
    fn new(group: &str) -> Self {
        Membership {
            member: member_id(),
            group: group.to_string(),
            state: Mutex::new(State::default()),
            released_cv: Condvar::new(),
            owned: watch::channel(BTreeSet::new()).0,
            read_next: AtomicI64::new(0),
            join: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether this member owns `pair` now.
    pub fn owns(&self, pair: &str) -> bool {
        self.owned.borrow().contains(pair)
    }

    /// Follows the owned pairs.
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<String>> {
        self.owned.subscribe()
    }

    /// The pairs this member owns.
    pub fn owned(&self) -> BTreeSet<String> {
        self.owned.borrow().clone()
    }

    /// A pipeline starts taking its pair's target connections.
    pub fn activate(&self, pair: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.active.insert(pair.to_string());
        }
    }

    /// A pipeline dropped its pair's target connections.
    pub fn released(&self, pair: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.active.remove(pair);
        }
        self.released_cv.notify_all();
    }

    fn recompute(&self, s: &State) {
        let owned: BTreeSet<String> = s
            .assigned
            .iter()
            .filter_map(|slot| s.table.by_slot.get(slot).cloned())
            .collect();
        metrics::gauge!(METRIC_OWNED_PAIRS).set(owned.len() as f64);
        self.owned.send_if_modified(|cur| {
            if *cur == owned {
                return false;
            }
            *cur = owned;
            true
        });
    }

    fn assign(&self, slots: &[i32]) {
        if let Ok(mut s) = self.state.lock() {
            s.assigned.extend(slots);
            tracing::info!(group = %self.group, member = %self.member, slots = ?slots, pairs = ?slots.iter().filter_map(|x| s.table.by_slot.get(x)).collect::<Vec<_>>(), "coordinator group: slots assigned");
            self.recompute(&s);
        }
    }

    /// Removes `slots` and waits (bounded) until their pairs' pipelines let go.
    fn revoke(&self, slots: &[i32], lost: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        for slot in slots {
            s.assigned.remove(slot);
        }
        let pairs: Vec<String> = slots
            .iter()
            .filter_map(|x| s.table.by_slot.get(x).cloned())
            .collect();
        tracing::info!(group = %self.group, member = %self.member, slots = ?slots, pairs = ?pairs, lost, "coordinator group: slots revoked");
        self.recompute(&s);
        let deadline = Instant::now() + REVOKE_GRACE;
        while pairs.iter().any(|p| s.active.contains(p)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(group = %self.group, pairs = ?pairs, "revoked pairs still hold target connections after {REVOKE_GRACE:?}: the next owner fences them");
                break;
            }
            match self.released_cv.wait_timeout(s, left) {
                Ok((g, _)) => s = g,
                Err(_) => return,
            }
        }
    }

    fn record(&self, pair: &str, slot: i32, offset: i64) {
        if let Ok(mut s) = self.state.lock() {
            s.table.apply(pair, slot);
            self.recompute(&s);
        }
        self.read_next.store(offset + 1, Ordering::SeqCst);
    }

    fn table(&self) -> SlotTable {
        self.state
            .lock()
            .map(|s| s.table.clone())
            .unwrap_or_default()
    }
}

/// The group consumer's context: rebalances update the [`Membership`].
struct GroupContext(Arc<Membership>);

impl ClientContext for GroupContext {}

fn slots_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.0.revoke(&slots_of(tpl), consumer.assignment_lost());
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.0.assign(&slots_of(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.0.group, error = %e, "coordinator group: rebalance error")
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A running membership: the thread that serves the group and reads the slot table.
pub struct Group {
    pub membership: Arc<Membership>,
    bus: BusConfig,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Group {
    /// Creates the group's topics when missing, registers `config`'s pairs in the slot table,
    /// then joins the group.
    pub async fn join(config: &Config) -> Result<Group> {
        let cc: &CoordinatorConfig = &config.coordinator;
        let group = cc
            .group
            .clone()
            .ok_or_else(|| anyhow!("[coordinator] group is not set"))?;
        let bus = config.bus.clone();
        let membership = Arc::new(Membership::new(&group));
        ensure_topics(&bus, &group).await?;
        let redactor = bus.redactor();
        let base = crate::kafka_topics::client_config(&bus);
        let mut slots_cfg = base.clone();
        slots_cfg
            .set("group.id", format!("{}.slots", group_id(&group)))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false");
        let slots: BaseConsumer = slots_cfg
            .create()
            .map_err(|e| anyhow!(redactor.apply(&format!("kafka consumer: {e}"))))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&slots_topic(&bus, &group), 0, Offset::Beginning)
            .map_err(|e| anyhow!("kafka assign: {e}"))?;
        slots
            .assign(&tpl)
            .map_err(|e| anyhow!("kafka assign: {e}"))?;
        let mut group_cfg = base;
        group_cfg
            .set("group.id", group_id(&group))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", cc.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                cc.heartbeat_interval_ms().to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS)
            .set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer<GroupContext> = group_cfg
            .create_with_context(GroupContext(membership.clone()))
            .map_err(|e| anyhow!(redactor.apply(&format!("kafka consumer: {e}"))))?;
        let m = membership.clone();
        let work = work_topic(&bus, &group);
        let thread = std::thread::Builder::new()
            .name("fleetsync-cgroup".into())
            .spawn(move || serve(m, consumer, slots, &work))?;
        let g = Group {
            membership,
            bus,
            thread: Some(thread),
        };
        // The pairs get their slots, and this member knows the whole table, before it joins:
        // a slot it is given always names its pair.
        let registered = g.register(config).await;
        if let Err(e) = registered {
            g.membership.stop.store(true, Ordering::SeqCst);
            return Err(e);
        }
        g.membership.join.store(true, Ordering::SeqCst);
        tracing::info!(group = %group, member = %g.membership.member, session_timeout_ms = cc.session_timeout_ms, "joined the coordinator group");
        Ok(g)
    }

    /// Gives every pair of `config` a slot (see the module doc) and grows the work topic.
    pub async fn register(&self, config: &Config) -> Result<()> {
        let m = &self.membership;
        let pairs: Vec<String> = config
            .syncs
            .iter()
            .flat_map(|s| s.targets.iter().map(|t| pair_key(&s.name, t)))
            .collect();
        let topic = slots_topic(&self.bus, &m.group);
        let redactor = self.bus.redactor();
        let producer: FutureProducer = crate::kafka_topics::client_config(&self.bus)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| anyhow!(redactor.apply(&format!("kafka producer: {e}"))))?;
        let deadline = Instant::now() + REGISTER_TIMEOUT;
        let result = async {
            loop {
                let high = high_watermark(&producer, &topic, deadline).await?;
                self.caught_up(high, deadline).await?;
                let table = m.table();
                let missing: Vec<&String> = pairs
                    .iter()
                    .filter(|p| !table.by_pair.contains_key(*p))
                    .collect();
                if missing.is_empty() {
                    return grow(&self.bus, &m.group, table.slots_needed()).await;
                }
                let mut proposal = table.clone();
                let mut last = -1;
                for pair in missing {
                    let slot = proposal.free_slot();
                    proposal.apply(pair, slot);
                    let value = slot.to_string();
                    let delivered = producer
                        .send(
                            FutureRecord::to(&topic)
                                .key(pair.as_str())
                                .payload(&value)
                                .partition(0),
                            REQUEST_TIMEOUT,
                        )
                        .await
                        .map_err(|(e, _)| anyhow!("writing the slot table {topic}: {e}"))?;
                    last = last.max(delivered.offset);
                }
                self.caught_up(last + 1, deadline).await?;
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "could not register the pairs in {topic} within {REGISTER_TIMEOUT:?}"
                    ));
                }
            }
        }
        .await;
        tokio::task::spawn_blocking(move || drop(producer));
        result
    }

    async fn caught_up(&self, offset: i64, deadline: Instant) -> Result<()> {
        let mut told = Instant::now();
        while self.membership.read_next.load(Ordering::SeqCst) < offset {
            if told.elapsed() > Duration::from_secs(5) {
                told = Instant::now();
                tracing::info!(
                    read = self.membership.read_next.load(Ordering::SeqCst),
                    wanted = offset,
                    "coordinator group: still reading the slot table"
                );
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "the slot table {} was not read up to offset {offset} within {REGISTER_TIMEOUT:?}",
                    slots_topic(&self.bus, &self.membership.group)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Leaves the group (after the pipelines stopped): off the runtime, bounded.
    pub async fn leave(mut self) {
        self.membership.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let joined = tokio::time::timeout(
                REVOKE_GRACE + REQUEST_TIMEOUT,
                tokio::task::spawn_blocking(move || t.join()),
            )
            .await;
            if joined.is_err() {
                tracing::warn!("coordinator group: leaving took too long; exiting anyway");
            }
        }
    }
}

/// The membership thread: serves the group consumer (heartbeats, rebalances) and reads the
/// slot table, until told to stop; closing the consumer leaves the group.
fn serve(
    m: Arc<Membership>,
    consumer: BaseConsumer<GroupContext>,
    slots: BaseConsumer,
    work: &str,
) {
    let mut joined = false;
    while !m.stop.load(Ordering::SeqCst) {
        if !joined && m.join.load(Ordering::SeqCst) {
            if let Err(e) = consumer.subscribe(&[work]) {
                tracing::error!(topic = work, error = %e, "coordinator group: cannot subscribe");
                return;
            }
            joined = true;
        }
        if joined {
            if let Some(Err(e)) = consumer.poll(POLL / 2) {
                tracing::warn!(error = %e, "coordinator group: consumer error");
            }
        }
        let mut wait = POLL / 2;
        while let Some(msg) = slots.poll(std::mem::take(&mut wait)) {
            match msg {
                Ok(msg) => {
                    let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
                    let slot = msg
                        .payload()
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<i32>().ok());
                    match (key, slot) {
                        (Some(k), Some(s)) => m.record(k, s, msg.offset()),
                        _ => {
                            tracing::warn!(
                                offset = msg.offset(),
                                "coordinator group: ignoring a malformed slot record"
                            );
                            m.read_next.store(msg.offset() + 1, Ordering::SeqCst);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "coordinator group: slot table read error");
                    break;
                }
            }
        }
    }
    // Unsubscribing revokes every slot (the pipelines are already stopped), then closing
    // leaves the group at once instead of after the session timeout.
    consumer.unsubscribe();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while Instant::now() < deadline && !consumer.assignment().is_ok_and(|a| a.count() == 0) {
        let _ = consumer.poll(POLL);
    }
    drop(consumer);
    drop(slots);
}

/// The end of the slot table's partition; a topic just created may take a moment to be
/// known to every broker: asked again until `deadline`.
async fn high_watermark(producer: &FutureProducer, topic: &str, deadline: Instant) -> Result<i64> {
    loop {
        let p = producer.clone();
        let t = topic.to_string();
        let got = tokio::task::spawn_blocking(move || {
            p.client().fetch_watermarks(&t, 0, REQUEST_TIMEOUT)
        })
        .await?;
        match got {
            Ok((_, high)) => return Ok(high),
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow!("reading the end of {topic}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn admin(bus: &BusConfig) -> Result<AdminClient<DefaultClientContext>> {
    crate::kafka_topics::client_config(bus)
        .create()
        .map_err(|e| anyhow!(bus.redactor().apply(&format!("kafka admin client: {e}"))))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates the work and slot topics when missing: the bus's replication factor and
/// `min.insync.replicas`, no unclean leader election; the slot table is never deleted or
/// compacted (its first records decide).
async fn ensure_topics(bus: &BusConfig, group: &str) -> Result<()> {
    let spec = bus.topic_spec();
    let admin = admin(bus)?;
    let rf = || TopicReplication::Fixed(spec.replication_factor);
    let isr = spec.min_insync_replicas.to_string();
    let (work, slots) = (work_topic(bus, group), slots_topic(bus, group));
    let topics = [
        NewTopic::new(&work, 1, rf())
            .set("min.insync.replicas", &isr)
            .set("unclean.leader.election.enable", "false"),
        NewTopic::new(&slots, 1, rf())
            .set("min.insync.replicas", &isr)
            .set("unclean.leader.election.enable", "false")
            .set("cleanup.policy", "delete")
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1"),
    ];
    let results = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(2),
        admin.create_topics(topics.iter(), &admin_options()),
    )
    .await
    .map_err(|_| {
        anyhow!("kafka: creating {work} and {slots}: no answer within {REQUEST_TIMEOUT:?}")
    })?
    .map_err(|e| anyhow!("kafka: creating {work} and {slots}: {e}"))?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created the coordinator group's topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(anyhow!("kafka: cannot create topic {t}: {code}")),
        }
    }
    tokio::task::spawn_blocking(move || drop(admin));
    Ok(())
}

/// Grows the work topic to `needed` partitions (slots); another member growing it first is
/// fine.
async fn grow(bus: &BusConfig, group: &str, needed: i32) -> Result<()> {
    let work = work_topic(bus, group);
    let admin = admin(bus)?;
    let have = {
        let t = work.clone();
        let client = crate::kafka_topics::client_config(bus)
            .create::<rdkafka::producer::BaseProducer>()
            .map_err(|e| anyhow!("kafka client: {e}"))?;
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&t), REQUEST_TIMEOUT)
                .ok()
                .and_then(|md| md.topics().first().map(|t| t.partitions().len() as i32))
        })
        .await?
        .unwrap_or(0)
    };
    if have >= needed {
        tokio::task::spawn_blocking(move || drop(admin));
        return Ok(());
    }
    let new = NewPartitions::new(&work, needed as usize);
    let results = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(2),
        admin.create_partitions([&new], &admin_options()),
    )
    .await
    .map_err(|_| anyhow!("kafka: growing {work}: no answer within {REQUEST_TIMEOUT:?}"))?
    .map_err(|e| anyhow!("kafka: growing {work}: {e}"))?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %work, from = have, to = needed, "coordinator group: added slots")
            }
            // Someone grew it meanwhile (to as many or more).
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((t, code)) => return Err(anyhow!("kafka: cannot grow topic {t}: {code}")),
        }
    }
    tokio::task::spawn_blocking(move || drop(admin));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Membership, SlotTable};
    use std::time::{Duration, Instant};

    /// Ownership follows the assigned slots through the table; a revoke removes the pairs at
    /// once and waits until their pipelines let go (not longer), and returns at once for pairs
    /// no pipeline holds.
    #[test]
    fn revoke_waits_for_release() {
        let m = std::sync::Arc::new(Membership::new("g"));
        m.record("s/a", 0, 0);
        m.record("s/b", 1, 1);
        m.assign(&[0, 1, 5]);
        assert!(m.owns("s/a") && m.owns("s/b"));
        m.activate("s/a");
        let m2 = m.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !m2.owns("s/a"),
                "revoked pairs are no longer owned while it waits"
            );
            m2.released("s/a");
        });
        let t = Instant::now();
        m.revoke(&[0], false);
        let waited = t.elapsed();
        releaser.join().expect("releaser");
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < super::REVOKE_GRACE, "{waited:?}");
        assert!(!m.owns("s/a") && m.owns("s/b"));
        let t = Instant::now();
        m.revoke(&[1, 5], true);
        assert!(t.elapsed() < Duration::from_millis(100));
        assert!(m.owned().is_empty());
        // A pair registered later on an assigned slot becomes owned.
        m.assign(&[2]);
        m.record("s/c", 2, 2);
        assert!(m.owns("s/c"));
    }

    /// The first record of a pair wins; a record naming a taken slot is void; the table is
    /// the same whoever reads it, whatever its own proposals were.
    #[test]
    fn first_writer_wins() {
        let mut t = SlotTable::default();
        t.apply("s/a", 0);
        t.apply("s/b", 0); // lost the race for slot 0
        t.apply("s/a", 1); // a second proposal for a placed pair
        t.apply("s/b", 1);
        t.apply("s/c", -1);
        assert_eq!(t.by_pair.get("s/a"), Some(&0));
        assert_eq!(t.by_pair.get("s/b"), Some(&1));
        assert!(!t.by_pair.contains_key("s/c"));
        assert_eq!(t.free_slot(), 2);
        assert_eq!(t.slots_needed(), 2);
        assert_eq!(SlotTable::default().slots_needed(), 1);
    }
}
