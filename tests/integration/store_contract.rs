//! The `Store` contract: one suite of async checks, generic over `S: Store`, run against both
//! adapters so the embedded mode and the production mode cannot drift (STYLE.md #5).
//!
//! * `store_contract::on_memory::*` — [`MemoryStore`] on a manual clock (time passes only
//!   when a test says so).
//! * `store_contract::on_redis::*` and `store_contract::redis_only::*` — **need a real Redis**
//!   at `redis://127.0.0.1:6379` (or `STEPLINE_REDIS_URL`). They fail with a clear message
//!   when it is unreachable; they are never skipped. Each test works under its own key prefix
//!   and deletes its keys afterwards, even when it fails. Waiting on Redis's own clock (lease
//!   and retention expiry) is a bounded poll, not a blind sleep.
//! * Redis Cluster readiness: every Redis test records the keys of each request the store
//!   sends (script calls, commands, pipelines, `MULTI`) and fails unless each request's keys
//!   hash to one cluster slot ([`single_slot_violations`], with its own CRC16 key-slot
//!   function), so the whole contract run proves the key layout is cluster-safe.
//!
//! Not covered here: how the coordinator uses the store (that is the runtime's tests' job).

use futures_util::FutureExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::asl::StateMachineType;
use stepline_engine::history::{EventKind, HistoryEvent};
use stepline_engine::interp::{ExecutionStatus, Input, JournalEntry};
use stepline_engine::runtime::store::{
    outbox_seq, partition_of, ActivityRecord, Commit, ExecutionRecord, Fence, OutboxEntry,
    OutboxMessage, RouteSwap, StateMachineRecord, Store, StoreError, TimerEntry,
};
use stepline_engine::runtime::store_memory::MemoryStore;
use stepline_engine::runtime::store_redis::{KeySet, RedisStore};
use stepline_worker::protocol::{TaskMessage, PROTOCOL_VERSION};

/// Retention for tests that do not wait for expiry.
const LONG: Duration = Duration::from_secs(3600);
/// Retention for the expiry tests: long enough to see the data first, short enough to wait.
const SHORT: Duration = Duration::from_secs(1);
/// The manual clock's start.
const T0: i64 = 1_700_000_000_000;
/// How many partitions the stores hash executions into (the Redis store keeps an execution in
/// the partition its ARN hashes to; fixtures pick names that land where a test wants them).
const PARTITIONS: u32 = 16;

// ---- Harness ----------------------------------------------------------------------------

/// How a test lets time pass: the memory store's clock moves at once; Redis's is real.
#[derive(Clone)]
enum Time {
    Manual(Arc<AtomicI64>),
    Real,
}

impl Time {
    async fn pass(&self, ms: u64) {
        match self {
            Time::Manual(clock) => {
                clock.fetch_add(ms as i64, Ordering::SeqCst);
            }
            Time::Real => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
}

#[derive(Clone)]
struct Ctx<S> {
    store: S,
    time: Time,
}

async fn run_memory<F, Fut>(retention: Duration, case: F)
where
    F: FnOnce(Ctx<MemoryStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let clock = Arc::new(AtomicI64::new(T0));
    let reader = clock.clone();
    let store = MemoryStore::new(retention, Arc::new(move || reader.load(Ordering::SeqCst)));
    case(Ctx {
        store,
        time: Time::Manual(clock),
    })
    .await;
}

fn redis_url() -> String {
    std::env::var("STEPLINE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn connect_redis(name: &str, retention: Duration) -> RedisStore {
    let url = redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("stepline-test:{}:{nanos}:{name}:", std::process::id());
    match RedisStore::connect(&url, &prefix, retention).await {
        Ok(store) => store.with_partitions(PARTITIONS).recording_key_sets(),
        Err(e) => panic!(
            "the Redis store contract tests need a running Redis, and none answers ({e}). \
             Start one (`redis-server --daemonize yes`) or point STEPLINE_REDIS_URL at one; \
             these tests are never skipped."
        ),
    }
}

/// Runs `case` on a fresh key prefix, then deletes the prefix's keys whatever happened.
async fn run_redis<F, Fut>(name: &str, retention: Duration, case: F)
where
    F: FnOnce(Ctx<RedisStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = connect_redis(name, retention).await;
    let outcome = tokio::spawn(case(Ctx {
        store: store.clone(),
        time: Time::Real,
    }))
    .await;
    let purged = store.purge_namespace().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
    if let Err(e) = purged {
        panic!("could not delete the test's Redis keys: {e}");
    }
    assert_single_slot(&store.recorded_key_sets());
}

// ---- Redis Cluster hash slots -------------------------------------------------------------

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of a key: only its hash tag counts — the text between the first `{` and
/// the next `}` — when that text is not empty.
fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16(hashed) % 16384
}

/// The requests whose keys span more than one slot (Redis Cluster would refuse them with
/// `CROSSSLOT`) or whose keys the recorder could not tell.
fn single_slot_violations(sets: &[KeySet]) -> Vec<String> {
    sets.iter()
        .filter_map(|set| {
            if !set.known {
                return Some(format!("{}: key positions unknown", set.request));
            }
            let slots: BTreeSet<u16> = set.keys.iter().map(|k| key_slot(k)).collect();
            (slots.len() > 1)
                .then(|| format!("{} spans slots {slots:?}: {:?}", set.request, set.keys))
        })
        .collect()
}

/// Every recorded request stayed in one slot, and there were multi-key requests to check.
pub(crate) fn assert_single_slot(sets: &[KeySet]) {
    let violations = single_slot_violations(sets);
    assert!(
        violations.is_empty(),
        "{} of {} Redis requests would fail on Redis Cluster; the first:\n{}",
        violations.len(),
        sets.len(),
        violations[..violations.len().min(3)].join("\n")
    );
    assert!(
        sets.iter().any(|s| s.keys.len() > 1),
        "no multi-key request was recorded, so nothing was checked: {sets:?}"
    );
}

macro_rules! contract {
    ($($case:ident: $retention:expr),* $(,)?) => {
        mod on_memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    run_memory($retention, super::$case).await
                }
            )*
        }
        mod on_redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    run_redis(stringify!($case), $retention, super::$case).await
                }
            )*
        }
    };
}

contract! {
    state_machines_and_revisions: LONG,
    activities: LONG,
    create_execution: LONG,
    wrong_version_writes_nothing: LONG,
    stale_fence_writes_nothing: LONG,
    concurrent_commits_one_wins: LONG,
    history_pages_and_journal: LONG,
    list_executions_newest_first: LONG,
    outbox_pending_and_ack: LONG,
    commits_ack_published_outbox: LONG,
    commit_all_applies_each_on_its_own_in_order: LONG,
    timers_due_next_and_removal: LONG,
    leases: LONG,
    finished_executions_expire: SHORT,
}

// ---- Fixtures ---------------------------------------------------------------------------

const ACCOUNT: &str = "us-east-1:111111111111";

fn sm_arn(name: &str) -> String {
    format!("arn:aws:states:{ACCOUNT}:stateMachine:{name}")
}

fn state_machine(name: &str, revision: &str) -> StateMachineRecord {
    StateMachineRecord {
        arn: sm_arn(name),
        name: name.to_string(),
        definition: format!(
            r#"{{"Comment":"{revision}","StartAt":"P","States":{{"P":{{"Type":"Pass","End":true}}}}}}"#
        ),
        machine_type: StateMachineType::Standard,
        role_arn: "arn:aws:iam::111111111111:role/stepline".to_string(),
        created_ms: T0,
        updated_ms: None,
        revision_id: revision.to_string(),
        tags: BTreeMap::from([("team".to_string(), "core".to_string())]),
    }
}

fn activity(name: &str) -> ActivityRecord {
    ActivityRecord {
        arn: format!("arn:aws:states:{ACCOUNT}:activity:{name}"),
        name: name.to_string(),
        created_ms: T0,
        tags: BTreeMap::new(),
    }
}

fn exec_arn(machine: &str, name: &str) -> String {
    format!("arn:aws:states:{ACCOUNT}:execution:{machine}:{name}")
}

/// `base`, or `base-<k>` with the smallest `k`, whichever execution of `machine` hashes to
/// `partition`.
fn name_in(machine: &str, base: &str, partition: u32) -> String {
    assert!(partition < PARTITIONS, "partition {partition} out of range");
    std::iter::once(base.to_string())
        .chain((1..).map(|k| format!("{base}-{k}")))
        .find(|name| partition_of(&exec_arn(machine, name), PARTITIONS) == partition)
        .expect("some name hashes to every partition")
}

/// A new RUNNING execution record (version 1, as a creating commit writes it) named after
/// `base` (see [`name_in`]) in `partition`.
fn execution(machine: &str, base: &str, partition: u32, start_ms: i64) -> ExecutionRecord {
    let name = name_in(machine, base, partition);
    ExecutionRecord {
        execution_arn: exec_arn(machine, &name),
        state_machine_arn: sm_arn(machine),
        revision_id: "r1".to_string(),
        name: name.clone(),
        partition,
        status: ExecutionStatus::Running,
        start_ms,
        stop_ms: None,
        input: json!({"name": name, "n": [1, 2.5, "x"]}),
        output: None,
        error: None,
        cause: None,
        version: 1,
        snapshot: json!({"frames": [{"state": "P"}], "seed": 42}).into(),
    }
}

fn event(id: u64) -> HistoryEvent {
    let kind = if id == 1 {
        EventKind::ExecutionStarted {
            input: Arc::new(json!({"start": true})),
            role_arn: "arn:aws:iam::111111111111:role/stepline".to_string(),
        }
    } else {
        EventKind::StateEntered {
            state_type: "Pass".into(),
            name: format!("S{id}").into(),
            input: Arc::new(json!({"id": id})),
        }
    };
    HistoryEvent {
        id,
        previous_event_id: id - 1,
        timestamp_ms: T0 + id as i64,
        kind,
    }
}

fn events(ids: std::ops::RangeInclusive<u64>) -> Vec<HistoryEvent> {
    ids.map(event).collect()
}

fn journal_entry(n: u64) -> JournalEntry {
    JournalEntry {
        now_ms: T0 + n as i64,
        input: if n == 0 {
            Input::Start
        } else {
            Input::TimerFired { timer: n }
        },
        activities: Some(BTreeSet::from([activity("a").arn])),
    }
}

fn task_message(arn: &str, n: u32) -> OutboxMessage {
    OutboxMessage::Task {
        queue: "stepline.task.worker".to_string(),
        message: TaskMessage {
            version: PROTOCOL_VERSION,
            task_token: format!("token-{n}"),
            resource: activity("a").arn,
            execution_arn: arn.to_string(),
            state_name: "Work".to_string(),
            input: json!({"n": n}),
            attempt: n,
            timeout_seconds: Some(30),
            heartbeat_seconds: None,
            deadline_ms: Some(T0 + 30_000),
            reply_to: "stepline.partition.3".to_string(),
            reply_exchange: None,
        },
    }
}

fn cancel_message(n: u32) -> OutboxMessage {
    OutboxMessage::Cancel {
        task_token: format!("cancel-{n}"),
    }
}

fn timer(rec: &ExecutionRecord, timer: u64, fire_at_ms: i64) -> TimerEntry {
    TimerEntry {
        partition: rec.partition,
        execution_arn: rec.execution_arn.clone(),
        timer,
        fire_at_ms,
    }
}

/// The commit that creates `rec` (which must be at version 1).
fn creating(fence: Fence, rec: &ExecutionRecord) -> Commit {
    Commit {
        fence,
        expected_version: 0,
        execution: rec.clone(),
        events: Vec::new(),
        journal: Vec::new(),
        outbox: Vec::new(),
        timers_add: Vec::new(),
        timers_remove: Vec::new(),
        outbox_ack: None,
    }
}

/// The commit that follows `rec` (the record as last written): version + 1.
fn following(fence: Fence, rec: &ExecutionRecord) -> Commit {
    let mut next = rec.clone();
    next.version += 1;
    Commit {
        expected_version: rec.version,
        ..creating(fence, &next)
    }
}

fn finish(c: &mut Commit, status: ExecutionStatus) {
    c.execution.status = status;
    c.execution.stop_ms = Some(T0 + 1_000);
    c.execution.output = Some(json!({"done": true}));
}

async fn lease<S: Store>(store: &S, partition: u32, owner: &str) -> Fence {
    store
        .acquire_lease(partition, owner, 60_000)
        .await
        .expect("acquire_lease")
        .expect("a free partition can be leased")
}

/// Everything a commit of `arn` in `partition` could change.
#[derive(Debug, PartialEq)]
struct Observed {
    record: Option<ExecutionRecord>,
    history: Vec<HistoryEvent>,
    journal: Vec<JournalEntry>,
    outbox: Vec<OutboxEntry>,
    timers: Vec<TimerEntry>,
    next_timer: Option<i64>,
}

async fn observe<S: Store>(store: &S, arn: &str, partition: u32) -> Observed {
    Observed {
        record: store.get_execution(arn).await.expect("get_execution"),
        history: store.history(arn, 0, 100_000).await.expect("history"),
        journal: store.journal(arn).await.expect("journal"),
        outbox: store
            .pending_outbox(partition, 100_000)
            .await
            .expect("pending_outbox"),
        timers: store
            .due_timers(partition, i64::MAX, 100_000)
            .await
            .expect("due_timers"),
        next_timer: store.next_timer(partition).await.expect("next_timer"),
    }
}

fn arns(page: &[ExecutionRecord]) -> Vec<String> {
    page.iter().map(|r| r.execution_arn.clone()).collect()
}

/// Follows `next_token` to the end, `limit` at a time.
async fn list_all<S: Store>(
    store: &S,
    machine: &str,
    status: Option<ExecutionStatus>,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    for _ in 0..1000 {
        let page = store
            .list_executions(machine, status, limit, token)
            .await
            .expect("list_executions");
        assert!(page.items.len() <= limit, "page larger than its limit");
        out.extend(arns(&page.items));
        match page.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
    panic!("list_executions never ended");
}

// ---- The contract -----------------------------------------------------------------------

async fn state_machines_and_revisions<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let (a1, b, c) = (
        state_machine("a", "r1"),
        state_machine("b", "r1"),
        state_machine("c", "r1"),
    );
    assert_eq!(s.get_state_machine(&a1.arn).await, Ok(None));
    for sm in [&c, &a1, &b] {
        s.create_state_machine(sm.clone()).await.expect("create");
    }
    assert_eq!(s.get_state_machine(&a1.arn).await, Ok(Some(a1.clone())));

    let mut again = a1.clone();
    again.definition = "{}".to_string();
    assert_eq!(
        s.create_state_machine(again).await,
        Err(StoreError::AlreadyExists(a1.arn.clone()))
    );
    assert_eq!(s.get_state_machine(&a1.arn).await, Ok(Some(a1.clone())));

    // Updates keep every revision readable.
    let a2 = state_machine("a", "r2");
    s.update_state_machine(a2.clone()).await.expect("update");
    assert_eq!(s.get_state_machine(&a1.arn).await, Ok(Some(a2.clone())));
    assert_eq!(
        s.get_state_machine_revision(&a1.arn, "r1").await,
        Ok(Some(a1.clone()))
    );
    assert_eq!(
        s.get_state_machine_revision(&a1.arn, "r2").await,
        Ok(Some(a2.clone()))
    );
    assert_eq!(s.get_state_machine_revision(&a1.arn, "r9").await, Ok(None));
    let missing = state_machine("zz", "r1");
    assert_eq!(
        s.update_state_machine(missing.clone()).await,
        Err(StoreError::NotFound(missing.arn.clone()))
    );

    // Pages in ARN order; a limit of 0 counts as 1.
    let page = s.list_state_machines(2, None).await.expect("list");
    assert_eq!(page.items, vec![a2.clone(), b.clone()]);
    let token = page.next_token.expect("a second page");
    let page = s.list_state_machines(2, Some(token)).await.expect("list");
    assert_eq!(page.items, vec![c.clone()]);
    assert_eq!(page.next_token, None);
    let page = s.list_state_machines(0, None).await.expect("list");
    assert_eq!(page.items, vec![a2.clone()]);
    assert!(page.next_token.is_some());

    // Deleting unlists; the revisions stay readable for running executions.
    s.delete_state_machine(&b.arn).await.expect("delete");
    assert_eq!(s.get_state_machine(&b.arn).await, Ok(None));
    assert_eq!(
        s.get_state_machine_revision(&b.arn, "r1").await,
        Ok(Some(b.clone()))
    );
    assert_eq!(
        s.delete_state_machine(&b.arn).await,
        Err(StoreError::NotFound(b.arn.clone()))
    );
    let page = s.list_state_machines(10, None).await.expect("list");
    assert_eq!(page.items, vec![a2, c]);
    s.create_state_machine(b.clone()).await.expect("re-create");
    assert_eq!(s.get_state_machine(&b.arn).await, Ok(Some(b)));
}

async fn activities<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let (x, y, z) = (activity("x"), activity("y"), activity("z"));
    for a in [&z, &x, &y] {
        s.create_activity(a.clone()).await.expect("create");
    }
    assert_eq!(
        s.create_activity(x.clone()).await,
        Err(StoreError::AlreadyExists(x.arn.clone()))
    );
    assert_eq!(s.get_activity(&y.arn).await, Ok(Some(y.clone())));
    assert_eq!(s.get_activity("arn:nope").await, Ok(None));

    let page = s.list_activities(2, None).await.expect("list");
    assert_eq!(page.items, vec![x.clone(), y.clone()]);
    let page = s
        .list_activities(2, page.next_token)
        .await
        .expect("list page 2");
    assert_eq!(page.items, vec![z.clone()]);
    assert_eq!(page.next_token, None);

    s.delete_activity(&y.arn).await.expect("delete");
    assert_eq!(s.get_activity(&y.arn).await, Ok(None));
    assert_eq!(
        s.delete_activity(&y.arn).await,
        Err(StoreError::NotFound(y.arn.clone()))
    );
    let page = s.list_activities(10, None).await.expect("list");
    assert_eq!(page.items, vec![x.clone(), z]);

    let mut tagged = x.clone();
    tagged.tags.insert("team".into(), "payments".into());
    s.update_activity(tagged.clone()).await.expect("update");
    assert_eq!(s.get_activity(&x.arn).await, Ok(Some(tagged)));
    assert_eq!(
        s.update_activity(y.clone()).await,
        Err(StoreError::NotFound(y.arn.clone()))
    );
    assert_eq!(s.get_activity(&y.arn).await, Ok(None));
}

async fn create_execution<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 3, "a").await;
    let rec = execution("m", "e1", 3, T0);
    let arn = rec.execution_arn.clone();
    let mut c = creating(fence, &rec);
    c.events = events(1..=3);
    c.journal = vec![journal_entry(0)];
    c.outbox = vec![task_message(&arn, 1)];
    c.timers_add = vec![timer(&rec, 1, T0 + 500)];
    s.commit(c).await.expect("create");

    let created = observe(s, &arn, 3).await;
    assert_eq!(
        created,
        Observed {
            record: Some(rec.clone()),
            history: events(1..=3),
            journal: vec![journal_entry(0)],
            outbox: vec![OutboxEntry {
                execution_arn: arn.clone(),
                seq: outbox_seq(1, 0),
                message: task_message(&arn, 1),
            }],
            timers: vec![timer(&rec, 1, T0 + 500)],
            next_timer: Some(T0 + 500),
        }
    );

    // Creating again fails and writes nothing.
    let mut twin = execution("m", "e1", 3, T0 + 7);
    twin.input = json!("other");
    let mut c = creating(fence, &twin);
    c.events = events(1..=1);
    c.outbox = vec![cancel_message(9)];
    c.timers_add = vec![timer(&twin, 2, T0)];
    assert_eq!(
        s.commit(c).await,
        Err(StoreError::AlreadyExists(arn.clone()))
    );
    assert_eq!(observe(s, &arn, 3).await, created);

    // Commits to an execution that does not exist.
    let ghost = execution("m", "ghost", 3, T0);
    assert_eq!(
        s.commit(following(fence, &ghost)).await,
        Err(StoreError::NotFound(ghost.execution_arn.clone()))
    );
    assert_eq!(s.get_execution(&ghost.execution_arn).await, Ok(None));

    // Malformed commits are caller bugs, refused before anything is written.
    let mut skip = following(fence, &rec);
    skip.execution.version += 1;
    assert!(matches!(s.commit(skip).await, Err(StoreError::Backend(_))));
    let mut elsewhere = following(fence, &rec);
    elsewhere.execution.partition = 4;
    assert!(matches!(
        s.commit(elsewhere).await,
        Err(StoreError::Backend(_))
    ));
    let mut foreign_timer = following(fence, &rec);
    foreign_timer.timers_add = vec![timer(&ghost, 1, T0)];
    assert!(matches!(
        s.commit(foreign_timer).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(observe(s, &arn, 3).await, created);
}

async fn wrong_version_writes_nothing<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 5, "a").await;
    let rec = execution("m", "e1", 5, T0);
    let arn = rec.execution_arn.clone();
    let mut c = creating(fence, &rec);
    c.events = events(1..=2);
    c.timers_add = vec![timer(&rec, 1, T0 + 100)];
    s.commit(c).await.expect("create");

    let mut c = following(fence, &rec);
    c.events = events(3..=4);
    c.journal = vec![journal_entry(1)];
    c.outbox = vec![cancel_message(1)];
    let v2 = c.execution.clone();
    s.commit(c).await.expect("commit v2");
    let before = observe(s, &arn, 5).await;
    assert_eq!(before.record, Some(v2.clone()));

    // A second writer that also read version 1.
    let mut stale = following(fence, &rec);
    stale.execution.snapshot = json!("stale").into();
    stale.events = events(3..=3);
    stale.journal = vec![journal_entry(7)];
    stale.outbox = vec![task_message(&arn, 7)];
    stale.timers_add = vec![timer(&rec, 7, T0 + 1)];
    stale.timers_remove = vec![timer(&rec, 1, 0)];
    assert_eq!(
        s.commit(stale).await,
        Err(StoreError::VersionConflict {
            expected: 1,
            found: 2
        })
    );
    // One from the future.
    let mut ahead = following(fence, &v2);
    ahead.expected_version = 5;
    ahead.execution.version = 6;
    assert_eq!(
        s.commit(ahead).await,
        Err(StoreError::VersionConflict {
            expected: 5,
            found: 2
        })
    );
    assert_eq!(observe(s, &arn, 5).await, before);

    // The right version still goes through.
    let mut c = following(fence, &v2);
    c.events = events(5..=5);
    s.commit(c).await.expect("commit v3");
    let after = observe(s, &arn, 5).await;
    assert_eq!(after.record.map(|r| r.version), Some(3));
    assert_eq!(after.history, events(1..=5));
}

/// A group commit: each commit lands or fails on its own, in order (a later commit may build
/// on an earlier one of the same batch), and a long history goes in whole.
async fn commit_all_applies_each_on_its_own_in_order<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    assert_eq!(s.commit_all(Vec::new()).await, Vec::new());
    let fence = lease(s, 3, "a").await;
    let x = execution("m", "x", 3, T0);
    let y = execution("m", "y", 3, T0 + 1);
    let z = execution("m", "z", 3, T0 + 2);
    let w = execution("m", "w", 3, T0 + 3);
    let mut create_x = creating(fence, &x);
    create_x.events = events(1..=2);
    let mut next_x = following(fence, &x);
    next_x.events = events(3..=3);
    next_x.journal = vec![journal_entry(1)];
    let mut stale_y = following(fence, &y);
    stale_y.expected_version = 5;
    stale_y.execution.version = 6;
    let mut create_z = creating(fence, &z);
    create_z.events = events(1..=2500);
    let fenced_w = creating(
        Fence {
            token: fence.token + 1,
            ..fence
        },
        &w,
    );
    let results = s
        .commit_all(vec![
            create_x,
            creating(fence, &y),
            next_x,
            stale_y,
            fenced_w,
            create_z,
        ])
        .await;
    assert_eq!(
        results,
        vec![
            Ok(()),
            Ok(()),
            Ok(()),
            Err(StoreError::VersionConflict {
                expected: 5,
                found: 1
            }),
            Err(StoreError::Fenced { partition: 3 }),
            Ok(()),
        ]
    );
    let seen_x = observe(s, &x.execution_arn, 3).await;
    assert_eq!(seen_x.record.map(|r| r.version), Some(2));
    assert_eq!(seen_x.history, events(1..=3));
    assert_eq!(seen_x.journal, vec![journal_entry(1)]);
    assert_eq!(
        s.get_execution(&y.execution_arn).await.expect("get y"),
        Some(y.clone())
    );
    assert_eq!(s.get_execution(&w.execution_arn).await, Ok(None));
    assert_eq!(
        s.history(&z.execution_arn, 0, 100_000)
            .await
            .expect("history"),
        events(1..=2500)
    );
}

async fn stale_fence_writes_nothing<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let old = lease(s, 2, "old-owner").await;
    let rec = execution("m", "e1", 2, T0);
    let arn = rec.execution_arn.clone();
    let mut c = creating(old, &rec);
    c.events = events(1..=1);
    s.commit(c).await.expect("create under the first lease");
    let mut c = following(old, &rec);
    c.events = events(2..=2);
    let v2 = c.execution.clone();
    s.commit(c).await.expect("commit under the first lease");

    // The lease passes to a new owner (here by release; expiry is tested with leases).
    s.release_lease(old, "old-owner").await.expect("release");
    let new = lease(s, 2, "new-owner").await;
    assert!(new.token > old.token);
    let before = observe(s, &arn, 2).await;

    let mut c = following(old, &v2);
    c.events = events(3..=3);
    c.journal = vec![journal_entry(1)];
    c.outbox = vec![cancel_message(1)];
    c.timers_add = vec![timer(&rec, 1, T0)];
    assert_eq!(s.commit(c).await, Err(StoreError::Fenced { partition: 2 }));
    // A stale owner cannot create executions either.
    let other = execution("m", "e2", 2, T0);
    assert_eq!(
        s.commit(creating(old, &other)).await,
        Err(StoreError::Fenced { partition: 2 })
    );
    // Nor can a token nobody was given.
    let forged = Fence {
        partition: 2,
        token: new.token + 1,
    };
    assert_eq!(
        s.commit(following(forged, &v2)).await,
        Err(StoreError::Fenced { partition: 2 })
    );
    assert_eq!(observe(s, &arn, 2).await, before);
    assert_eq!(s.get_execution(&other.execution_arn).await, Ok(None));

    // The fence is checked before the version: a stale owner learns it is fenced.
    let mut c = following(old, &rec);
    c.events = events(3..=3);
    assert_eq!(s.commit(c).await, Err(StoreError::Fenced { partition: 2 }));

    let mut c = following(new, &v2);
    c.events = events(3..=3);
    s.commit(c).await.expect("the new owner commits");
    assert_eq!(
        s.history(&arn, 0, 100).await.expect("history"),
        events(1..=3)
    );
}

async fn concurrent_commits_one_wins<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 1, "a").await;
    let rec = execution("m", "e1", 1, T0);
    let arn = rec.execution_arn.clone();
    s.commit(creating(fence, &rec)).await.expect("create");

    let mut handles = Vec::new();
    for n in 0..8u32 {
        let store = s.clone();
        let mut c = following(fence, &rec);
        c.execution.snapshot = json!({ "writer": n }).into();
        c.events = events(1..=3);
        c.outbox = vec![cancel_message(n)];
        handles.push(tokio::spawn(async move { store.commit(c).await }));
    }
    let mut won = 0;
    for h in handles {
        match h.await.expect("commit task") {
            Ok(()) => won += 1,
            Err(StoreError::VersionConflict {
                expected: 1,
                found: 2,
            }) => {}
            Err(e) => panic!("unexpected commit error: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one of the racing commits wins");
    let after = observe(s, &arn, 1).await;
    assert_eq!(after.history, events(1..=3));
    assert_eq!(after.outbox.len(), 1);
    assert_eq!(after.record.map(|r| r.version), Some(2));
}

async fn history_pages_and_journal<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 0, "a").await;
    let rec = execution("m", "e1", 0, T0);
    let arn = rec.execution_arn.clone();
    let mut c = creating(fence, &rec);
    c.events = events(1..=4);
    c.journal = vec![journal_entry(0)];
    s.commit(c).await.expect("create");
    let mut c = following(fence, &rec);
    c.events = events(5..=10);
    c.journal = vec![journal_entry(1), journal_entry(2)];
    s.commit(c).await.expect("commit");

    let page = |after: u64, limit: usize| {
        let s = s.clone();
        let arn = arn.clone();
        async move { s.history(&arn, after, limit).await.expect("history") }
    };
    assert_eq!(page(0, 100).await, events(1..=10));
    assert_eq!(page(0, 3).await, events(1..=3));
    assert_eq!(page(3, 3).await, events(4..=6));
    assert_eq!(page(9, 5).await, events(10..=10));
    assert_eq!(page(10, 5).await, Vec::new());
    assert_eq!(page(50, 5).await, Vec::new());
    assert_eq!(page(2, 0).await, Vec::new());
    // Paging to the end with the last id seen gives every event once, in order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let p = page(after, 4).await;
        let Some(last) = p.last() else { break };
        after = last.id;
        seen.extend(p);
    }
    assert_eq!(seen, events(1..=10));

    assert_eq!(
        s.journal(&arn).await.expect("journal"),
        vec![journal_entry(0), journal_entry(1), journal_entry(2)]
    );
    let unknown = exec_arn("m", "unknown");
    assert_eq!(s.history(&unknown, 0, 10).await, Ok(Vec::new()));
    assert_eq!(s.journal(&unknown).await, Ok(Vec::new()));
}

async fn list_executions_newest_first<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    // The executions of one machine spread over partitions: a listing merges them.
    let mut fences = BTreeMap::new();
    for p in [0, 3, 7, 12] {
        fences.insert(p, lease(s, p, "a").await);
    }
    let machine = sm_arn("m");
    // (name, start offset, final status, partition); "e3a" and "e3b" start in the same
    // millisecond, in different partitions.
    let plan = [
        ("e1", 100, ExecutionStatus::Succeeded, 7),
        ("e2", 200, ExecutionStatus::Running, 3),
        ("e3b", 300, ExecutionStatus::Failed, 7),
        ("e3a", 300, ExecutionStatus::Running, 0),
        ("e4", 400, ExecutionStatus::Succeeded, 3),
        ("e5", -50, ExecutionStatus::Running, 12),
        ("e6", 500, ExecutionStatus::Aborted, 7),
    ];
    let mut records = BTreeMap::new();
    for (name, offset, status, partition) in plan {
        let fence = fences[&partition];
        let rec = execution("m", name, partition, T0 + offset);
        s.commit(creating(fence, &rec)).await.expect("create");
        if status != ExecutionStatus::Running {
            let mut c = following(fence, &rec);
            finish(&mut c, status);
            s.commit(c).await.expect("finish");
        }
        records.insert(name, rec);
    }
    let other = execution("other", "x1", 3, T0 + 1_000);
    s.commit(creating(fences[&3], &other))
        .await
        .expect("other machine");

    let names = |ns: &[&str]| {
        ns.iter()
            .map(|n| records[n].execution_arn.clone())
            .collect::<Vec<_>>()
    };
    let newest_first = names(&["e6", "e4", "e3a", "e3b", "e2", "e1", "e5"]);

    let page = s
        .list_executions(&machine, None, 100, None)
        .await
        .expect("list");
    assert_eq!(arns(&page.items), newest_first);
    assert_eq!(page.next_token, None);
    assert_eq!(page.items[0].status, ExecutionStatus::Aborted);
    assert_eq!(page.items[0].version, 2);
    for limit in [1, 2, 3, 7] {
        assert_eq!(list_all(s, &machine, None, limit).await, newest_first);
    }
    let page = s
        .list_executions(&machine, None, 0, None)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);

    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::Running), 2).await,
        names(&["e3a", "e2", "e5"])
    );
    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::Succeeded), 1).await,
        names(&["e4", "e1"])
    );
    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::TimedOut), 5).await,
        Vec::<String>::new()
    );

    // A status change moves the execution between the filtered lists.
    let mut c = following(fences[&3], &records["e2"]);
    finish(&mut c, ExecutionStatus::TimedOut);
    s.commit(c).await.expect("time out e2");
    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::Running), 2).await,
        names(&["e3a", "e5"])
    );
    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::TimedOut), 2).await,
        names(&["e2"])
    );
    assert_eq!(list_all(s, &machine, None, 3).await, newest_first);

    // Tokens stay valid while newer executions arrive.
    let first = s
        .list_executions(&machine, None, 2, None)
        .await
        .expect("list");
    let newer = execution("m", "e7", 12, T0 + 900);
    s.commit(creating(fences[&12], &newer))
        .await
        .expect("newer");
    let rest = s
        .list_executions(&machine, None, 100, first.next_token)
        .await
        .expect("list");
    assert_eq!(arns(&rest.items), newest_first[2..].to_vec());

    assert_eq!(
        list_all(s, &sm_arn("other"), None, 10).await,
        vec![other.execution_arn.clone()]
    );
    assert_eq!(
        list_all(s, &sm_arn("none"), None, 10).await,
        Vec::<String>::new()
    );
}

/// An outbox entry as `pending_outbox` returns it.
fn entry(arn: &str, seq: u64, message: OutboxMessage) -> OutboxEntry {
    OutboxEntry {
        execution_arn: arn.to_string(),
        seq,
        message,
    }
}

/// Leases `partition` and creates executions `x` (pending: a task, then a cancel) and `y`
/// (pending: a cancel) in it, in that order.
async fn x_and_y_with_outbox<S: Store>(
    s: &S,
    partition: u32,
) -> (Fence, ExecutionRecord, ExecutionRecord) {
    let fence = lease(s, partition, "a").await;
    let x = execution("m", "x", partition, T0);
    let y = execution("m", "y", partition, T0);
    let mut c = creating(fence, &x);
    c.outbox = vec![task_message(&x.execution_arn, 1), cancel_message(2)];
    s.commit(c).await.expect("x");
    let mut c = creating(fence, &y);
    c.outbox = vec![cancel_message(10)];
    s.commit(c).await.expect("y");
    (fence, x, y)
}

async fn outbox_pending_and_ack<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let (fence, x, y) = x_and_y_with_outbox(s, 4).await;
    let (xa, ya) = (x.execution_arn.clone(), y.execution_arn.clone());
    let mut c = following(fence, &x);
    c.outbox = vec![task_message(&xa, 3)];
    let x2 = c.execution.clone();
    s.commit(c).await.expect("x again");

    // Executions in the order they first had pending messages; each in seq order. A
    // message's seq is `outbox_seq(version of its commit, index in the commit)`.
    let all = vec![
        entry(&xa, outbox_seq(1, 0), task_message(&xa, 1)),
        entry(&xa, outbox_seq(1, 1), cancel_message(2)),
        entry(&xa, outbox_seq(2, 0), task_message(&xa, 3)),
        entry(&ya, outbox_seq(1, 0), cancel_message(10)),
    ];
    assert!(outbox_seq(1, 1) < outbox_seq(2, 0));
    assert_eq!(s.pending_outbox(4, 100).await, Ok(all.clone()));
    assert_eq!(s.pending_outbox(4, 2).await, Ok(all[..2].to_vec()));
    assert_eq!(s.pending_outbox(4, 0).await, Ok(Vec::new()));
    assert_eq!(s.pending_outbox(9, 100).await, Ok(Vec::new()));

    s.ack_outbox(4, &xa, outbox_seq(1, 1)).await.expect("ack");
    assert_eq!(s.pending_outbox(4, 100).await, Ok(all[2..].to_vec()));
    s.ack_outbox(4, &xa, outbox_seq(1, 1))
        .await
        .expect("acking twice is harmless");
    s.ack_outbox(4, &xa, outbox_seq(2, 0)).await.expect("ack");
    assert_eq!(s.pending_outbox(4, 100).await, Ok(all[3..].to_vec()));
    s.ack_outbox(4, &exec_arn("m", "unknown"), 5)
        .await
        .expect("acking an unknown execution is harmless");

    // Sequence numbers keep growing; a drained execution queues up behind the others.
    let mut c = following(fence, &x2);
    c.outbox = vec![cancel_message(4)];
    s.commit(c).await.expect("x third");
    assert_eq!(
        s.pending_outbox(4, 100).await,
        Ok(vec![
            entry(&ya, outbox_seq(1, 0), cancel_message(10)),
            entry(&xa, outbox_seq(3, 0), cancel_message(4)),
        ])
    );
    s.ack_outbox(4, &ya, outbox_seq(1, 0)).await.expect("ack y");
    s.ack_outbox(4, &xa, u64::MAX).await.expect("ack x");
    assert_eq!(s.pending_outbox(4, 100).await, Ok(Vec::new()));
}

/// `Commit::outbox_ack` removes what was published, in the commit itself and only when the
/// commit lands; an execution that gets new messages in that commit keeps its place in the
/// partition's outbox index, and one the commit drains leaves it.
async fn commits_ack_published_outbox<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let (fence, x, y) = x_and_y_with_outbox(s, 5).await;
    let (xa, ya) = (x.execution_arn.clone(), y.execution_arn.clone());

    // A rejected commit acks nothing.
    let mut stale = creating(fence, &x);
    stale.outbox_ack = Some(u64::MAX);
    assert!(s.commit(stale).await.is_err());
    assert_eq!(s.pending_outbox(5, 100).await.map(|p| p.len()), Ok(3));

    // Ack the first message and add one: x keeps its place in the index.
    let mut c = following(fence, &x);
    c.outbox_ack = Some(outbox_seq(1, 0));
    c.outbox = vec![task_message(&xa, 3)];
    let x2 = c.execution.clone();
    s.commit(c).await.expect("x acks and adds");
    assert_eq!(
        s.pending_outbox(5, 100).await,
        Ok(vec![
            entry(&xa, outbox_seq(1, 1), cancel_message(2)),
            entry(&xa, outbox_seq(2, 0), task_message(&xa, 3)),
            entry(&ya, outbox_seq(1, 0), cancel_message(10)),
        ])
    );

    // Ack everything, add nothing: x leaves the index.
    let mut c = following(fence, &x2);
    c.outbox_ack = Some(outbox_seq(2, 0));
    finish(&mut c, ExecutionStatus::Succeeded);
    let x3 = c.execution.clone();
    s.commit(c).await.expect("x drains");
    assert_eq!(
        s.pending_outbox(5, 100).await,
        Ok(vec![entry(&ya, outbox_seq(1, 0), cancel_message(10))])
    );

    // A message committed later (a redrive, say) queues up behind y.
    let mut c = following(fence, &x3);
    c.execution.status = ExecutionStatus::Running;
    c.outbox = vec![cancel_message(4)];
    s.commit(c).await.expect("x again");
    assert_eq!(
        s.pending_outbox(5, 100).await,
        Ok(vec![
            entry(&ya, outbox_seq(1, 0), cancel_message(10)),
            entry(&xa, outbox_seq(4, 0), cancel_message(4)),
        ])
    );
}

async fn timers_due_next_and_removal<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 6, "a").await;
    let e = execution("m", "exec-e", 6, T0);
    let f = execution("m", "exec-f", 6, T0);
    assert_eq!(s.next_timer(6).await, Ok(None));
    assert_eq!(s.due_timers(6, i64::MAX, 10).await, Ok(Vec::new()));

    let mut c = creating(fence, &e);
    c.timers_add = vec![
        timer(&e, 1, T0 + 300),
        timer(&e, 2, T0 + 100),
        timer(&e, 3, T0 + 200),
    ];
    s.commit(c).await.expect("e");
    let mut c = creating(fence, &f);
    c.timers_add = vec![timer(&f, 1, T0 + 100)];
    s.commit(c).await.expect("f");

    assert_eq!(s.next_timer(6).await, Ok(Some(T0 + 100)));
    assert_eq!(s.next_timer(5).await, Ok(None));
    assert_eq!(s.due_timers(6, T0 + 99, 10).await, Ok(Vec::new()));
    // Earliest first; equal times in member order (`<arn>|<id>`).
    assert_eq!(
        s.due_timers(6, T0 + 150, 10).await,
        Ok(vec![timer(&e, 2, T0 + 100), timer(&f, 1, T0 + 100)])
    );
    assert_eq!(
        s.due_timers(6, T0 + 200, 10).await,
        Ok(vec![
            timer(&e, 2, T0 + 100),
            timer(&f, 1, T0 + 100),
            timer(&e, 3, T0 + 200),
        ])
    );
    assert_eq!(
        s.due_timers(6, T0 + 10_000, 2).await,
        Ok(vec![timer(&e, 2, T0 + 100), timer(&f, 1, T0 + 100)])
    );
    assert_eq!(s.due_timers(6, T0 + 10_000, 0).await, Ok(Vec::new()));

    // Removal names the timer, not its time (as a cancelled timer does); re-adding moves it.
    let mut c = following(fence, &e);
    c.timers_remove = vec![timer(&e, 2, 0)];
    c.timers_add = vec![timer(&e, 3, T0 + 50)];
    let e2 = c.execution.clone();
    s.commit(c).await.expect("remove and move");
    assert_eq!(s.next_timer(6).await, Ok(Some(T0 + 50)));
    assert_eq!(
        s.due_timers(6, T0 + 10_000, 10).await,
        Ok(vec![
            timer(&e, 3, T0 + 50),
            timer(&f, 1, T0 + 100),
            timer(&e, 1, T0 + 300),
        ])
    );

    // A finished execution keeps no timers.
    let mut c = following(fence, &e2);
    finish(&mut c, ExecutionStatus::Succeeded);
    s.commit(c).await.expect("finish e");
    assert_eq!(
        s.due_timers(6, i64::MAX, 10).await,
        Ok(vec![timer(&f, 1, T0 + 100)])
    );
    let mut c = following(fence, &f);
    c.timers_remove = vec![timer(&f, 1, T0 + 100)];
    s.commit(c).await.expect("fire f");
    assert_eq!(s.next_timer(6).await, Ok(None));
    assert_eq!(s.due_timers(6, i64::MAX, 10).await, Ok(Vec::new()));
}

/// `swap_reply_route` returns the partition's previous route and whether another partition
/// still records it (part of the `leases` case: what a partition's new owner does).
async fn reply_routes<S: Store>(s: &S) {
    let swap = |partition, route: &'static str| async move {
        s.swap_reply_route(partition, route).await.expect("swap")
    };
    assert_eq!(swap(1, "a").await, RouteSwap::default());
    assert_eq!(swap(2, "a").await, RouteSwap::default());
    let in_use = |previous: &str| RouteSwap {
        previous: Some(previous.to_string()),
        previous_in_use: true,
    };
    let unused = |previous: &str| RouteSwap {
        previous: Some(previous.to_string()),
        previous_in_use: false,
    };
    // Partition 2 still routes to "a".
    assert_eq!(swap(1, "b").await, in_use("a"));
    // The last one: "a" is no partition's route any more.
    assert_eq!(swap(2, "b").await, unused("a"));
    // Taking a partition again over one's own route.
    assert_eq!(swap(2, "b").await, in_use("b"));
}

async fn leases<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let a = lease(s, 8, "a").await;
    assert_eq!(a.partition, 8);
    assert!(a.token > 0);
    assert_eq!(s.acquire_lease(8, "b", 60_000).await, Ok(None), "held by a");
    assert_eq!(
        s.acquire_lease(8, "a", 60_000).await,
        Ok(None),
        "held, even by a"
    );
    let other = lease(s, 9, "b").await;
    assert_eq!(other.partition, 9);

    // Only the holder renews or releases.
    assert_eq!(s.renew_lease(a, "b", 60_000).await, Ok(false));
    let wrong_token = Fence {
        partition: 8,
        token: a.token + 1,
    };
    assert_eq!(s.renew_lease(wrong_token, "a", 60_000).await, Ok(false));
    assert_eq!(s.renew_lease(a, "a", 60_000).await, Ok(true));
    s.release_lease(a, "b")
        .await
        .expect("release by a stranger");
    s.release_lease(wrong_token, "a")
        .await
        .expect("release with a wrong token");
    assert_eq!(
        s.acquire_lease(8, "b", 60_000).await,
        Ok(None),
        "still held"
    );

    // Released: free, with a larger token.
    s.release_lease(a, "a").await.expect("release");
    assert_eq!(s.renew_lease(a, "a", 60_000).await, Ok(false), "released");
    let b = s
        .acquire_lease(8, "b", 1_000)
        .await
        .expect("acquire")
        .expect("free after release");
    assert!(b.token > a.token, "tokens increase: {b:?} after {a:?}");

    // Renewing pushes the expiry out.
    cx.time.pass(600).await;
    assert_eq!(s.renew_lease(b, "b", 1_000).await, Ok(true));
    cx.time.pass(600).await;
    assert_eq!(
        s.acquire_lease(8, "c", 60_000).await,
        Ok(None),
        "renewed 600 ms ago for 1000 ms"
    );

    // Expired: free for the next owner, with a larger token; the old one cannot renew.
    assert_eq!(s.renew_lease(b, "b", 200).await, Ok(true));
    let mut taken = None;
    for _ in 0..100 {
        cx.time.pass(50).await;
        if let Some(fence) = s.acquire_lease(8, "c", 60_000).await.expect("acquire") {
            taken = Some(fence);
            break;
        }
    }
    let c = taken.expect("a lease with a 200 ms ttl was still held 5 s later");
    assert!(c.token > b.token, "tokens increase: {c:?} after {b:?}");
    assert_eq!(s.renew_lease(b, "b", 60_000).await, Ok(false), "expired");
    s.release_lease(b, "b")
        .await
        .expect("release of a lost lease");
    assert_eq!(
        s.acquire_lease(8, "d", 60_000).await,
        Ok(None),
        "c still holds it"
    );

    assert!(matches!(
        s.acquire_lease(10, "a", 0).await,
        Err(StoreError::Backend(_))
    ));
    reply_routes(s).await;
}

async fn finished_executions_expire<S: Store + Clone>(cx: Ctx<S>) {
    let s = &cx.store;
    let fence = lease(s, 5, "a").await;
    let done_fence = lease(s, 9, "a").await;
    let machine = sm_arn("m");
    let sm = state_machine("m", "r1");
    s.create_state_machine(sm.clone()).await.expect("machine");

    // Deleted first, so its revisions expire no later than the finished execution.
    s.delete_state_machine(&machine)
        .await
        .expect("delete machine");

    let running = execution("m", "running", 5, T0);
    // The one that expires lives in another partition than the others.
    let done = execution("m", "done", 9, T0 + 1);
    let redriven = execution("m", "redriven", 5, T0 + 2);
    for rec in [&running, &done, &redriven] {
        let fence = if rec.partition == 9 {
            done_fence
        } else {
            fence
        };
        let mut c = creating(fence, rec);
        c.events = events(1..=2);
        c.journal = vec![journal_entry(0)];
        c.outbox = vec![cancel_message(1)];
        c.timers_add = vec![timer(rec, 1, T0 + 60_000)];
        s.commit(c).await.expect("create");
    }
    let mut c = following(done_fence, &done);
    finish(&mut c, ExecutionStatus::Failed);
    c.events = events(3..=3);
    s.commit(c).await.expect("finish");
    let mut c = following(fence, &redriven);
    finish(&mut c, ExecutionStatus::Failed);
    let failed = c.execution.clone();
    s.commit(c).await.expect("fail");
    let mut c = following(fence, &failed);
    c.execution.status = ExecutionStatus::Running;
    c.timers_add = vec![timer(&redriven, 2, T0 + 60_000)];
    s.commit(c).await.expect("redrive");

    // Nothing is gone yet.
    let done_arn = done.execution_arn.clone();
    assert!(s.get_execution(&done_arn).await.expect("get").is_some());
    assert_eq!(s.history(&done_arn, 0, 10).await, Ok(events(1..=3)));
    assert_eq!(
        s.get_state_machine_revision(&machine, "r1").await,
        Ok(Some(sm.clone()))
    );

    let mut expired = false;
    for _ in 0..60 {
        cx.time.pass(100).await;
        if s.get_execution(&done_arn).await.expect("get").is_none() {
            expired = true;
            break;
        }
    }
    assert!(
        expired,
        "a finished execution outlived its 1 s retention by 5 s"
    );
    // All of it: history, journal, outbox, listing.
    assert_eq!(s.history(&done_arn, 0, 10).await, Ok(Vec::new()));
    assert_eq!(s.journal(&done_arn).await, Ok(Vec::new()));
    let pending = s.pending_outbox(5, 100).await.expect("outbox");
    assert_eq!(
        pending
            .iter()
            .map(|e| e.execution_arn.clone())
            .collect::<Vec<_>>(),
        vec![
            running.execution_arn.clone(),
            redriven.execution_arn.clone()
        ]
    );
    assert_eq!(s.pending_outbox(9, 100).await, Ok(Vec::new()));
    assert_eq!(
        list_all(s, &machine, None, 1).await,
        vec![
            redriven.execution_arn.clone(),
            running.execution_arn.clone()
        ]
    );
    assert_eq!(
        list_all(s, &machine, Some(ExecutionStatus::Failed), 1).await,
        Vec::<String>::new()
    );
    // Running (and redriven) executions never expire.
    for rec in [&running, &redriven] {
        let kept = observe(s, &rec.execution_arn, 5).await;
        assert!(kept.record.is_some());
        assert_eq!(kept.history, events(1..=2));
        assert_eq!(kept.journal, vec![journal_entry(0)]);
    }
    assert_eq!(
        s.due_timers(5, i64::MAX, 10).await,
        Ok(vec![
            timer(&redriven, 2, T0 + 60_000),
            timer(&running, 1, T0 + 60_000),
        ])
    );
    // Revisions of the deleted machine expired with it.
    assert_eq!(s.get_state_machine_revision(&machine, "r1").await, Ok(None));
}

/// Redis: the sweep unlists expired executions without anybody listing them (a listing would
/// prune what it meets; here nothing lists), so the indexes of a state machine nobody lists
/// do not grow for ever. (The memory store unlists an execution when it expires.)
async fn expired_executions_are_swept_from_the_indexes(cx: Ctx<RedisStore>) {
    let s = &cx.store;
    let (fence, machine, live, done) = live_and_finished(s, "swept").await;
    wait_until_gone(&cx, &done.execution_arn).await;

    // A sweep of other partitions leaves this one alone.
    let others: BTreeSet<u32> = (0..PARTITIONS).filter(|p| *p != 3).collect();
    // The index still counts it: index entries cannot expire with the execution's keys.
    assert_eq!(s.count_executions(&machine, None).await, Ok(2));
    let mut pass_over = false;
    let mut cursor = Default::default();
    for _ in 0..20 {
        let step = s
            .sweep_indexes(&mut cursor, &others, 100)
            .await
            .expect("sweep");
        assert_eq!(step.unlisted, 0);
        if step.pass_over {
            pass_over = true;
            break;
        }
    }
    assert!(
        pass_over,
        "a pass over this small namespace ends within 20 steps"
    );
    assert_eq!(s.count_executions(&machine, None).await, Ok(2));

    // One full pass over every partition unlists exactly the expired execution; the next
    // pass finds nothing more.
    let mut cursor = Default::default();
    let mut sweep_a_pass = async || sweep_a_pass(s, &mut cursor).await;
    assert_eq!(
        sweep_a_pass().await,
        1,
        "the sweep unlists exactly the expired execution"
    );
    assert_eq!(sweep_a_pass().await, 0, "a second pass finds nothing");
    assert_eq!(s.count_executions(&machine, None).await, Ok(1));
    assert_eq!(
        s.count_executions(&machine, Some(ExecutionStatus::Succeeded))
            .await,
        Ok(0)
    );
    assert_eq!(
        list_all(s, &machine, None, 10).await,
        vec![live.execution_arn.clone()]
    );

    // The sweep finds the indexes through the partitions' machine sets, not by scanning the
    // keyspace: after the first pass adopted what an older layout left (nothing here), no
    // more `SCAN`s, however many passes.
    let (mut raw, set) = raw_redis(s, "{p3}:machines").await;
    let members = || members_of(&raw, &set);
    assert_eq!(members().await, vec![machine.clone()]);
    let scans_before = scans(s);
    let mut c = following(fence, &live);
    finish(&mut c, ExecutionStatus::Failed);
    s.commit(c).await.expect("finish");
    wait_until_gone(&cx, &live.execution_arn).await;
    assert_eq!(sweep_a_pass().await, 1, "the last execution is unlisted");
    assert_eq!(members().await, vec![machine.clone()]);
    assert_eq!(sweep_a_pass().await, 0);
    assert_eq!(
        members().await,
        Vec::<String>::new(),
        "a machine whose index is gone leaves the partition's set"
    );
    assert_eq!(
        scans(s),
        scans_before,
        "passes after the adoption SCAN nothing"
    );

    // A new execution lists the machine again.
    let again = execution("swept", "again", 3, T0 + 2);
    s.commit(creating(fence, &again)).await.expect("create");
    assert_eq!(members().await, vec![machine.clone()]);
    let _: () = redis::cmd("DEL")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .expect("DEL");
}

/// A raw connection to the store's Redis, and the full name of its key `key` (after the
/// store's prefix).
async fn raw_redis(s: &RedisStore, key: &str) -> (redis::aio::MultiplexedConnection, String) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection");
    (raw, format!("{}{key}", s.key_prefix()))
}

/// In partition 3, a state machine `name` with two executions, `live` and `done` (finished,
/// so it expires after the store's retention): the lease's fence, the machine's ARN, and the
/// two records.
async fn live_and_finished(
    s: &RedisStore,
    name: &str,
) -> (Fence, String, ExecutionRecord, ExecutionRecord) {
    let fence = lease(s, 3, "a").await;
    s.create_state_machine(state_machine(name, "r1"))
        .await
        .expect("machine");
    let live = execution(name, "live", 3, T0);
    let done = execution(name, "done", 3, T0 + 1);
    for rec in [&live, &done] {
        s.commit(creating(fence, rec)).await.expect("create");
    }
    let mut c = following(fence, &done);
    finish(&mut c, ExecutionStatus::Succeeded);
    s.commit(c).await.expect("finish");
    (fence, sm_arn(name), live, done)
}

/// Sweeps every partition from `cursor` until a pass is over (within 40 steps); returns how
/// many executions it unlisted.
async fn sweep_a_pass(s: &RedisStore, cursor: &mut <RedisStore as Store>::SweepCursor) -> usize {
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    let mut unlisted = 0;
    for _ in 0..40 {
        let step = s.sweep_indexes(cursor, &all, 100).await.expect("sweep");
        unlisted += step.unlisted;
        if step.pass_over {
            return unlisted;
        }
    }
    panic!("a pass over this small namespace ends within 40 steps");
}

/// `SCAN`s the store has sent so far.
fn scans(s: &RedisStore) -> usize {
    s.recorded_key_sets()
        .iter()
        .filter(|k| k.request == "SCAN")
        .count()
}

/// The members of the set `set`, read on `raw`.
async fn members_of(raw: &redis::aio::MultiplexedConnection, set: &str) -> Vec<String> {
    redis::cmd("SMEMBERS")
        .arg(set)
        .query_async(&mut raw.clone())
        .await
        .expect("SMEMBERS")
}

/// Waits (at most 6 s) until the execution has expired.
async fn wait_until_gone(cx: &Ctx<RedisStore>, arn: &str) {
    for _ in 0..60 {
        cx.time.pass(100).await;
        if cx.store.get_execution(arn).await.expect("get").is_none() {
            return;
        }
    }
    panic!("{arn} outlived its 1 s retention by 5 s");
}

/// Redis: list indexes no machine set lists (an older build's: written before the sets
/// existed, or by an old coordinator during a rolling upgrade) are adopted by a sweeper's first
/// pass, and their expired entries swept like any other; the passes after it scan nothing.
async fn indexes_of_an_older_layout_are_adopted(cx: Ctx<RedisStore>) {
    let s = &cx.store;
    let (_, machine, live, done) = live_and_finished(s, "legacy").await;
    // What an older build leaves: the indexes, and no set listing them.
    let (mut raw, set) = raw_redis(s, "{p3}:machines").await;
    let _: () = redis::cmd("DEL")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .expect("DEL");
    wait_until_gone(&cx, &done.execution_arn).await;

    // One sweeper adopts for all: the one serving partition 0.
    let without_zero: BTreeSet<u32> = (1..PARTITIONS).collect();
    let before = scans(s);
    s.sweep_indexes(&mut Default::default(), &without_zero, 100)
        .await
        .expect("sweep");
    assert_eq!(
        scans(s),
        before,
        "a sweeper without partition 0 adopts nothing"
    );

    let mut cursor = Default::default();
    let mut pass = async || sweep_a_pass(s, &mut cursor).await;
    assert_eq!(
        pass().await,
        1,
        "the expired execution of the old index is unlisted"
    );
    assert_eq!(
        members_of(&raw, &set).await,
        vec![machine.clone()],
        "the index was adopted"
    );
    let before = scans(s);
    assert_eq!(pass().await, 0);
    assert_eq!(scans(s), before, "the next pass scans nothing");
    assert_eq!(
        list_all(s, &machine, None, 10).await,
        vec![live.execution_arn.clone()]
    );
}

/// On a Redis that refuses `SCAN` (an ACL, as some managed services set) the adoption fails,
/// and the sweep still unlists the expired execution: it does not depend on the adoption.
async fn the_sweep_goes_on_when_adoption_fails(cx: Ctx<RedisStore>) {
    let s = &cx.store;
    let (_, machine, live, done) = live_and_finished(s, "noscan").await;
    wait_until_gone(&cx, &done.execution_arn).await;
    let (mut raw, _) = raw_redis(s, "").await;
    let user = format!("stepline-test-noscan-{}", std::process::id());
    let acl = |args: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg(args);
        cmd
    };
    let _: () = acl(&[
        "SETUSER", &user, "reset", "on", "nopass", "~*", "&*", "+@all", "-scan",
    ])
    .query_async(&mut raw)
    .await
    .expect("ACL SETUSER");
    let url = {
        let url = redis_url();
        let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}:unused@{host}")
    };
    let swept = async {
        let mut conn = redis::Client::open(url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect as the restricted user");
        let refused = redis::cmd("SCAN")
            .arg(0)
            .query_async::<redis::Value>(&mut conn)
            .await;
        assert!(refused.is_err(), "SCAN must be refused: {refused:?}");
        let restricted = RedisStore::connect(&url, s.key_prefix(), SHORT)
            .await
            .expect("the store as the restricted user")
            .with_partitions(PARTITIONS);
        sweep_a_pass(&restricted, &mut Default::default()).await
    };
    let swept = AssertUnwindSafe(swept).catch_unwind().await;
    let _: usize = acl(&["DELUSER", &user])
        .query_async(&mut raw)
        .await
        .expect("ACL DELUSER");
    let swept = swept.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert_eq!(swept, 1, "the expired execution is unlisted all the same");
    assert_eq!(
        list_all(s, &machine, None, 10).await,
        vec![live.execution_arn.clone()]
    );
}

// ---- Redis specifics --------------------------------------------------------------------

mod redis_only {
    use super::*;

    #[tokio::test]
    async fn expired_executions_are_swept_from_the_indexes() {
        run_redis(
            "swept",
            SHORT,
            super::expired_executions_are_swept_from_the_indexes,
        )
        .await
    }

    /// The store reports what Redis's own configuration says (`CONFIG GET`).
    #[tokio::test]
    async fn the_store_reads_the_nodes_memory() {
        // It writes nothing: no namespace to purge, no key sets to check.
        let store = connect_redis("memory", LONG).await;
        let nodes = store.memory().await.expect("INFO memory");
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        let (mut raw, _) = raw_redis(&store, "").await;
        let config = |name: &'static str| {
            let mut raw = raw.clone();
            async move {
                let (_, value): (String, String) = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut raw)
                    .await
                    .expect("CONFIG GET");
                value
            }
        };
        assert_eq!(nodes[0].policy, config("maxmemory-policy").await);
        assert_eq!(nodes[0].max_bytes.to_string(), config("maxmemory").await);
        let used: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut raw)
            .await
            .expect("INFO");
        assert!(nodes[0].used_bytes > 0 && used.contains("used_memory:"));
        let address = redis::Client::open(redis_url())
            .expect("redis url")
            .get_connection_info()
            .addr()
            .to_string();
        assert_eq!(nodes[0].node, address);
    }

    #[tokio::test]
    async fn the_sweep_goes_on_when_adoption_fails() {
        run_redis(
            "noscan",
            SHORT,
            super::the_sweep_goes_on_when_adoption_fails,
        )
        .await
    }

    #[tokio::test]
    async fn indexes_of_an_older_layout_are_adopted() {
        run_redis(
            "legacy",
            SHORT,
            super::indexes_of_an_older_layout_are_adopted,
        )
        .await
    }

    /// The key-slot function agrees with Redis Cluster's published values and tag rules.
    #[test]
    fn key_slot_is_redis_clusters() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(key_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
    }

    /// The check fails on what the old layout sent (an execution's own tag next to its
    /// partition's) and on requests it cannot read.
    #[test]
    fn cross_slot_requests_are_caught() {
        let arn = exec_arn("m", "e1");
        let old_commit = KeySet {
            request: "EVALSHA".into(),
            keys: vec![format!("ns:{{{arn}}}:exec"), "ns:{p3}:fence".into()],
            known: true,
        };
        let violations = single_slot_violations(&[old_commit]);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("EVALSHA spans slots"),
            "{violations:?}"
        );
        let unknown = KeySet {
            request: "SUNIONSTORE".into(),
            keys: Vec::new(),
            known: false,
        };
        assert_eq!(single_slot_violations(&[unknown]).len(), 1);
        let fine = KeySet {
            request: "MULTI [ZREM ZREM]".into(),
            keys: vec![
                format!("ns:{{p3}}:exec:{arn}"),
                "ns:{p3}:timer_index".into(),
            ],
            known: true,
        };
        assert_eq!(single_slot_violations(&[fine]), Vec::<String>::new());
    }

    /// A commit for another partition than the one its ARN hashes to is refused (it would be
    /// unreadable): the store and the coordinators must agree on the partition count.
    #[tokio::test]
    async fn commit_outside_the_arns_partition_is_refused() {
        run_redis(
            "foreign_partition",
            LONG,
            |cx: Ctx<RedisStore>| async move {
                let s = &cx.store;
                assert_eq!(s.partitions(), PARTITIONS);
                let mut rec = execution("m", "e1", 3, T0);
                rec.partition = 4;
                let fence = lease(s, 4, "a").await;
                let err = s.commit(creating(fence, &rec)).await.expect_err("refused");
                assert!(
                    matches!(&err, StoreError::Backend(m) if m.contains("partition count")),
                    "{err}"
                );
                assert_eq!(s.get_execution(&rec.execution_arn).await, Ok(None));
                // Its own partition takes it.
                rec.partition = 3;
                let fence = lease(s, 3, "a").await;
                s.commit(creating(fence, &rec)).await.expect("commit");
                assert_eq!(s.get_execution(&rec.execution_arn).await, Ok(Some(rec)));
            },
        )
        .await
    }

    /// A server that lost its scripts (restarted, `SCRIPT FLUSH`) answers `NOSCRIPT`: a
    /// commit and a group commit load the script and go through, each commit once.
    #[tokio::test]
    async fn commits_reload_a_flushed_script() {
        run_redis("noscript", LONG, |cx: Ctx<RedisStore>| async move {
            let s = &cx.store;
            let client = redis::Client::open(redis_url()).expect("redis url");
            let mut raw = client
                .get_multiplexed_async_connection()
                .await
                .expect("a raw connection");
            let flush = || {
                let mut raw = raw.clone();
                async move {
                    let _: () = redis::cmd("SCRIPT")
                        .arg("FLUSH")
                        .query_async(&mut raw)
                        .await
                        .expect("SCRIPT FLUSH");
                }
            };
            let fence = lease(s, 1, "a").await;
            let x = execution("m", "x", 1, T0);
            let y = execution("m", "y", 1, T0 + 1);
            flush().await;
            let mut next_x = following(fence, &x);
            next_x.events = events(1..=1);
            assert_eq!(
                s.commit_all(vec![creating(fence, &x), creating(fence, &y), next_x])
                    .await,
                vec![Ok(()), Ok(()), Ok(())]
            );
            assert_eq!(
                s.get_execution(&x.execution_arn)
                    .await
                    .expect("get")
                    .map(|r| r.version),
                Some(2)
            );
            assert_eq!(s.history(&x.execution_arn, 0, 10).await, Ok(events(1..=1)));
            flush().await;
            let z = execution("m", "z", 1, T0 + 2);
            s.commit(creating(fence, &z)).await.expect("commit");
            assert_eq!(s.get_execution(&z.execution_arn).await, Ok(Some(z)));
            let _: () = redis::cmd("PING")
                .query_async(&mut raw)
                .await
                .expect("the raw connection still works");
        })
        .await
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_clear_error() {
        // Port 1 on localhost refuses connections.
        let err = RedisStore::connect("redis://127.0.0.1:1", "stepline-test:", LONG)
            .await
            .expect_err("nothing listens on port 1");
        let message = err.to_string();
        assert!(
            message.contains("cannot connect to Redis at 127.0.0.1:1"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn key_prefix_must_not_pick_hash_slots() {
        let err = RedisStore::connect(&redis_url(), "stepline-{test}:", LONG)
            .await
            .expect_err("braces in the prefix");
        assert!(err.to_string().contains("must not contain braces"), "{err}");
    }

    /// Every key of a finished execution carries the retention TTL; a redrive clears them.
    #[tokio::test]
    async fn finished_execution_keys_all_carry_the_ttl() {
        run_redis("ttl_on_every_key", LONG, |cx: Ctx<RedisStore>| async move {
            let s = &cx.store;
            let url = redis_url();
            let conn = redis::Client::open(url.as_str())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("raw connection");
            let fence = lease(s, 1, "a").await;
            let rec = execution("m", "e1", 1, T0);
            let mut c = creating(fence, &rec);
            c.events = events(1..=2);
            c.journal = vec![journal_entry(0)];
            c.outbox = vec![cancel_message(1)];
            c.timers_add = vec![timer(&rec, 1, T0)];
            s.commit(c).await.expect("create");
            let mut c = following(fence, &rec);
            finish(&mut c, ExecutionStatus::Succeeded);
            let finished = c.execution.clone();
            s.commit(c).await.expect("finish");

            let pattern = format!(
                "{}{{p{}}}:*:{}",
                s.key_prefix(),
                rec.partition,
                rec.execution_arn
            );
            let keys = |mut conn: redis::aio::MultiplexedConnection| {
                let pattern = pattern.clone();
                async move {
                    let found: Vec<String> = redis::cmd("KEYS")
                        .arg(pattern)
                        .query_async(&mut conn)
                        .await
                        .expect("KEYS");
                    (found, conn)
                }
            };
            let (found, mut conn) = keys(conn).await;
            // exec, events, journal, outbox (the timer set is dropped with the timers).
            assert_eq!(found.len(), 4, "{found:?}");
            for key in &found {
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .expect("PTTL");
                assert!(
                    ttl > 0 && ttl <= LONG.as_millis() as i64,
                    "{key} has PTTL {ttl}"
                );
            }

            let mut c = following(fence, &finished);
            c.execution.status = ExecutionStatus::Running;
            s.commit(c).await.expect("redrive");
            let (found, mut conn) = keys(conn).await;
            for key in &found {
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .expect("PTTL");
                assert_eq!(ttl, -1, "{key} still expires after a redrive");
            }
        })
        .await
    }
}
