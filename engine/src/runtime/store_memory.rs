//! `MemoryStore`: the in-process [`Store`] adapter, for the embedded mode and for tests.
//!
//! Everything lives behind one `std::sync::Mutex` inside an `Arc` (clones share the data; no
//! lock is ever held across an `.await`). It keeps the Redis adapter's semantics exactly, and
//! the shared contract suite (`tests/integration/store_contract.rs`) holds both to them:
//!
//! * a commit checks the partition's fencing token first, then the version, and writes nothing
//!   when either fails;
//! * a finished execution (status other than `RUNNING`) loses its remaining timers, and all of
//!   its data expires `retention` after the last commit that left it finished; a later
//!   `RUNNING` commit (redrive) cancels the expiry;
//! * revisions of a deleted state machine stay readable for `retention`, then expire;
//! * lists are ordered by ARN (state machines, activities) or newest-first (executions, ties by
//!   ARN); page tokens are the position of the last item returned, so pages stay stable while
//!   items are added; a page `limit` of 0 counts as 1.
//!
//! "Now" comes from the clock function given to [`MemoryStore::new`], never from the system
//! clock inside the logic, so tests move time by hand. Lease expiry uses the same clock.
//!
//! It is not durable: a process restart loses everything. The helpers at the end
//! ([`check_commit`], [`execution_order_key`], [`timer_member`]) are shared with the Redis
//! adapter so both validate and order alike.

use super::store::{
    ActivityRecord, Commit, ExecutionRecord, Fence, OutboxEntry, OutboxMessage, Page, RouteSwap,
    StateMachineRecord, Store, StoreError, SweepStep, TimerEntry,
};
use crate::history::HistoryEvent;
use crate::interp::{ExecutionStatus, JournalEntry};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long finished executions are kept unless told otherwise: 90 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// The store's source of "now", in milliseconds since the Unix epoch.
pub type NowFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The in-process store. Cheap to clone; clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    now: NowFn,
    retention_ms: i64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("retention_ms", &self.retention_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    state_machines: BTreeMap<String, StateMachineRecord>,
    /// State machine ARN → revision id → record; outlives a deletion by the retention.
    revisions: HashMap<String, HashMap<String, StateMachineRecord>>,
    revisions_expire_at: HashMap<String, i64>,
    activities: BTreeMap<String, ActivityRecord>,
    executions: HashMap<String, ExecutionData>,
    /// State machine ARN → order key ([`execution_order_key`]) → execution ARN.
    by_machine: HashMap<String, BTreeMap<String, String>>,
    partitions: HashMap<u32, PartitionData>,
    /// Partition → the reply route last recorded (`swap_reply_route`).
    reply_routes: HashMap<u32, String>,
    /// Live coordinators: owner → alive until (epoch ms).
    members: HashMap<String, i64>,
    /// What expires when, earliest first.
    expiry: BTreeSet<(i64, Expiring)>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Expiring {
    Execution(String),
    Revisions(String),
}

struct ExecutionData {
    record: ExecutionRecord,
    order_key: String,
    events: Vec<HistoryEvent>,
    journal: Vec<JournalEntry>,
    outbox: BTreeMap<u64, OutboxMessage>,
    /// Members ([`timer_member`]) of this execution's scheduled timers.
    timers: BTreeSet<String>,
    expires_at: Option<i64>,
}

#[derive(Default)]
struct PartitionData {
    /// (fire_at_ms, member): the order Redis gives a sorted set.
    timers: BTreeSet<(i64, String)>,
    timer_entries: HashMap<String, TimerEntry>,
    /// Executions with pending outbox entries, in the order they first had some.
    outbox_queue: BTreeMap<u64, String>,
    outbox_position: HashMap<String, u64>,
    outbox_counter: u64,
    /// The latest fencing token handed out (0: never).
    fence: u64,
    lease: Option<Lease>,
}

struct Lease {
    owner: String,
    token: u64,
    /// Held while `now <= expires_at` (Redis expires a key once `now > deadline`).
    expires_at: i64,
}

impl MemoryStore {
    /// A store keeping finished executions for `retention`, reading "now" from `now`.
    pub fn new(retention: Duration, now: NowFn) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            now,
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// A store on the wall clock (the embedded mode).
    pub fn with_system_clock(retention: Duration) -> MemoryStore {
        MemoryStore::new(
            retention,
            Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0)
            }),
        )
    }

    /// Locks the data after dropping whatever expired by now; returns the guard and now.
    fn lock(&self) -> Result<(MutexGuard<'_, Inner>, i64), StoreError> {
        let now = (self.now)();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store: lock poisoned by a panic".into()))?;
        inner.purge(now);
        Ok((inner, now))
    }
}

impl Inner {
    fn purge(&mut self, now: i64) {
        while let Some((at, _)) = self.expiry.first() {
            if *at >= now {
                break;
            }
            let Some((_, what)) = self.expiry.pop_first() else {
                break;
            };
            match what {
                Expiring::Execution(arn) => self.drop_execution(&arn),
                Expiring::Revisions(arn) => {
                    self.revisions.remove(&arn);
                    self.revisions_expire_at.remove(&arn);
                }
            }
        }
    }

    fn drop_execution(&mut self, arn: &str) {
        let Some(data) = self.executions.remove(arn) else {
            return;
        };
        if let Some(index) = self.by_machine.get_mut(&data.record.state_machine_arn) {
            index.remove(&data.order_key);
        }
        let partition = self.partitions.entry(data.record.partition).or_default();
        partition.remove_from_outbox_queue(arn);
        for member in &data.timers {
            partition.remove_timer(member);
        }
    }

    fn set_expiry(&mut self, what: Expiring, old: Option<i64>, new: Option<i64>) {
        if let Some(at) = old {
            self.expiry.remove(&(at, what.clone()));
        }
        if let Some(at) = new {
            self.expiry.insert((at, what));
        }
    }

    fn put_revision(&mut self, sm: &StateMachineRecord) {
        self.revisions
            .entry(sm.arn.clone())
            .or_default()
            .insert(sm.revision_id.clone(), sm.clone());
        let old = self.revisions_expire_at.remove(&sm.arn);
        self.set_expiry(Expiring::Revisions(sm.arn.clone()), old, None);
    }
}

impl PartitionData {
    fn remove_timer(&mut self, member: &str) {
        if let Some(entry) = self.timer_entries.remove(member) {
            self.timers.remove(&(entry.fire_at_ms, member.to_string()));
        }
    }

    fn add_timer(&mut self, member: String, entry: TimerEntry) {
        self.remove_timer(&member);
        self.timers.insert((entry.fire_at_ms, member.clone()));
        self.timer_entries.insert(member, entry);
    }

    fn remove_from_outbox_queue(&mut self, arn: &str) {
        if let Some(position) = self.outbox_position.remove(arn) {
            self.outbox_queue.remove(&position);
        }
    }

    /// Removes `arn`'s outbox entries with `seq <= up_to` from `outbox` (`None`: the
    /// execution is gone) and, when none is left, unlists it (shared by `ack_outbox` and
    /// `commit`).
    fn ack_outbox(
        &mut self,
        arn: &str,
        outbox: Option<&mut BTreeMap<u64, OutboxMessage>>,
        up_to: u64,
    ) {
        let empty = outbox.is_none_or(|o| {
            o.retain(|seq, _| *seq > up_to);
            o.is_empty()
        });
        if empty {
            self.remove_from_outbox_queue(arn);
        }
    }

    fn lease_is_held(&self, now: i64) -> bool {
        self.lease.as_ref().is_some_and(|l| now <= l.expires_at)
    }
}

/// `(token, page)`: a page of `limit` (at least 1) entries after `token`, from an ordered map.
fn page_after<T: Clone>(map: &BTreeMap<String, T>, limit: usize, token: Option<&str>) -> Page<T> {
    let limit = limit.max(1);
    let lower = match token {
        Some(t) => Bound::Excluded(t),
        None => Bound::Unbounded,
    };
    let mut items: Vec<(&String, &T)> = map
        .range::<str, _>((lower, Bound::Unbounded))
        .take(limit + 1)
        .collect();
    let next_token = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(k, _)| (*k).clone())
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(_, v)| v.clone()).collect(),
        next_token,
    }
}

fn ttl_deadline(now: i64, ttl_ms: u64) -> Result<i64, StoreError> {
    if ttl_ms == 0 {
        return Err(StoreError::Backend(
            "lease ttl must be at least 1 ms".into(),
        ));
    }
    Ok(now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)))
}

impl Store for MemoryStore {
    type SweepCursor = ();

    async fn create_state_machine(&self, sm: StateMachineRecord) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        if inner.state_machines.contains_key(&sm.arn) {
            return Err(StoreError::AlreadyExists(sm.arn));
        }
        inner.put_revision(&sm);
        inner.state_machines.insert(sm.arn.clone(), sm);
        Ok(())
    }

    async fn update_state_machine(&self, sm: StateMachineRecord) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        if !inner.state_machines.contains_key(&sm.arn) {
            return Err(StoreError::NotFound(sm.arn));
        }
        inner.put_revision(&sm);
        inner.state_machines.insert(sm.arn.clone(), sm);
        Ok(())
    }

    async fn get_state_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner.state_machines.get(arn).cloned())
    }

    async fn get_state_machine_revision(
        &self,
        arn: &str,
        revision_id: &str,
    ) -> Result<Option<StateMachineRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner
            .revisions
            .get(arn)
            .and_then(|r| r.get(revision_id))
            .cloned())
    }

    async fn list_state_machines(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<StateMachineRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(page_after(
            &inner.state_machines,
            limit,
            next_token.as_deref(),
        ))
    }

    async fn delete_state_machine(&self, arn: &str) -> Result<(), StoreError> {
        let (mut inner, now) = self.lock()?;
        if inner.state_machines.remove(arn).is_none() {
            return Err(StoreError::NotFound(arn.to_string()));
        }
        let at = now.saturating_add(self.retention_ms);
        let old = inner.revisions_expire_at.insert(arn.to_string(), at);
        inner.set_expiry(Expiring::Revisions(arn.to_string()), old, Some(at));
        Ok(())
    }

    async fn create_activity(&self, a: ActivityRecord) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        if inner.activities.contains_key(&a.arn) {
            return Err(StoreError::AlreadyExists(a.arn));
        }
        inner.activities.insert(a.arn.clone(), a);
        Ok(())
    }

    async fn get_activity(&self, arn: &str) -> Result<Option<ActivityRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner.activities.get(arn).cloned())
    }

    async fn list_activities(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ActivityRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(page_after(&inner.activities, limit, next_token.as_deref()))
    }

    async fn delete_activity(&self, arn: &str) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        match inner.activities.remove(arn) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(arn.to_string())),
        }
    }

    async fn update_activity(&self, a: ActivityRecord) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        match inner.activities.get_mut(&a.arn) {
            Some(slot) => {
                *slot = a;
                Ok(())
            }
            None => Err(StoreError::NotFound(a.arn)),
        }
    }

    async fn commit_all(&self, commits: Vec<Commit>) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(commits.len());
        for c in commits {
            results.push(self.commit(c).await);
        }
        results
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        check_commit(&c)?;
        let (mut inner, now) = self.lock()?;
        let inner = &mut *inner;
        let partition_id = c.fence.partition;
        let current_fence = inner.partitions.get(&partition_id).map_or(0, |p| p.fence);
        if current_fence != c.fence.token {
            return Err(StoreError::Fenced {
                partition: partition_id,
            });
        }
        let arn = c.execution.execution_arn.clone();
        match (inner.executions.get(&arn), c.expected_version) {
            (Some(_), 0) => return Err(StoreError::AlreadyExists(arn)),
            (None, 0) => {}
            (None, _) => return Err(StoreError::NotFound(arn)),
            (Some(existing), expected) if existing.record.version != expected => {
                return Err(StoreError::VersionConflict {
                    expected,
                    found: existing.record.version,
                })
            }
            (Some(_), _) => {}
        }

        // Every check passed: from here on nothing fails.
        let order_key = execution_order_key(c.execution.start_ms, &arn);
        let finished = c.execution.status != ExecutionStatus::Running;
        let mut data = inner
            .executions
            .remove(&arn)
            .unwrap_or_else(|| ExecutionData {
                record: c.execution.clone(),
                order_key: order_key.clone(),
                events: Vec::new(),
                journal: Vec::new(),
                outbox: BTreeMap::new(),
                timers: BTreeSet::new(),
                expires_at: None,
            });
        if let Some(index) = inner.by_machine.get_mut(&data.record.state_machine_arn) {
            index.remove(&data.order_key);
        }
        inner
            .by_machine
            .entry(c.execution.state_machine_arn.clone())
            .or_default()
            .insert(order_key.clone(), arn.clone());
        data.order_key = order_key;
        data.record = c.execution;
        data.events.extend(c.events);
        data.journal.extend(c.journal);

        let partition = inner.partitions.entry(partition_id).or_default();
        // Removals first: a step that cancels and reschedules one timer keeps it.
        for t in &c.timers_remove {
            let member = timer_member(&t.execution_arn, t.timer);
            partition.remove_timer(&member);
            data.timers.remove(&member);
        }
        for t in c.timers_add {
            let member = timer_member(&t.execution_arn, t.timer);
            data.timers.insert(member.clone());
            partition.add_timer(member, t);
        }
        if finished {
            for member in std::mem::take(&mut data.timers) {
                partition.remove_timer(&member);
            }
        }
        if !c.outbox.is_empty() {
            for (i, message) in c.outbox.into_iter().enumerate() {
                data.outbox
                    .insert(super::store::outbox_seq(data.record.version, i), message);
            }
            if !partition.outbox_position.contains_key(&arn) {
                partition.outbox_counter += 1;
                let position = partition.outbox_counter;
                partition.outbox_queue.insert(position, arn.clone());
                partition.outbox_position.insert(arn.clone(), position);
            }
        }
        // After the additions (higher seqs), so an execution with new entries keeps its place.
        if let Some(up_to) = c.outbox_ack {
            partition.ack_outbox(&arn, Some(&mut data.outbox), up_to);
        }

        let old_expiry = data.expires_at;
        data.expires_at = finished.then(|| now.saturating_add(self.retention_ms));
        inner.set_expiry(
            Expiring::Execution(arn.clone()),
            old_expiry,
            data.expires_at,
        );
        inner.executions.insert(arn, data);
        Ok(())
    }

    async fn get_execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner.executions.get(arn).map(|d| d.record.clone()))
    }

    async fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        let (inner, _) = self.lock()?;
        let limit = limit.max(1);
        let Some(index) = inner.by_machine.get(state_machine_arn) else {
            return Ok(Page {
                items: Vec::new(),
                next_token: None,
            });
        };
        let lower = match next_token.as_deref() {
            Some(t) => Bound::Excluded(t),
            None => Bound::Unbounded,
        };
        let mut items: Vec<(&String, &ExecutionRecord)> = index
            .range::<str, _>((lower, Bound::Unbounded))
            .filter_map(|(key, arn)| inner.executions.get(arn).map(|d| (key, &d.record)))
            .filter(|(_, r)| status.is_none_or(|s| r.status == s))
            .take(limit + 1)
            .collect();
        let next_token = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(k, _)| (*k).clone())
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|(_, r)| r.clone()).collect(),
            next_token,
        })
    }

    async fn history(
        &self,
        arn: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner
            .executions
            .get(arn)
            .map(|d| {
                d.events
                    .iter()
                    .filter(|e| e.id > after_id)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn journal(&self, arn: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner
            .executions
            .get(arn)
            .map(|d| d.journal.clone())
            .unwrap_or_default())
    }

    async fn pending_outbox(
        &self,
        partition: u32,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let (inner, _) = self.lock()?;
        let mut out = Vec::new();
        let Some(p) = inner.partitions.get(&partition) else {
            return Ok(out);
        };
        for arn in p.outbox_queue.values() {
            let Some(data) = inner.executions.get(arn) else {
                continue;
            };
            for (seq, message) in &data.outbox {
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(OutboxEntry {
                    execution_arn: arn.clone(),
                    seq: *seq,
                    message: message.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn ack_outbox(
        &self,
        partition: u32,
        execution_arn: &str,
        up_to: u64,
    ) -> Result<(), StoreError> {
        let (mut inner, _) = self.lock()?;
        let inner = &mut *inner;
        let outbox = inner
            .executions
            .get_mut(execution_arn)
            .map(|data| &mut data.outbox);
        inner
            .partitions
            .entry(partition)
            .or_default()
            .ack_outbox(execution_arn, outbox, up_to);
        Ok(())
    }

    async fn due_timers(
        &self,
        partition: u32,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<TimerEntry>, StoreError> {
        let (inner, _) = self.lock()?;
        let Some(p) = inner.partitions.get(&partition) else {
            return Ok(Vec::new());
        };
        Ok(p.timers
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .filter_map(|(_, member)| p.timer_entries.get(member).cloned())
            .collect())
    }

    async fn next_timer(&self, partition: u32) -> Result<Option<i64>, StoreError> {
        let (inner, _) = self.lock()?;
        Ok(inner
            .partitions
            .get(&partition)
            .and_then(|p| p.timers.first().map(|(at, _)| *at)))
    }

    async fn acquire_lease(
        &self,
        partition: u32,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<Option<Fence>, StoreError> {
        let (mut inner, now) = self.lock()?;
        let expires_at = ttl_deadline(now, ttl_ms)?;
        let p = inner.partitions.entry(partition).or_default();
        if p.lease_is_held(now) {
            return Ok(None);
        }
        p.fence += 1;
        p.lease = Some(Lease {
            owner: owner.to_string(),
            token: p.fence,
            expires_at,
        });
        Ok(Some(Fence {
            partition,
            token: p.fence,
        }))
    }

    async fn renew_lease(
        &self,
        fence: Fence,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let (mut inner, now) = self.lock()?;
        let expires_at = ttl_deadline(now, ttl_ms)?;
        let Some(p) = inner.partitions.get_mut(&fence.partition) else {
            return Ok(false);
        };
        let held = p.lease_is_held(now);
        match &mut p.lease {
            Some(l) if held && l.owner == owner && l.token == fence.token => {
                l.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn swap_reply_route(&self, partition: u32, route: &str) -> Result<RouteSwap, StoreError> {
        let (mut inner, _) = self.lock()?;
        let previous = inner.reply_routes.insert(partition, route.to_string());
        let previous_in_use = previous
            .as_ref()
            .is_some_and(|p| inner.reply_routes.values().any(|r| r == p));
        Ok(RouteSwap {
            previous,
            previous_in_use,
        })
    }

    async fn heartbeat_member(&self, owner: &str, ttl_ms: u64) -> Result<u32, StoreError> {
        let (mut inner, now) = self.lock()?;
        inner
            .members
            .insert(owner.to_string(), now.saturating_add(ttl_ms as i64));
        inner.members.retain(|_, until| *until > now);
        Ok(inner.members.len() as u32)
    }

    /// Nothing to sweep: an execution leaves its index when it expires.
    async fn sweep_indexes(
        &self,
        _cursor: &mut (),
        _partitions: &std::collections::BTreeSet<u32>,
        _budget: usize,
    ) -> Result<SweepStep, StoreError> {
        Ok(SweepStep {
            unlisted: 0,
            pass_over: true,
        })
    }

    async fn release_lease(&self, fence: Fence, owner: &str) -> Result<(), StoreError> {
        let (mut inner, now) = self.lock()?;
        if let Some(p) = inner.partitions.get_mut(&fence.partition) {
            let held = p.lease_is_held(now);
            if held
                && p.lease
                    .as_ref()
                    .is_some_and(|l| l.owner == owner && l.token == fence.token)
            {
                p.lease = None;
            }
        }
        Ok(())
    }
}

// ---- Shared with the Redis adapter -------------------------------------------------------

/// Rejects a commit that breaks the port's shape rules (a caller bug, reported as
/// `Backend`): the new version must be `expected_version + 1`, the execution must belong to
/// the fenced partition, and every timer must belong to the execution and the partition.
pub(crate) fn check_commit(c: &Commit) -> Result<(), StoreError> {
    let arn = &c.execution.execution_arn;
    let invalid = |why: String| {
        Err(StoreError::Backend(format!(
            "invalid commit of {arn}: {why}"
        )))
    };
    if c.expected_version.checked_add(1) != Some(c.execution.version) {
        return invalid(format!(
            "record version {} is not expected_version {} + 1",
            c.execution.version, c.expected_version
        ));
    }
    if c.execution.partition != c.fence.partition {
        return invalid(format!(
            "execution is in partition {} but the fence is for partition {}",
            c.execution.partition, c.fence.partition
        ));
    }
    if c.execution.version > super::store::MAX_VERSION {
        return invalid(format!(
            "version {} exceeds {}",
            c.execution.version,
            super::store::MAX_VERSION
        ));
    }
    if c.outbox.len() as u64 >= super::store::OUTBOX_SEQ_STRIDE {
        return invalid(format!(
            "{} outbox messages in one commit (at most {})",
            c.outbox.len(),
            super::store::OUTBOX_SEQ_STRIDE - 1
        ));
    }
    for t in c.timers_add.iter().chain(&c.timers_remove) {
        if &t.execution_arn != arn || t.partition != c.fence.partition {
            return invalid(format!(
                "timer {} of {} in partition {} does not belong to this execution",
                t.timer, t.execution_arn, t.partition
            ));
        }
    }
    Ok(())
}

/// The key that orders executions newest first (ties by ARN) and serves as page token:
/// 16 hex digits of the inverted, order-preserving start time, `|`, the ARN.
pub(crate) fn execution_order_key(start_ms: i64, execution_arn: &str) -> String {
    let ordered = (start_ms as u64) ^ (1u64 << 63);
    format!("{:016x}|{execution_arn}", !ordered)
}

/// The execution ARN an [`execution_order_key`] names (`None`: not such a key).
pub(crate) fn order_key_arn(key: &str) -> Option<&str> {
    key.split_once('|').map(|(_, arn)| arn)
}

/// A timer's identity within its partition: `<execution arn>|<timer id>`.
pub(crate) fn timer_member(execution_arn: &str, timer: u64) -> String {
    format!("{execution_arn}|{timer}")
}

#[cfg(test)]
mod tests {
    use super::execution_order_key;

    #[test]
    fn order_keys_sort_newest_first() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<String> = times
            .iter()
            .map(|t| execution_order_key(*t, "arn"))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(keys, sorted);
    }
}
