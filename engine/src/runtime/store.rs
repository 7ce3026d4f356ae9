//! The `Store` port: where state machines, activities and executions live.
//!
//! One [`Commit`] per interpreter step writes the execution record (with its serialized
//! snapshot), the new history events, the journal entries, timer changes and the outbox in one
//! atomic operation guarded by the expected version *and* the partition's fencing token, so a
//! stale owner's commit fails. An execution lives in its partition ([`partition_of`] its ARN):
//! the Redis adapter keeps all of a partition — its executions, timers, outbox, fence, lease
//! and list indexes — under one hash tag (`{p<n>}`), so every commit touches one Redis Cluster
//! slot (see `store_redis` for the layout). Finished executions expire after the store's
//! retention. Adapters: [`memory`](super::store_memory) and [`redis`](super::store_redis); one
//! contract suite runs against both.

use crate::asl::StateMachineType;
use crate::history::HistoryEvent;
use crate::interp::{ExecutionStatus, JournalEntry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use stepline_worker::protocol::TaskMessage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMachineRecord {
    pub arn: String,
    pub name: String,
    /// The definition as the user sent it (text, so it round-trips byte for byte).
    pub definition: String,
    pub machine_type: StateMachineType,
    pub role_arn: String,
    pub created_ms: i64,
    /// Changes on every update; executions record the revision they started with.
    pub revision_id: String,
    /// When the definition or role last changed.
    #[serde(default)]
    pub updated_ms: Option<i64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub arn: String,
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An execution's summary plus its interpreter snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub execution_arn: String,
    pub state_machine_arn: String,
    /// The definition revision this execution runs.
    pub revision_id: String,
    pub name: String,
    pub partition: u32,
    pub status: ExecutionStatus,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Incremented by every commit; 1 after creation.
    pub version: u64,
    /// `serde_json` of [`crate::interp::Execution`].
    pub snapshot: Snapshot,
}

/// An execution's interpreter state as the JSON text it is stored as: serialized once per
/// step (straight into the record's text, with no `Value` tree in between) and parsed only
/// when the execution is read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Snapshot(Box<serde_json::value::RawValue>);

impl Snapshot {
    /// The snapshot of `state`.
    pub fn of<T: Serialize + ?Sized>(state: &T) -> Result<Snapshot, serde_json::Error> {
        serde_json::value::to_raw_value(state).map(Snapshot)
    }

    /// The state it holds.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// What an execution's snapshot says about its redrives, read without building the rest
    /// (listing executions asks this of every one); nothing for a snapshot that is not one.
    pub fn redrives(&self) -> Redrives {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Info {
            redrive_count: u32,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct State {
            info: Info,
            redrive_ms: Option<i64>,
        }
        let state: State = self.parse().unwrap_or_default();
        Redrives {
            count: state.info.redrive_count,
            last_ms: state.redrive_ms,
        }
    }
}

/// See [`Snapshot::redrives`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Redrives {
    /// How many times the execution was redriven.
    pub count: u32,
    /// When it was last redriven (epoch ms).
    pub last_ms: Option<i64>,
}

impl Default for Snapshot {
    /// `null`: a record whose state is kept elsewhere (in memory, or not written yet).
    fn default() -> Snapshot {
        Snapshot::of(&Value::Null).unwrap_or_else(|_| unreachable!("null serializes"))
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.as_str() == other.as_str()
    }
}

impl From<Value> for Snapshot {
    fn from(value: Value) -> Snapshot {
        Snapshot::of(&value).unwrap_or_default()
    }
}

/// A timer the runtime must deliver as `Input::TimerFired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry {
    pub partition: u32,
    pub execution_arn: String,
    pub timer: u64,
    pub fire_at_ms: i64,
}

/// A message to publish once its commit has succeeded.
// Outbox messages are short-lived and mostly `Task`s; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutboxMessage {
    /// Publish a task to the durable queue of `queue` (the activity / resource).
    Task { queue: String, message: TaskMessage },
    /// Tell workers the engine gave up on a task (timeout, stop, sibling failure).
    Cancel { task_token: String },
}

/// Outbox sequence numbers leave room for this many messages per commit.
pub const OUTBOX_SEQ_STRIDE: u64 = 1 << 20;

/// Highest execution version a commit may write: sequence numbers stay exact in Redis's
/// double-precision scores (below 2^53).
pub const MAX_VERSION: u64 = (1 << 33) - 1;

/// The sequence number of the `index`-th outbox message of the commit that writes `version`:
/// increasing per execution, and known to the committer without reading the store, so a
/// coordinator can publish from memory and ack by sequence number.
pub fn outbox_seq(version: u64, index: usize) -> u64 {
    version * OUTBOX_SEQ_STRIDE + index as u64 + 1
}

/// One pending outbox message of one execution; `seq` is [`outbox_seq`] of its commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub execution_arn: String,
    pub seq: u64,
    pub message: OutboxMessage,
}

/// Proof of partition ownership: commits carry it and fail once a newer owner exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub partition: u32,
    pub token: u64,
}

/// Everything one interpreter step changes, written atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub fence: Fence,
    /// 0 creates the execution (fails with `AlreadyExists` if it exists).
    pub expected_version: u64,
    /// The new record; its `version` must be `expected_version + 1`.
    pub execution: ExecutionRecord,
    pub events: Vec<HistoryEvent>,
    pub journal: Vec<JournalEntry>,
    pub outbox: Vec<OutboxMessage>,
    pub timers_add: Vec<TimerEntry>,
    /// Timers to drop (fired or cancelled).
    pub timers_remove: Vec<TimerEntry>,
    /// This execution's outbox entries up to this sequence number were published (their
    /// confirmations arrived): the commit removes them, as [`Store::ack_outbox`] would, before
    /// adding its own.
    pub outbox_ack: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict: expected {expected}, found {found}")]
    VersionConflict { expected: u64, found: u64 },
    #[error("partition {partition} is owned by a newer fencing token")]
    Fenced { partition: u32 },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("store backend: {0}")]
    Backend(String),
}

/// A page of results plus the token for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// The storage port. Every method is atomic on its own; [`Store::commit`] is atomic across
/// everything it writes.
pub trait Store: Send + Sync + 'static {
    /// Where a sweeper's [`Store::sweep_indexes`] stands between steps.
    type SweepCursor: Default + Send + 'static;

    // State machines and activities.
    fn create_state_machine(
        &self,
        sm: StateMachineRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn update_state_machine(
        &self,
        sm: StateMachineRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get_state_machine(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<StateMachineRecord>, StoreError>> + Send;
    /// Definitions of every revision stay readable while executions use them.
    fn get_state_machine_revision(
        &self,
        arn: &str,
        revision_id: &str,
    ) -> impl Future<Output = Result<Option<StateMachineRecord>, StoreError>> + Send;
    fn list_state_machines(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<StateMachineRecord>, StoreError>> + Send;
    fn delete_state_machine(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn create_activity(
        &self,
        a: ActivityRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get_activity(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<ActivityRecord>, StoreError>> + Send;
    fn list_activities(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<ActivityRecord>, StoreError>> + Send;
    fn delete_activity(&self, arn: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces an existing activity's record (tags); `NotFound` if it does not exist.
    fn update_activity(
        &self,
        a: ActivityRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // Executions.
    fn commit(&self, c: Commit) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Commits of one partition, each applied as [`Store::commit`] would, one after another
    /// in order: each atomic and independent of the others (one failing stops none), with
    /// one result per commit. A backend sends them together (the coordinator's group
    /// commit: one round trip for a partition's waiting inputs).
    fn commit_all(
        &self,
        commits: Vec<Commit>,
    ) -> impl Future<Output = Vec<Result<(), StoreError>>> + Send;
    fn get_execution(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>, StoreError>> + Send;
    /// Newest first; `status` filters when given.
    fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<ExecutionRecord>, StoreError>> + Send;
    /// Events with `id > after_id`, oldest first, at most `limit`.
    fn history(
        &self,
        arn: &str,
        after_id: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<HistoryEvent>, StoreError>> + Send;
    fn journal(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Vec<JournalEntry>, StoreError>> + Send;

    // Outbox and timers of a partition.
    fn pending_outbox(
        &self,
        partition: u32,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;
    /// Removes the execution's outbox entries with `seq <= up_to`.
    fn ack_outbox(
        &self,
        partition: u32,
        execution_arn: &str,
        up_to: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Timers with `fire_at_ms <= now_ms`, earliest first.
    fn due_timers(
        &self,
        partition: u32,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TimerEntry>, StoreError>> + Send;
    /// The earliest timer of the partition, if any (to know how long to sleep).
    fn next_timer(
        &self,
        partition: u32,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    // Partition leases with fencing tokens.
    /// Takes the lease if it is free or expired; returns a token larger than any before.
    fn acquire_lease(
        &self,
        partition: u32,
        owner: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<Fence>, StoreError>> + Send;
    /// Extends a held lease; `false` if it was lost.
    fn renew_lease(
        &self,
        fence: Fence,
        owner: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn release_lease(
        &self,
        fence: Fence,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records `route` (a coordinator's reply inbox) as where `partition`'s worker replies are
    /// routed, and returns the route recorded for it before and whether another partition
    /// still records that one: its new owner unbinds a dead owner's inbox, and deletes it
    /// once no partition routes there.
    fn swap_reply_route(
        &self,
        partition: u32,
        route: &str,
    ) -> impl Future<Output = Result<RouteSwap, StoreError>> + Send;

    // Membership, so coordinators can share partitions fairly.
    /// Records that `owner` is alive for `ttl_ms`, and returns how many members are alive
    /// (including `owner`).
    fn heartbeat_member(
        &self,
        owner: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    // Housekeeping.
    /// One bounded step (about `budget` index entries looked at) of the sweep that drops the
    /// list-index entries of executions that have expired, in `partitions`; resumes where the
    /// previous step left `cursor` (the caller's: each sweeper has its own), and the step after
    /// the one that ended a full pass starts another. Reports how many executions it unlisted
    /// and whether the pass is over (so the caller can rest between passes). After an error
    /// the cursor starts over. A store that unlists an execution when it expires has nothing
    /// to do: every step is a whole pass. Without it, the indexes of a state machine nobody
    /// lists would grow for ever.
    fn sweep_indexes(
        &self,
        cursor: &mut Self::SweepCursor,
        partitions: &std::collections::BTreeSet<u32>,
        budget: usize,
    ) -> impl Future<Output = Result<SweepStep, StoreError>> + Send;
}

/// What one step of [`Store::sweep_indexes`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStep {
    /// Executions it unlisted.
    pub unlisted: usize,
    /// It finished a pass over every index of the partitions: the next step starts another.
    pub pass_over: bool,
}

/// What [`Store::swap_reply_route`] replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSwap {
    /// The route recorded for the partition before (`None`: none was).
    pub previous: Option<String>,
    /// Whether another partition still records `previous`.
    pub previous_in_use: bool,
}

/// The partition of an execution: a stable hash of its ARN.
pub fn partition_of(execution_arn: &str, partitions: u32) -> u32 {
    (crate::runner::seed_from(execution_arn) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Execution;
    use crate::runner::RunIdentity;
    use serde_json::json;

    #[test]
    fn redrives_are_read_from_an_executions_snapshot() {
        let identity = RunIdentity::default();
        let mut exec = Execution::new(identity.info(json!({}), 1_000, 7));
        assert_eq!(Snapshot::of(&exec).unwrap().redrives(), Redrives::default());
        exec.info.redrive_count = 2;
        exec.redrive_ms = Some(5_000);
        assert_eq!(
            Snapshot::of(&exec).unwrap().redrives(),
            Redrives {
                count: 2,
                last_ms: Some(5_000)
            }
        );
        // Not an execution's snapshot (a record whose state is kept elsewhere): none.
        assert_eq!(Snapshot::default().redrives(), Redrives::default());
    }
}
