//! `RedisStore`: the production [`Store`] adapter on Redis — one node (with replicas/Sentinel
//! for failover) or a Redis Cluster.
//!
//! A single node is reached through one [`ConnectionManager`] (a multiplexed connection that
//! reconnects in the background), a cluster through one [`ClusterConnection`]; clones share
//! it. The URL picks which: `redis://host:port/db` for a node, `redis+cluster://host:port[,
//! host:port…]` for a cluster (the listed nodes are seeds; the client discovers the rest). No
//! blocking command is ever sent, so the response timeout (5 s here) never cuts a command short
//! on purpose. Records, events, journal entries and outbox messages are stored as `serde_json`
//! text.
//!
//! # Keys and hash slots
//!
//! Every key starts with the store's `key_prefix` (a namespace: tests use a unique one per
//! run), followed by a hash tag: everything of an execution lives under its **partition's** tag
//! `{p<n>}`, next to the partition's own keys, so a commit — and every other script, `MULTI`
//! or pipeline this adapter sends — touches keys of exactly one hash slot and runs unchanged on
//! Redis Cluster (which refuses anything else with `CROSSSLOT`). An execution's partition is
//! [`partition_of`] its ARN under the store's partition count ([`RedisStore::with_partitions`],
//! which must be the coordinators' `partitions`): reads by ARN compute it, and a commit for any
//! other partition is refused.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p<n>}:exec:<execution arn>` | hash | `version`, `status`, `record` (JSON with snapshot), `order` (list key) |
//! | `{p<n>}:events:<execution arn>` / `{p<n>}:journal:<execution arn>` | list | history events / journal entries, oldest first |
//! | `{p<n>}:outbox:<execution arn>` | sorted set | score = seq, member = `<seq>:<message JSON>` |
//! | `{p<n>}:timers:<execution arn>` | set | the execution's timer members (to drop them when it finishes) |
//! | `{p<n>}:timer_index` | sorted set | member = `<execution arn>\|<timer id>`, score = `fire_at_ms` |
//! | `{p<n>}:outbox_index` | sorted set | executions with pending outbox entries, in arrival order (`{p<n>}:outbox_counter`) |
//! | `{p<n>}:fence` / `{p<n>}:lease` | string | the latest fencing token / `<token>\|<owner>` with a PX expiry |
//! | `{p<n>}:machine:all:<state machine arn>` / `{p<n>}:machine:<STATUS>:<state machine arn>` | sorted set | the partition's executions of that machine (in that status): lex-ordered `execution_order_key`s, newest first |
//! | `{p<n>}:machines` | set | the state machines with a list index in the partition (what the index sweep walks) |
//! | `{catalog}:state_machines` / `:activities` | hash | ARN → record JSON, with a lex index `…_index` |
//! | `{catalog}:revisions:<state machine arn>` | hash | revision id → record JSON |
//! | `{catalog}:members` | sorted set | live coordinators, scored by "alive until" |
//! | `{catalog}:reply_routes` | hash | partition → the inbox its worker replies were last routed to (`swap_reply_route`) |
//!
//! So one slot holds one partition (executions and their indexes), and the whole catalog
//! shares the `{catalog}` slot (it is small and changes rarely). The trade-offs: a cluster
//! spreads load by whole partitions (so use many more partitions than primaries), and listing
//! a state machine's executions reads its index in every partition (concurrently, `limit + 1`
//! entries each from the page token) and merges them newest first, so pages stay exact.
//! Multi-key reads (`HGET` pipelines of a listing, `DEL`s of `purge_namespace`) are grouped
//! per slot too, because the cluster client refuses a pipeline that spans slots. Tests check
//! all of this with a log of the keys of every request sent (`recording_key_sets`).
//!
//! # Atomicity
//!
//! [`Store::commit`] is one Lua script (`redis::Script`, EVALSHA with fallback): it checks the
//! partition's fencing token and the execution's version, then writes the record, events,
//! journal, timers, outbox, list indexes and expiry — all or nothing. Leases, outbox acks and
//! catalog changes are scripts too, each over keys of one tag.
//!
//! # Expiry
//!
//! A commit that leaves an execution finished (status other than `RUNNING`) drops its
//! remaining timers and sets a TTL of `retention` on every key of the execution; a later
//! `RUNNING` commit (redrive) removes the TTLs. Index entries that outlive their execution
//! (the list indexes, the partition outbox index) cannot carry a TTL; they are skipped and
//! pruned when a listing or `pending_outbox` meets them, and the list indexes are also swept
//! in the background ([`Store::sweep_indexes`]: partition by partition, the machines of
//! `{p<n>}:machines` — which the commit that first lists an execution in a machine's index
//! adds it to — each index read a slice per step, the entries whose execution key is gone
//! unlisted, and a machine whose index is gone removed from the set). Indexes no set lists
//! (written by an older build) are adopted by a `SCAN` when a sweeper starts and about once a
//! day (see [`SweepCursor`]). Revisions of a deleted state machine
//! expire after `retention` as well.
//!
//! What this is not: a cache or a queue. It never blocks on Redis (no BLPOP/XREAD), and it
//! reads no clock: expiry is Redis's own.

use super::store::{
    partition_of, ActivityRecord, Commit, ExecutionRecord, Fence, OutboxEntry, Page, RouteSwap,
    StateMachineRecord, Store, StoreError, SweepStep, TimerEntry,
};
use super::store_memory::{check_commit, execution_order_key, order_key_arn, timer_member};
use crate::history::HistoryEvent;
use crate::interp::{ExecutionStatus, JournalEntry};
use futures_util::future::try_join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::store_memory::DEFAULT_RETENTION;

/// The statuses, in the order the commit script receives their index keys.
const STATUSES: [ExecutionStatus; 5] = [
    ExecutionStatus::Running,
    ExecutionStatus::Succeeded,
    ExecutionStatus::Failed,
    ExecutionStatus::TimedOut,
    ExecutionStatus::Aborted,
];

/// Lua shared by the commit and ack scripts: `ack_outbox(outbox, index, up_to, arn)` removes
/// the execution's outbox entries with `seq <= up_to` and, when none is left, unlists it from
/// the partition's outbox index (returning 1 if it did).
macro_rules! ack_outbox_lua {
    () => {
        r#"
local function ack_outbox(outbox, index, up_to, arn)
  redis.call('ZREMRANGEBYSCORE', outbox, '-inf', up_to)
  if redis.call('ZCARD', outbox) == 0 then return redis.call('ZREM', index, arn) end
  return 0
end
"#
    };
}

/// The atomic commit (see the module doc).
///
/// KEYS: 1 exec hash, 2 events, 3 journal, 4 outbox, 5 exec timers, 6 partition timers,
/// 7 partition outbox index, 8 partition outbox counter, 9 partition fence,
/// 10 machine index (all), 11..15 machine index per status (order of `STATUSES`),
/// 16 the partition's set of indexed machines.
/// ARGV: 1 execution arn, 2 expected version, 3 fence token, 4 new version, 5 new status,
/// 6 record JSON, 7 order key, 8 retention ms, 9 outbox ack (up to this seq; empty: none),
/// 10 state machine arn; then counted groups: events, journal entries, outbox messages, timer removals (members),
/// timer additions (member, fire_at_ms).
const COMMIT_LUA: &str = concat!(
    ack_outbox_lua!(),
    r#"
local statuses = {RUNNING = 11, SUCCEEDED = 12, FAILED = 13, TIMED_OUT = 14, ABORTED = 15}
local new_status_key = statuses[ARGV[5]]
if not new_status_key then
  return redis.error_reply('stepline commit: unknown status ' .. ARGV[5])
end
local fence = redis.call('GET', KEYS[9]) or '0'
if fence ~= ARGV[3] then
  return {'fenced', fence}
end
local old = redis.call('HMGET', KEYS[1], 'version', 'status', 'order')
local current, old_status, old_order = old[1], old[2], old[3]
if ARGV[2] == '0' then
  if current then return {'exists', current} end
else
  if not current then return {'missing', '0'} end
  if current ~= ARGV[2] then return {'conflict', current} end
end

-- The list indexes change only with the status or the order key; most steps change neither.
if old_order ~= ARGV[7] then
  if old_order then redis.call('ZREM', KEYS[10], old_order) end
  redis.call('ZADD', KEYS[10], 0, ARGV[7])
  -- The sweep finds the partition's indexes through this set (no keyspace SCAN).
  redis.call('SADD', KEYS[16], ARGV[10])
end
if old_status ~= ARGV[5] or old_order ~= ARGV[7] then
  if old_order and old_status and statuses[old_status] then
    redis.call('ZREM', KEYS[statuses[old_status]], old_order)
  end
  redis.call('ZADD', KEYS[new_status_key], 0, ARGV[7])
end
redis.call('HSET', KEYS[1], 'version', ARGV[4], 'status', ARGV[5], 'record', ARGV[6],
  'order', ARGV[7])

-- ARGV[first .. first + n - 1] appended to the list `key`, a thousand per call (few calls;
-- Lua's stack bounds how many arguments one call takes).
local function push(key, first, n)
  local k, last = first, first + n - 1
  while k <= last do
    local upto = math.min(k + 999, last)
    redis.call('RPUSH', key, unpack(ARGV, k, upto))
    k = upto + 1
  end
end

local i = 11
local n = tonumber(ARGV[i]); i = i + 1
push(KEYS[2], i, n); i = i + n
n = tonumber(ARGV[i]); i = i + 1
push(KEYS[3], i, n); i = i + n
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  -- store::outbox_seq: version * 2^20 + index (exact below 2^53, see store::MAX_VERSION).
  local base = tonumber(ARGV[4]) * 1048576
  for k = 1, n do
    local seq = string.format('%.0f', base + k)
    redis.call('ZADD', KEYS[4], seq, seq .. ':' .. ARGV[i]); i = i + 1
  end
  -- Listed in arrival order; an execution listed already keeps its place (NX).
  redis.call('ZADD', KEYS[7], 'NX', redis.call('INCR', KEYS[8]), ARGV[1])
end
-- Entries published already (Store::ack_outbox folded into this commit); after the additions,
-- whose seqs are higher, so an execution with new entries keeps its place in the index.
if ARGV[9] ~= '' then ack_outbox(KEYS[4], KEYS[7], ARGV[9], ARGV[1]) end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZREM', KEYS[6], ARGV[i]); redis.call('SREM', KEYS[5], ARGV[i]); i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', KEYS[6], ARGV[i + 1], ARGV[i]); redis.call('SADD', KEYS[5], ARGV[i])
  i = i + 2
end

if ARGV[5] ~= 'RUNNING' then
  local timers = redis.call('SMEMBERS', KEYS[5])
  if #timers > 0 then
    for _, member in ipairs(timers) do redis.call('ZREM', KEYS[6], member) end
    redis.call('DEL', KEYS[5])
  end
  for k = 1, 4 do redis.call('PEXPIRE', KEYS[k], ARGV[8]) end
elseif old_status and old_status ~= 'RUNNING' then
  -- Only a finished commit sets TTLs; running again (a redrive) clears them. (A new
  -- execution's keys have none: they all expire together, and it did not exist.)
  for k = 1, 5 do redis.call('PERSIST', KEYS[k]) end
end
return {'ok', ARGV[4]}
"#
);

/// KEYS: 1 records hash, 2 lex index, 3 revisions hash. ARGV: arn, JSON, revision id, mode.
const PUT_STATE_MACHINE_LUA: &str = r#"
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[4] == 'create' and exists then return 'exists' end
if ARGV[4] == 'update' and not exists then return 'missing' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
redis.call('PERSIST', KEYS[3])
return 'ok'
"#;

/// KEYS: 1 records hash, 2 lex index, 3 revisions hash. ARGV: arn, retention ms.
const DELETE_STATE_MACHINE_LUA: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 'missing' end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 'ok'
"#;

/// KEYS: 1 records hash, 2 lex index. ARGV: arn, JSON.
const CREATE_ACTIVITY_LUA: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 'exists' end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 'ok'
"#;

/// KEYS: 1 records hash. ARGV: arn, record json.
const UPDATE_ACTIVITY_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'missing' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'ok'
"#;

/// KEYS: 1 records hash, 2 lex index. ARGV: arn.
const DELETE_ACTIVITY_LUA: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 'missing' end
redis.call('ZREM', KEYS[2], ARGV[1])
return 'ok'
"#;

/// KEYS: 1 partition machine set, 2 the machine's list index (all). ARGV: machine arn.
/// Unlists a machine from the set once its index is gone (atomic with the commits that list
/// it again).
const UNLIST_MACHINE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end
return 0
"#;

/// KEYS: 1 execution outbox, 2 partition outbox index. ARGV: up_to, execution arn.
/// With up_to 0 it only unlists an execution whose outbox is gone. Returns 1 if it unlisted.
const ACK_OUTBOX_LUA: &str = concat!(
    ack_outbox_lua!(),
    "return ack_outbox(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"
);

/// KEYS: 1 lease, 2 fence counter. ARGV: owner, ttl ms. The token is drawn only when the
/// lease is free, so a failed attempt never moves the partition's current token.
const ACQUIRE_LEASE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return token
"#;

/// KEYS: 1 lease. ARGV: `<token>|<owner>`, ttl ms.
const RENEW_LEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: 1 lease. ARGV: `<token>|<owner>`.
const RELEASE_LEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

struct Scripts {
    commit: redis::Script,
    put_state_machine: redis::Script,
    delete_state_machine: redis::Script,
    create_activity: redis::Script,
    update_activity: redis::Script,
    delete_activity: redis::Script,
    ack_outbox: redis::Script,
    unlist_machine: redis::Script,
    acquire_lease: redis::Script,
    renew_lease: redis::Script,
    release_lease: redis::Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            commit: redis::Script::new(COMMIT_LUA),
            put_state_machine: redis::Script::new(PUT_STATE_MACHINE_LUA),
            delete_state_machine: redis::Script::new(DELETE_STATE_MACHINE_LUA),
            create_activity: redis::Script::new(CREATE_ACTIVITY_LUA),
            update_activity: redis::Script::new(UPDATE_ACTIVITY_LUA),
            delete_activity: redis::Script::new(DELETE_ACTIVITY_LUA),
            ack_outbox: redis::Script::new(ACK_OUTBOX_LUA),
            unlist_machine: redis::Script::new(UNLIST_MACHINE_LUA),
            acquire_lease: redis::Script::new(ACQUIRE_LEASE_LUA),
            renew_lease: redis::Script::new(RENEW_LEASE_LUA),
            release_lease: redis::Script::new(RELEASE_LEASE_LUA),
        }
    }
}

/// Key names (see the table in the module doc). Every key has a hash tag: `{p<n>}` for a
/// partition and its executions, `{catalog}` for the rest.
struct Keys {
    prefix: String,
}

impl Keys {
    fn catalog(&self, name: &str) -> String {
        format!("{}{{catalog}}:{name}", self.prefix)
    }
    fn revisions(&self, state_machine_arn: &str) -> String {
        format!("{}{{catalog}}:revisions:{state_machine_arn}", self.prefix)
    }
    /// A key of one execution (`part`: exec, events, journal, outbox, timers).
    fn execution(&self, partition: u32, part: &str, arn: &str) -> String {
        format!("{}{{p{partition}}}:{part}:{arn}", self.prefix)
    }
    fn partition(&self, partition: u32, part: &str) -> String {
        format!("{}{{p{partition}}}:{part}", self.prefix)
    }
    /// The partition's list index of a state machine's executions (in `status`).
    fn machine_index(
        &self,
        partition: u32,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
    ) -> String {
        let status = status.map_or("all", |s| s.as_str());
        format!(
            "{}{{p{partition}}}:machine:{status}:{state_machine_arn}",
            self.prefix
        )
    }

    /// The `SCAN` pattern of every partition's all-executions index…
    fn machine_indexes_pattern(&self) -> String {
        format!("{}{{p*}}:machine:all:*", glob_escape(&self.prefix))
    }

    /// …and the partition and state machine of one (the inverse of [`Self::machine_index`]
    /// without a status).
    fn parse_machine_index<'k>(&self, key: &'k str) -> Option<(u32, &'k str)> {
        let (partition, machine) = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("{p")?
            .split_once("}:machine:all:")?;
        Some((partition.parse().ok()?, machine))
    }
}

/// The keys one request sent to Redis touches together: one command, one script call (its
/// `KEYS`), or one pipeline (the keys of all its commands; `MULTI` when atomic). Recorded by
/// [`RedisStore::recording_key_sets`] so tests can check that every request stays within one
/// hash slot, as Redis Cluster requires.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// The command (`EVALSHA`, `HGET`, …) or `pipeline [cmds]` / `MULTI [cmds]`.
    pub request: String,
    pub keys: Vec<String>,
    /// `false` when a command's key positions are unknown to the recorder (then `keys` is
    /// empty and the set proves nothing; tests should refuse it).
    pub known: bool,
}

/// Where a command's keys are: the commands this adapter sends (others are `None`).
fn command_keys(cmd: &redis::Cmd) -> (String, Option<Vec<String>>) {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(s) => s,
            _ => b"".as_slice(), // a cursor placeholder: never a key
        })
        .collect();
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default();
    let text = |a: &[&[u8]]| -> Vec<String> {
        a.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    };
    let keys = match name.as_str() {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" => {
            let n = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
            n.and_then(|n| args.get(3..3 + n)).map(text)
        }
        "DEL" | "UNLINK" | "EXISTS" | "MGET" | "TOUCH" => args.get(1..).map(text),
        "SCAN" | "SCRIPT" | "PING" | "TIME" | "INFO" | "CLUSTER" => Some(Vec::new()),
        "GET" | "SET" | "INCR" | "HGET" | "HSET" | "HMGET" | "HEXISTS" | "HDEL" | "HSETNX"
        | "ZADD" | "ZREM" | "ZRANGE" | "ZRANGEBYLEX" | "ZRANGEBYSCORE" | "ZREMRANGEBYSCORE"
        | "ZCARD" | "ZSCORE" | "LRANGE" | "RPUSH" | "SADD" | "SREM" | "SMEMBERS" | "SSCAN"
        | "PEXPIRE" | "PERSIST" | "PTTL" => args.get(1..2).map(text),
        _ => None,
    };
    (name, keys)
}

fn key_set_of_command(cmd: &redis::Cmd) -> KeySet {
    let (request, keys) = command_keys(cmd);
    KeySet {
        request,
        known: keys.is_some(),
        keys: keys.unwrap_or_default(),
    }
}

fn key_set_of_pipeline(pipeline: &redis::Pipeline) -> KeySet {
    let mut names = Vec::new();
    let mut keys = Vec::new();
    let mut known = true;
    for cmd in pipeline.cmd_iter() {
        let (name, k) = command_keys(cmd);
        known &= k.is_some();
        keys.extend(k.unwrap_or_default());
        names.push(name);
    }
    let kind = if pipeline.is_transaction() {
        "MULTI"
    } else {
        "pipeline"
    };
    KeySet {
        request: format!("{kind} [{}]", names.join(" ")),
        keys,
        known,
    }
}

/// The link to Redis: one node or a cluster.
#[derive(Clone)]
enum Link {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Attempts at one script call while the server answers `NOSCRIPT` (it lost its script cache:
/// restarted, `SCRIPT FLUSH`ed, failed over to a node that never saw the script), counting the
/// first: raw `EVALSHA`s for the commits ([`RedisStore::send_commits`], loading the script in
/// between), `invoke_async`s for the other scripts ([`InvokeRetrying`]; each loads a missing
/// script and calls once more itself). More than two: a second loss between a load and the call
/// after it must not fail the call.
const SCRIPT_CALLS: usize = 3;

fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// `ScriptInvocation::invoke_async` (which loads a missing script and calls once more), called
/// again while the answer is `NOSCRIPT`, [`SCRIPT_CALLS`] calls in all. A trait for the method
/// syntax at the end of each invocation's builder chain.
trait InvokeRetrying {
    async fn invoke_retrying<T: redis::FromRedisValue>(
        &self,
        conn: &mut Conn,
    ) -> redis::RedisResult<T>;
}

impl InvokeRetrying for redis::ScriptInvocation<'_> {
    async fn invoke_retrying<T: redis::FromRedisValue>(
        &self,
        conn: &mut Conn,
    ) -> redis::RedisResult<T> {
        let mut calls = 1;
        loop {
            match self.invoke_async(conn).await {
                Err(e) if calls < SCRIPT_CALLS && is_no_script(&e) => calls += 1,
                other => return other,
            }
        }
    }
}

/// The connection every request of the store goes through (see [`KeySet`] for the log).
#[derive(Clone)]
struct Conn {
    link: Link,
    key_log: Option<Arc<Mutex<Vec<KeySet>>>>,
}

impl Conn {
    fn log(&self, set: impl FnOnce() -> KeySet) {
        if let Some(log) = &self.key_log {
            log.lock().unwrap_or_else(|e| e.into_inner()).push(set());
        }
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.log(|| key_set_of_command(cmd));
        match &mut self.link {
            Link::Node(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.log(|| key_set_of_pipeline(pipeline));
        match &mut self.link {
            Link::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Node(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    retention_ms: u64,
    partitions: u32,
    /// The single node's address (`host:port`), as [`RedisMemory::node`] names it.
    node: Arc<str>,
}

/// Memory of one Redis node (each primary of a cluster), from `INFO memory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisMemory {
    /// `host:port`.
    pub node: String,
    /// `used_memory`.
    pub used_bytes: u64,
    /// `maxmemory`; 0: no limit.
    pub max_bytes: u64,
    /// `maxmemory_policy`.
    pub policy: String,
}

/// The share of `maxmemory` in use from which [`RedisMemory::warnings`] warns.
pub const MEMORY_WARNING_PERCENT: u64 = 90;

impl RedisMemory {
    /// Reads the `INFO memory` reply of `node`.
    pub fn parse(node: &str, info: &redis::InfoDict) -> Result<RedisMemory, String> {
        fn field<T: redis::FromRedisValue>(
            node: &str,
            info: &redis::InfoDict,
            name: &str,
        ) -> Result<T, String> {
            info.get(name)
                .ok_or_else(|| format!("INFO memory of {node} has no readable {name}"))
        }
        Ok(RedisMemory {
            node: node.to_string(),
            used_bytes: field(node, info, "used_memory")?,
            max_bytes: field(node, info, "maxmemory")?,
            policy: field(node, info, "maxmemory_policy")?,
        })
    }

    /// Whether the node deletes keys under memory pressure: any policy but `noeviction`
    /// (the `volatile-*` ones too — finished executions and partition leases have a TTL).
    pub fn evicts(&self) -> bool {
        self.policy != "noeviction"
    }

    /// What an operator must be told about this node, if anything:
    /// [`RedisMemory::eviction_warning`] and [`RedisMemory::fullness_warning`].
    pub fn warnings(&self) -> Vec<String> {
        self.eviction_warning()
            .into_iter()
            .chain(self.fullness_warning())
            .collect()
    }

    /// A policy that evicts: it loses data.
    pub fn eviction_warning(&self) -> Option<String> {
        self.evicts().then(|| {
            format!(
                "Redis {} has maxmemory-policy {}: under memory pressure it deletes keys, and \
                 with them executions, timers and partition leases; set `maxmemory-policy \
                 noeviction` (then new work fails when memory is full, and nothing is lost)",
                self.node, self.policy
            )
        })
    }

    /// Memory at [`MEMORY_WARNING_PERCENT`] % of `maxmemory` or more.
    pub fn fullness_warning(&self) -> Option<String> {
        let percent = self.used_bytes.saturating_mul(100) / self.max_bytes.max(1);
        (self.max_bytes > 0 && percent >= MEMORY_WARNING_PERCENT).then(|| {
            format!(
                "Redis {} uses {percent} % of its maxmemory ({} of {} bytes): when it is full, \
                 starts and steps fail until finished executions expire; add memory or lower \
                 --retention-days",
                self.node, self.used_bytes, self.max_bytes
            )
        })
    }
}

/// Most `SCAN` steps (of 1,000 keys each) one sweep step takes while adopting indexes
/// written before the partitions' machine sets existed.
const SWEEP_SCANS_PER_STEP: usize = 8;

/// Members of a partition's machine set one `SSCAN` step asks for.
const SWEEP_SET_COUNT: usize = 100;

/// Passes of the index sweep between two adoptions (at most one pass a minute: about a day).
const SWEEP_PASSES_PER_ADOPTION: u32 = 1440;

/// Passes of the index sweep before a failed adoption is tried again (about ten minutes).
const SWEEP_PASSES_PER_ADOPTION_RETRY: u32 = 10;

/// Where the index sweep ([`Store::sweep_indexes`]) stands. A pass goes partition by
/// partition: the machines of the partition's set (`{p<n>}:machines`, read with `SSCAN`),
/// then each machine's list index, a slice per step. When the sweeper serving partition 0
/// starts, and again every [`SWEEP_PASSES_PER_ADOPTION`] passes, list indexes (of every
/// partition) that no set lists are adopted into them
/// (found with `SCAN`, node by node on a cluster, at most [`SWEEP_SCANS_PER_STEP`] `SCAN`s at
/// the start of each step, the sweep going on beside it): those an older build wrote, before
/// the sets existed or while a rolling upgrade still ran it next to this one. A sweep error
/// starts the pass over and leaves the adoption where it was; an adoption error is logged and
/// the adoption tried again [`SWEEP_PASSES_PER_ADOPTION_RETRY`] passes later, the sweep going
/// on.
#[derive(Default)]
pub struct SweepCursor {
    adoption: Adoption,
    /// The partitions the pass under way has yet to visit (`None`: between passes).
    partitions: Option<std::collections::VecDeque<u32>>,
    /// The partition whose machine set is being read, and the `SSCAN` cursor to resume at.
    set: Option<(u32, u64)>,
    /// Machines read from the set and not swept yet: partition and state machine.
    pending: std::collections::VecDeque<(u32, String)>,
    /// The index being read and its last member read (`None`: none yet).
    current: Option<(u32, String, Option<String>)>,
}

/// Adopting list indexes into the machine sets (see [`SweepCursor`]).
#[derive(Default)]
enum Adoption {
    /// Due: the next step starts a `SCAN`.
    #[default]
    Due,
    /// Scanning: the nodes (`None`: the single node), the one being scanned and its cursor.
    Scanning {
        nodes: Vec<Option<(String, u16)>>,
        node: usize,
        cursor: u64,
    },
    /// Done; due again after this many more passes.
    Done { passes_left: u32 },
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.keys.prefix)
            .field("retention_ms", &self.retention_ms)
            .field("partitions", &self.partitions)
            .field("cluster", &matches!(self.conn.link, Link::Cluster(_)))
            .finish_non_exhaustive()
    }
}

/// What the commit script's reply (or the request's failure) means for commit `c`.
fn commit_outcome(c: &Commit, reply: redis::RedisResult<Vec<String>>) -> Result<(), StoreError> {
    let arn = c.execution.execution_arn.as_str();
    let reply = reply.map_err(|e| backend(format!("committing {arn}"), e))?;
    let found = || {
        reply
            .get(1)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Backend(format!("committing {arn}: malformed reply {reply:?}"))
            })
    };
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(()),
        Some("fenced") => Err(StoreError::Fenced {
            partition: c.fence.partition,
        }),
        Some("exists") => Err(StoreError::AlreadyExists(arn.to_string())),
        Some("missing") => Err(StoreError::NotFound(arn.to_string())),
        Some("conflict") => Err(StoreError::VersionConflict {
            expected: c.expected_version,
            found: found()?,
        }),
        _ => Err(StoreError::Backend(format!(
            "committing {arn}: unexpected script reply {reply:?}"
        ))),
    }
}

fn backend(context: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| backend(format!("cannot serialize {what}"), e))
}

fn from_json<T: DeserializeOwned>(
    what: impl std::fmt::Display,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| backend(format!("corrupt {what} in Redis"), e))
}

/// A sorted-set score that must be a whole number of milliseconds.
fn score_to_ms(what: &str, score: f64) -> Result<i64, StoreError> {
    if !score.is_finite() || score.fract() != 0.0 {
        return Err(StoreError::Backend(format!(
            "corrupt {what} in Redis: score {score} is not a whole number"
        )));
    }
    Ok(score as i64)
}

/// One member of an execution's outbox (`<seq>:<message JSON>`).
fn outbox_entry(arn: &str, member: &str) -> Result<OutboxEntry, StoreError> {
    let (seq, message) = member
        .split_once(':')
        .and_then(|(s, m)| Some((s.parse::<u64>().ok()?, m)))
        .ok_or_else(|| StoreError::Backend(format!("corrupt outbox entry of {arn} in Redis")))?;
    Ok(OutboxEntry {
        execution_arn: arn.to_string(),
        seq,
        message: from_json(format_args!("outbox entry {seq} of {arn}"), message)?,
    })
}

/// The lower bound of a ZRANGEBYLEX after `token` (exclusive), or from the start.
fn lex_after(token: Option<&str>) -> String {
    match token {
        Some(t) => format!("({t}"),
        None => "-".to_string(),
    }
}

/// The first `want` members of the list index `index` from the `ZRANGEBYLEX` bound `from`
/// (see [`lex_after`]).
fn zrange_after(index: String, from: &str, want: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("ZRANGEBYLEX");
    cmd.arg(index)
        .arg(from)
        .arg("+")
        .arg("LIMIT")
        .arg(0)
        .arg(want);
    cmd
}

/// Escapes glob metacharacters for SCAN MATCH.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The hash tag of a key (what Redis hashes to pick its slot), or the whole key without one.
fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

/// The seed node URLs of a `redis+cluster://` (or `rediss+cluster://`) URL; `None` for any
/// other URL. `redis+cluster://user:pass@h1:7000,h2:7001` gives `redis://user:pass@h1:7000`
/// and `redis://user:pass@h2:7001` (a path or query is dropped: a cluster has only db 0).
fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let base = scheme.strip_suffix("+cluster")?;
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (Some(auth), hosts),
        None => (None, rest),
    };
    let hosts = hosts.split(['/', '?']).next().unwrap_or_default();
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| match auth {
                Some(auth) => format!("{base}://{auth}@{h}"),
                None => format!("{base}://{h}"),
            })
            .collect(),
    )
}

/// The primaries of a cluster (`host`, `port`), from `CLUSTER NODES`.
async fn cluster_primaries(conn: &ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let reply = conn
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await
        .map_err(|e| backend("CLUSTER NODES", e))?;
    let text: String =
        redis::from_redis_value(reply).map_err(|e| backend("reading CLUSTER NODES", e))?;
    let mut primaries = Vec::new();
    for line in text.lines() {
        // <id> <ip:port@cport[,hostname]> <flags> …
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.contains(&"fail") || flags.contains(&"noaddr") {
            continue;
        }
        let address = address.split(['@', ',']).next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                primaries.push((host.to_string(), port));
            }
        }
    }
    if primaries.is_empty() {
        return Err(StoreError::Backend(
            "CLUSTER NODES lists no reachable primary".into(),
        ));
    }
    Ok(primaries)
}

/// Connection settings shared by both links: 4 reconnection retries (100 ms doubling, at most
/// 1 s apart), 2 s to connect, 5 s per response.
const RETRIES: u32 = 4;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisStore {
    /// The `EVALSHA` of the commit script for `c` (see [`COMMIT_LUA`] for its keys and
    /// arguments), after checking that `c` is well formed and of this store's partitioning.
    fn commit_cmd(&self, c: &Commit) -> Result<redis::Cmd, StoreError> {
        check_commit(c)?;
        let arn = c.execution.execution_arn.as_str();
        let partition = c.fence.partition;
        let home = self.home(arn);
        if partition != home {
            return Err(StoreError::Backend(format!(
                "invalid commit of {arn}: it is for partition {partition}, but the execution \
                 hashes to partition {home} of this store's {}; the store and the coordinators \
                 must agree on the partition count (RedisStore::with_partitions)",
                self.partitions
            )));
        }
        let sm = c.execution.state_machine_arn.as_str();
        let k = &self.keys;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.commit.get_hash())
            .arg(11 + STATUSES.len())
            .arg(k.execution(partition, "exec", arn))
            .arg(k.execution(partition, "events", arn))
            .arg(k.execution(partition, "journal", arn))
            .arg(k.execution(partition, "outbox", arn))
            .arg(k.execution(partition, "timers", arn))
            .arg(k.partition(partition, "timer_index"))
            .arg(k.partition(partition, "outbox_index"))
            .arg(k.partition(partition, "outbox_counter"))
            .arg(k.partition(partition, "fence"))
            .arg(k.machine_index(partition, sm, None));
        for s in STATUSES {
            cmd.arg(k.machine_index(partition, sm, Some(s)));
        }
        cmd.arg(k.partition(partition, "machines"));
        cmd.arg(arn)
            .arg(c.expected_version)
            .arg(c.fence.token)
            .arg(c.execution.version)
            .arg(c.execution.status.as_str())
            .arg(to_json("execution record", &c.execution)?)
            .arg(execution_order_key(c.execution.start_ms, arn))
            .arg(self.retention_ms)
            .arg(c.outbox_ack.map(|s| s.to_string()).unwrap_or_default())
            .arg(sm);
        cmd.arg(c.events.len());
        for e in &c.events {
            cmd.arg(to_json("history event", e)?);
        }
        cmd.arg(c.journal.len());
        for j in &c.journal {
            cmd.arg(to_json("journal entry", j)?);
        }
        cmd.arg(c.outbox.len());
        for m in &c.outbox {
            cmd.arg(to_json("outbox message", m)?);
        }
        cmd.arg(c.timers_remove.len());
        for t in &c.timers_remove {
            cmd.arg(timer_member(&t.execution_arn, t.timer));
        }
        cmd.arg(c.timers_add.len());
        for t in &c.timers_add {
            cmd.arg(timer_member(&t.execution_arn, t.timer))
                .arg(t.fire_at_ms);
        }
        Ok(cmd)
    }

    /// Sends commit scripts: one command, or a pipeline (a group commit: all of one partition,
    /// so of one hash slot; the server runs the scripts in order, each atomically). Those that
    /// found the script missing (a restarted or flushed server) are sent again, in order, once
    /// it is loaded — [`SCRIPT_CALLS`] calls in all. One reply per command; an error when the
    /// request as a whole failed.
    async fn send_commits(
        &self,
        cmds: Vec<redis::Cmd>,
    ) -> Result<Vec<redis::RedisResult<Vec<String>>>, redis::RedisError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        let mut conn = self.conn.clone();
        let mut replies = match pipe.cmd_iter().collect::<Vec<_>>().as_slice() {
            [] => return Ok(Vec::new()),
            [cmd] => vec![cmd.query_async(&mut conn).await],
            _ => pipe.query_async(&mut conn).await?,
        };
        let no_script = |r: &redis::RedisResult<Vec<String>>| r.as_ref().is_err_and(is_no_script);
        for _ in 1..SCRIPT_CALLS {
            if !replies.iter().any(no_script) {
                break;
            }
            let loaded = self
                .scripts
                .commit
                .prepare_invoke()
                .load_async(&mut conn)
                .await;
            if loaded.is_err() {
                break; // The NOSCRIPT errors stay the replies.
            }
            for (cmd, reply) in pipe.cmd_iter().zip(&mut replies) {
                if no_script(reply) {
                    *reply = cmd.query_async(&mut conn).await;
                }
            }
        }
        Ok(replies)
    }

    /// Connects to `url` and keeps finished executions for `retention` ([`DEFAULT_RETENTION`]
    /// in production). `redis://host:port/db` is one node; `redis+cluster://host:port[,…]` a
    /// Redis Cluster (see [`RedisStore::connect_cluster`]). `key_prefix` namespaces every key
    /// (e.g. `"stepline:"`); it must not contain braces. Executions are hashed into the
    /// coordinators' default partition count; set the real one with
    /// [`RedisStore::with_partitions`].
    ///
    /// The connection manager retries a refused or dropped connection 4 times with
    /// exponential backoff (100 ms doubling, at most 1 s apart), so an unreachable Redis is
    /// reported within about two seconds; later commands trigger new reconnection rounds.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        retention: Duration,
    ) -> Result<RedisStore, StoreError> {
        if let Some(seeds) = cluster_seeds(url) {
            return RedisStore::connect_cluster(&seeds, key_prefix, retention).await;
        }
        let client = redis::Client::open(url).map_err(|e| backend("invalid Redis URL", e))?;
        let address = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(RETRIES as usize)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| backend(format!("cannot connect to Redis at {address}"), e))?;
        let mut store = RedisStore::from_manager(conn, key_prefix, retention)?;
        store.node = address.into();
        Ok(store)
    }

    /// Connects to a Redis Cluster through the seed nodes `nodes` (`redis://host:port` each;
    /// the client discovers the other nodes and follows slot migrations). Everything else as
    /// [`RedisStore::connect`].
    pub async fn connect_cluster(
        nodes: &[String],
        key_prefix: &str,
        retention: Duration,
    ) -> Result<RedisStore, StoreError> {
        if nodes.is_empty() {
            return Err(StoreError::Backend(
                "a Redis Cluster URL needs at least one node".into(),
            ));
        }
        let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .retries(RETRIES)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(|e| backend("invalid Redis Cluster URL", e))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            backend(
                format!("cannot connect to the Redis Cluster at {}", nodes.join(",")),
                e,
            )
        })?;
        RedisStore::new(Link::Cluster(conn), key_prefix, retention)
    }

    /// A store over an existing connection manager (own timeouts, TLS, retries).
    pub fn from_manager(
        conn: ConnectionManager,
        key_prefix: &str,
        retention: Duration,
    ) -> Result<RedisStore, StoreError> {
        RedisStore::new(Link::Node(conn), key_prefix, retention)
    }

    fn new(link: Link, key_prefix: &str, retention: Duration) -> Result<RedisStore, StoreError> {
        if key_prefix.contains(['{', '}']) {
            return Err(StoreError::Backend(format!(
                "Redis key prefix {key_prefix:?} must not contain braces (they pick hash slots)"
            )));
        }
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        if retention_ms == 0 {
            return Err(StoreError::Backend(
                "retention must be at least 1 ms".into(),
            ));
        }
        Ok(RedisStore {
            conn: Conn {
                link,
                key_log: None,
            },
            keys: Arc::new(Keys {
                prefix: key_prefix.to_string(),
            }),
            scripts: Arc::new(Scripts::new()),
            retention_ms,
            partitions: super::coordinator::CoordinatorConfig::default().partitions,
            node: "redis".into(),
        })
    }

    /// The memory of the Redis node (every primary of a cluster): what `/healthz` and
    /// `/metrics` report, and what the server warns about ([`RedisMemory::warnings`]).
    pub async fn memory(&self) -> Result<Vec<RedisMemory>, StoreError> {
        self.info("memory")
            .await?
            .into_iter()
            .map(|(node, info)| RedisMemory::parse(&node, &info).map_err(StoreError::Backend))
            .collect()
    }

    /// `INFO <section>` of the node (every primary of a cluster): each node's `host:port` and
    /// reply.
    pub async fn info(&self, section: &str) -> Result<Vec<(String, redis::InfoDict)>, StoreError> {
        let nodes = self.scan_nodes().await?;
        try_join_all(nodes.into_iter().map(|node| async move {
            let mut info = redis::cmd("INFO");
            info.arg(section);
            let text: String = self.on_node(&node, info, "INFO").await?;
            let name = node.map_or_else(|| self.node.to_string(), |(h, p)| format!("{h}:{p}"));
            Ok((name, redis::InfoDict::new(&text)))
        }))
        .await
    }

    /// Sends a `PING` through the connection commits use and returns how long the reply took
    /// (the benchmark's measure of one bare Redis round trip from this process).
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let mut conn = self.conn.clone();
        let sent = std::time::Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("PING".to_string(), e))?;
        Ok(sent.elapsed())
    }

    /// The number of partitions executions are hashed into: it must be the coordinators'
    /// `partitions`, because reads by ARN look for an execution in the partition its ARN
    /// hashes to (commits for any other partition are refused). Without it, the
    /// coordinators' default.
    pub fn with_partitions(mut self, partitions: u32) -> RedisStore {
        self.partitions = partitions.max(1);
        self
    }

    /// See [`RedisStore::with_partitions`].
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Makes this store (and its clones made from now on) record the keys of every request
    /// it sends, for tests that check hash slots. Not for production: the log only grows.
    #[doc(hidden)]
    pub fn recording_key_sets(mut self) -> RedisStore {
        self.conn.key_log = Some(Arc::new(Mutex::new(Vec::new())));
        self
    }

    /// What [`RedisStore::recording_key_sets`] recorded so far, oldest first.
    #[doc(hidden)]
    pub fn recorded_key_sets(&self) -> Vec<KeySet> {
        self.conn.key_log.as_ref().map_or_else(Vec::new, |log| {
            log.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    /// The namespace every key of this store starts with.
    pub fn key_prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// The partition an execution lives in.
    fn home(&self, execution_arn: &str) -> u32 {
        partition_of(execution_arn, self.partitions)
    }

    /// Deletes every key of this store's prefix; returns how many. For tests and tools: it
    /// scans the whole keyspace (every primary of a cluster) and is not atomic.
    pub async fn purge_namespace(&self) -> Result<usize, StoreError> {
        let nodes = self.scan_nodes().await?;
        let pattern = format!("{}*", glob_escape(&self.keys.prefix));
        let mut deleted = 0;
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = self.scan_step(&node, cursor, &pattern).await?;
                deleted += self.delete_keys(keys).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// One step of [`Store::sweep_indexes`] (see there) on the sweep's state.
    async fn sweep_step(
        &self,
        sweep: &mut SweepCursor,
        partitions: &std::collections::BTreeSet<u32>,
        budget: usize,
    ) -> Result<SweepStep, StoreError> {
        // An adoption under way takes a bounded share of each step (a keyspace of other keys
        // may be large); the sweep goes on beside it, and does not depend on it: a failed
        // adoption (a failover, a Redis that refuses `SCAN`) is logged and tried again later.
        // It adopts for every partition, so only the sweeper serving partition 0 runs it (one
        // keyspace scan per deployment, not one per coordinator).
        for _ in 0..SWEEP_SCANS_PER_STEP {
            if !partitions.contains(&0) || matches!(sweep.adoption, Adoption::Done { .. }) {
                break;
            }
            if let Err(e) = self.adopt_indexes(&mut sweep.adoption).await {
                tracing::warn!(error = %e, "adopting list indexes failed; trying again later");
                sweep.adoption = Adoption::Done {
                    passes_left: SWEEP_PASSES_PER_ADOPTION_RETRY,
                };
            }
        }
        let (mut seen, mut unlisted) = (0, 0);
        let mut pass_over = false;
        while seen < budget {
            if let Some((partition, machine, last)) = sweep.current.take() {
                if !partitions.contains(&partition) {
                    continue; // Given up meanwhile: its owner sweeps it.
                }
                let want = budget - seen;
                let index = self.keys.machine_index(partition, &machine, None);
                let members: Vec<String> =
                    zrange_after(index.clone(), &lex_after(last.as_deref()), want)
                        .query_async(&mut self.conn.clone())
                        .await
                        .map_err(|e| backend(format!("reading the index of {machine}"), e))?;
                // A short read reached the end of this index.
                let next = members.last().filter(|_| members.len() == want).cloned();
                seen += members.len().max(1);
                if members.is_empty() {
                    if last.is_none() {
                        // No index left (its executions expired and were unlisted): the
                        // machine leaves the set, unless a commit has just listed one again.
                        self.scripts
                            .unlist_machine
                            .key(self.keys.partition(partition, "machines"))
                            .key(index)
                            .arg(&machine)
                            .invoke_retrying::<usize>(&mut self.conn.clone())
                            .await
                            .map_err(|e| backend(format!("unlisting {machine}"), e))?;
                    }
                    continue;
                }
                let mut pipe = redis::pipe();
                for member in &members {
                    // A corrupt entry names no execution key that exists: it is unlisted.
                    let arn = order_key_arn(member).unwrap_or(member);
                    pipe.cmd("EXISTS")
                        .arg(self.keys.execution(partition, "exec", arn));
                }
                let exists: Vec<bool> = pipe
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(|e| backend(format!("checking the index of {machine}"), e))?;
                let gone: Vec<String> = members
                    .into_iter()
                    .zip(exists)
                    .filter(|(_, exists)| !exists)
                    .map(|(member, _)| member)
                    .collect();
                unlisted += gone.len();
                self.prune_executions(partition, &machine, &gone).await?;
                sweep.current = next.map(|last| (partition, machine, Some(last)));
            } else if let Some((partition, machine)) = sweep.pending.pop_front() {
                sweep.current = Some((partition, machine, None));
            } else if let Some((partition, cursor)) = sweep.set.take() {
                if !partitions.contains(&partition) {
                    continue;
                }
                seen += 1;
                let (next, machines): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(self.keys.partition(partition, "machines"))
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SWEEP_SET_COUNT)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(|e| backend(format!("reading partition {partition}'s indexes"), e))?;
                sweep
                    .pending
                    .extend(machines.into_iter().map(|m| (partition, m)));
                if next != 0 {
                    sweep.set = Some((partition, next));
                }
            } else if let Some(left) = &mut sweep.partitions {
                match left.pop_front() {
                    Some(partition) => sweep.set = Some((partition, 0)),
                    None => {
                        sweep.partitions = None;
                        pass_over = true; // The next call starts another pass.
                        if let Adoption::Done { passes_left } = &mut sweep.adoption {
                            *passes_left = passes_left.saturating_sub(1);
                            if *passes_left == 0 {
                                sweep.adoption = Adoption::Due;
                            }
                        }
                        break;
                    }
                }
            } else {
                sweep.partitions = Some(partitions.iter().copied().collect());
            }
        }
        Ok(SweepStep {
            unlisted,
            pass_over,
        })
    }

    /// One step of adopting the list indexes no machine set lists (see [`SweepCursor`]): the
    /// first lists the nodes, each next one `SCAN`s on and adds the indexes it finds, of every
    /// partition, to their partitions' sets (adding one already there changes nothing, so
    /// sweepers may adopt at the same time); after the last node, adoption is done.
    async fn adopt_indexes(&self, adoption: &mut Adoption) -> Result<(), StoreError> {
        match adoption {
            Adoption::Done { .. } => {}
            Adoption::Due => {
                *adoption = Adoption::Scanning {
                    nodes: self.scan_nodes().await?,
                    node: 0,
                    cursor: 0,
                };
            }
            Adoption::Scanning {
                nodes,
                node,
                cursor,
            } => {
                let Some(address) = nodes.get(*node).cloned() else {
                    *adoption = Adoption::Done {
                        passes_left: SWEEP_PASSES_PER_ADOPTION,
                    };
                    return Ok(());
                };
                let pattern = self.keys.machine_indexes_pattern();
                let (next, keys) = self.scan_step(&address, *cursor, &pattern).await?;
                // One `SADD` per partition (one slot each).
                let mut found: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
                for key in &keys {
                    if let Some((partition, machine)) = self.keys.parse_machine_index(key) {
                        found.entry(partition).or_default().push(machine);
                    }
                }
                let adds = found.into_iter().map(|(partition, machines)| {
                    let mut conn = self.conn.clone();
                    let set = self.keys.partition(partition, "machines");
                    async move {
                        redis::cmd("SADD")
                            .arg(set)
                            .arg(machines)
                            .query_async::<()>(&mut conn)
                            .await
                    }
                });
                try_join_all(adds)
                    .await
                    .map_err(|e| backend("adopting the list indexes", e))?;
                if next == 0 {
                    *node += 1;
                    *cursor = 0;
                } else {
                    *cursor = next;
                }
            }
        }
        Ok(())
    }

    /// The nodes a `SCAN` of the whole keyspace visits: the single node (`None`), or every
    /// primary of a cluster.
    async fn scan_nodes(&self) -> Result<Vec<Option<(String, u16)>>, StoreError> {
        Ok(match &self.conn.link {
            Link::Node(_) => vec![None],
            Link::Cluster(c) => cluster_primaries(c).await?.into_iter().map(Some).collect(),
        })
    }

    /// One `SCAN cursor MATCH pattern COUNT 1000` on `node` (see [`Self::scan_nodes`]):
    /// the next cursor (0: done) and the keys found.
    async fn scan_step(
        &self,
        node: &Option<(String, u16)>,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        self.on_node(node, scan, "SCAN").await
    }

    /// Sends `cmd` to `node` (see [`Self::scan_nodes`]: a cluster primary, or `None` for the
    /// single node) and reads its reply; `what` names it in errors.
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &Option<(String, u16)>,
        cmd: redis::Cmd,
        what: &str,
    ) -> Result<T, StoreError> {
        match (node, &self.conn.link) {
            (Some((host, port)), Link::Cluster(c)) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = c
                    .clone()
                    .route_command(cmd, route)
                    .await
                    .map_err(|e| backend(format!("{what} on {host}:{port}"), e))?;
                redis::from_redis_value(reply).map_err(|e| backend(format!("{what} reply"), e))
            }
            _ => cmd
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| backend(what, e)),
        }
    }

    /// Deletes `keys` with one `DEL` per hash tag (a `DEL` must stay in one slot).
    async fn delete_keys(&self, keys: Vec<String>) -> Result<usize, StoreError> {
        let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in keys {
            by_tag
                .entry(hash_tag(&key).to_string())
                .or_default()
                .push(key);
        }
        let counts = try_join_all(by_tag.into_values().map(|keys| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<usize>(&mut conn)
                    .await
            }
        }))
        .await
        .map_err(|e| backend("DEL", e))?;
        Ok(counts.into_iter().sum())
    }

    /// How many executions of a state machine its list indexes hold (with `status`: those in
    /// that status). One `ZCARD` per partition, for tools and benchmarks that poll progress
    /// cheaply; entries of expired executions count until a listing prunes them.
    pub async fn count_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
    ) -> Result<u64, StoreError> {
        let counts = try_join_all((0..self.partitions).map(|p| {
            let mut conn = self.conn.clone();
            let index = self.keys.machine_index(p, state_machine_arn, status);
            async move {
                redis::cmd("ZCARD")
                    .arg(index)
                    .query_async::<u64>(&mut conn)
                    .await
            }
        }))
        .await
        .map_err(|e| backend(format!("counting executions of {state_machine_arn}"), e))?;
        Ok(counts.into_iter().sum())
    }

    /// One page of a lex-indexed catalog hash (state machines, activities).
    async fn list_catalog<T: DeserializeOwned>(
        &self,
        what: &str,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<T>, StoreError> {
        let mut conn = self.conn.clone();
        let limit = limit.max(1);
        let mut arns: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.catalog(&format!("{what}_index")))
            .arg(lex_after(next_token.as_deref()))
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("listing {what}"), e))?;
        let next_token = if arns.len() > limit {
            arns.truncate(limit);
            arns.last().cloned()
        } else {
            None
        };
        if arns.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_token,
            });
        }
        let texts: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.catalog(what))
            .arg(&arns)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading {what}"), e))?;
        let mut items = Vec::with_capacity(texts.len());
        for (arn, text) in arns.iter().zip(texts) {
            if let Some(text) = text {
                items.push(from_json(format_args!("{what} record {arn}"), &text)?);
            }
        }
        Ok(Page { items, next_token })
    }

    async fn get_catalog<T: DeserializeOwned>(
        &self,
        what: &str,
        arn: &str,
    ) -> Result<Option<T>, StoreError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(self.keys.catalog(what))
            .arg(arn)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading {what} {arn}"), e))?;
        text.map(|t| from_json(format_args!("{what} record {arn}"), &t))
            .transpose()
    }

    async fn put_state_machine(
        &self,
        sm: StateMachineRecord,
        mode: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = to_json("state machine", &sm)?;
        let reply: String = self
            .scripts
            .put_state_machine
            .key(self.keys.catalog("state_machines"))
            .key(self.keys.catalog("state_machines_index"))
            .key(self.keys.revisions(&sm.arn))
            .arg(&sm.arn)
            .arg(json)
            .arg(&sm.revision_id)
            .arg(mode)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("writing state machine {}", sm.arn), e))?;
        match reply.as_str() {
            "ok" => Ok(()),
            "exists" => Err(StoreError::AlreadyExists(sm.arn)),
            "missing" => Err(StoreError::NotFound(sm.arn)),
            other => Err(StoreError::Backend(format!(
                "writing state machine {}: unexpected script reply {other:?}",
                sm.arn
            ))),
        }
    }

    /// Unlists executions whose records have expired from every index of their machine in
    /// `partition` (one pipeline: the indexes share the partition's slot).
    async fn prune_executions(
        &self,
        partition: u32,
        state_machine_arn: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.keys.machine_index(partition, state_machine_arn, None))
            .arg(members)
            .ignore();
        for s in STATUSES {
            pipe.cmd("ZREM")
                .arg(
                    self.keys
                        .machine_index(partition, state_machine_arn, Some(s)),
                )
                .arg(members)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| backend("pruning expired executions", e))
    }

    /// The next `want` entries of a state machine's list index after `cursor` (a
    /// `ZRANGEBYLEX` bound), merged over all partitions in lex order, each with its partition;
    /// and whether that exhausted every partition's index.
    async fn next_index_entries(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        cursor: &str,
        want: usize,
    ) -> Result<(Vec<(String, u32)>, bool), StoreError> {
        // Each partition's next `want` entries hold the overall next `want`.
        let per_partition = try_join_all((0..self.partitions).map(|p| {
            let mut conn = self.conn.clone();
            let index = self.keys.machine_index(p, state_machine_arn, status);
            async move {
                zrange_after(index, cursor, want)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .map(|members| members.into_iter().map(move |m| (m, p)))
            }
        }))
        .await
        .map_err(|e| backend(format!("listing executions of {state_machine_arn}"), e))?;
        let mut entries: Vec<(String, u32)> = per_partition.into_iter().flatten().collect();
        // Byte order, as Redis compares members of equal score.
        entries.sort_unstable();
        let exhausted = entries.len() < want;
        entries.truncate(want);
        Ok((entries, exhausted))
    }

    /// The record texts of list index entries (`None`: expired), in their order: one pipeline
    /// of `HGET`s per partition, the partitions concurrently.
    async fn read_indexed_records(
        &self,
        state_machine_arn: &str,
        entries: &[(String, u32)],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, (_, p)) in entries.iter().enumerate() {
            by_partition.entry(*p).or_default().push(i);
        }
        let mut pipes = Vec::with_capacity(by_partition.len());
        for (p, positions) in &by_partition {
            let mut pipe = redis::pipe();
            for &i in positions {
                let member = &entries[i].0;
                let arn = order_key_arn(member).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "corrupt execution index entry {member:?} of {state_machine_arn}"
                    ))
                })?;
                pipe.cmd("HGET")
                    .arg(self.keys.execution(*p, "exec", arn))
                    .arg("record");
            }
            pipes.push(pipe);
        }
        let replies = try_join_all(pipes.iter().map(|pipe| {
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<Vec<Option<String>>>(&mut conn).await }
        }))
        .await
        .map_err(|e| backend(format!("reading executions of {state_machine_arn}"), e))?;
        let mut texts = vec![None; entries.len()];
        for (positions, reply) in by_partition.values().zip(replies) {
            for (&i, text) in positions.iter().zip(reply) {
                texts[i] = text;
            }
        }
        Ok(texts)
    }

    /// Acks up to `up_to`; returns 1 if the execution left the partition's outbox index.
    async fn ack(
        &self,
        partition: u32,
        execution_arn: &str,
        up_to: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .ack_outbox
            .key(self.keys.execution(partition, "outbox", execution_arn))
            .key(self.keys.partition(partition, "outbox_index"))
            .arg(up_to)
            .arg(execution_arn)
            .invoke_retrying::<usize>(&mut conn)
            .await
            .map_err(|e| backend(format!("acking the outbox of {execution_arn}"), e))
    }

    async fn read_events(
        &self,
        arn: &str,
        start: i64,
        stop: i64,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let mut conn = self.conn.clone();
        let texts: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.execution(self.home(arn), "events", arn))
            .arg(start)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading history of {arn}"), e))?;
        texts
            .iter()
            .map(|t| from_json(format_args!("history event of {arn}"), t))
            .collect()
    }
}

impl Store for RedisStore {
    type SweepCursor = SweepCursor;

    async fn create_state_machine(&self, sm: StateMachineRecord) -> Result<(), StoreError> {
        self.put_state_machine(sm, "create").await
    }

    async fn update_state_machine(&self, sm: StateMachineRecord) -> Result<(), StoreError> {
        self.put_state_machine(sm, "update").await
    }

    async fn get_state_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>, StoreError> {
        self.get_catalog("state_machines", arn).await
    }

    async fn get_state_machine_revision(
        &self,
        arn: &str,
        revision_id: &str,
    ) -> Result<Option<StateMachineRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(self.keys.revisions(arn))
            .arg(revision_id)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading revision {revision_id} of {arn}"), e))?;
        text.map(|t| from_json(format_args!("revision {revision_id} of {arn}"), &t))
            .transpose()
    }

    async fn list_state_machines(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<StateMachineRecord>, StoreError> {
        self.list_catalog("state_machines", limit, next_token).await
    }

    async fn delete_state_machine(&self, arn: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: String = self
            .scripts
            .delete_state_machine
            .key(self.keys.catalog("state_machines"))
            .key(self.keys.catalog("state_machines_index"))
            .key(self.keys.revisions(arn))
            .arg(arn)
            .arg(self.retention_ms)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("deleting state machine {arn}"), e))?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound(arn.to_string())),
            other => Err(StoreError::Backend(format!(
                "deleting state machine {arn}: unexpected script reply {other:?}"
            ))),
        }
    }

    async fn create_activity(&self, a: ActivityRecord) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = to_json("activity", &a)?;
        let reply: String = self
            .scripts
            .create_activity
            .key(self.keys.catalog("activities"))
            .key(self.keys.catalog("activities_index"))
            .arg(&a.arn)
            .arg(json)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("creating activity {}", a.arn), e))?;
        match reply.as_str() {
            "ok" => Ok(()),
            "exists" => Err(StoreError::AlreadyExists(a.arn)),
            other => Err(StoreError::Backend(format!(
                "creating activity {}: unexpected script reply {other:?}",
                a.arn
            ))),
        }
    }

    async fn get_activity(&self, arn: &str) -> Result<Option<ActivityRecord>, StoreError> {
        self.get_catalog("activities", arn).await
    }

    async fn list_activities(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ActivityRecord>, StoreError> {
        self.list_catalog("activities", limit, next_token).await
    }

    async fn delete_activity(&self, arn: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: String = self
            .scripts
            .delete_activity
            .key(self.keys.catalog("activities"))
            .key(self.keys.catalog("activities_index"))
            .arg(arn)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("deleting activity {arn}"), e))?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound(arn.to_string())),
            other => Err(StoreError::Backend(format!(
                "deleting activity {arn}: unexpected script reply {other:?}"
            ))),
        }
    }

    async fn update_activity(&self, a: ActivityRecord) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = to_json("activity", &a)?;
        let reply: String = self
            .scripts
            .update_activity
            .key(self.keys.catalog("activities"))
            .arg(&a.arn)
            .arg(json)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("updating activity {}", a.arn), e))?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound(a.arn)),
            other => Err(StoreError::Backend(format!(
                "updating activity {}: unexpected script reply {other:?}",
                a.arn
            ))),
        }
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        self.commit_all(vec![c])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Backend("no reply to a commit".into())))
    }

    async fn commit_all(&self, commits: Vec<Commit>) -> Vec<Result<(), StoreError>> {
        // The commits that cannot even be encoded are not sent; the others still are: they
        // are independent.
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(commits.len());
        let mut cmds = Vec::new();
        let mut sent = Vec::new();
        for (i, c) in commits.iter().enumerate() {
            match self.commit_cmd(c) {
                Ok(cmd) => {
                    cmds.push(cmd);
                    sent.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        match self.send_commits(cmds).await {
            Ok(replies) => {
                for (reply, &i) in replies.into_iter().zip(&sent) {
                    results[i] = Some(commit_outcome(&commits[i], reply));
                }
            }
            // Nothing is known of any commit: each may or may not have landed (a replayed
            // input then finds its version moved on and is ignored).
            Err(e) => {
                for &i in &sent {
                    let arn = &commits[i].execution.execution_arn;
                    results[i] = Some(Err(backend(format!("committing {arn}"), &e)));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Backend("no reply to a commit".into()))))
            .collect()
    }

    async fn get_execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(self.keys.execution(self.home(arn), "exec", arn))
            .arg("record")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading execution {arn}"), e))?;
        text.map(|t| from_json(format_args!("execution record {arn}"), &t))
            .transpose()
    }

    async fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        let limit = limit.max(1);
        let mut cursor = lex_after(next_token.as_deref());
        let mut items: Vec<(String, ExecutionRecord)> = Vec::new();
        // Each partition has its own index; read them merged, in one order. Expired
        // executions leave index entries behind: skip and prune them, read on.
        loop {
            let want = limit + 1 - items.len();
            let (entries, exhausted) = self
                .next_index_entries(state_machine_arn, status, &cursor, want)
                .await?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            cursor = format!("({last}");
            let texts = self
                .read_indexed_records(state_machine_arn, &entries)
                .await?;
            let mut gone: BTreeMap<u32, Vec<String>> = BTreeMap::new();
            for ((member, partition), text) in entries.into_iter().zip(texts) {
                match text {
                    Some(t) => {
                        let record: ExecutionRecord =
                            from_json(format_args!("execution record in {member:?}"), &t)?;
                        // A commit may have moved it since the index was read.
                        if status.is_none_or(|s| record.status == s) {
                            items.push((member, record));
                        }
                    }
                    None => gone.entry(partition).or_default().push(member),
                }
            }
            for (partition, members) in gone {
                self.prune_executions(partition, state_machine_arn, &members)
                    .await?;
            }
            if items.len() > limit || exhausted {
                break;
            }
        }
        let next_token = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(m, _)| m.clone())
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|(_, r)| r).collect(),
            next_token,
        })
    }

    async fn history(
        &self,
        arn: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Event ids are dense from 1, so event `after_id + 1` sits at index `after_id`; the
        // first event read confirms it, else (never expected) fall back to a full scan.
        let start = i64::try_from(after_id).unwrap_or(i64::MAX);
        let stop = start.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX) - 1);
        let events = self.read_events(arn, start, stop).await?;
        match events.first() {
            Some(first) if first.id == after_id.saturating_add(1) => return Ok(events),
            None => {
                let last = self.read_events(arn, -1, -1).await?;
                if last.first().is_none_or(|e| e.id <= after_id) {
                    return Ok(Vec::new());
                }
            }
            Some(_) => {}
        }
        let all = self.read_events(arn, 0, -1).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.id > after_id)
            .take(limit)
            .collect())
    }

    async fn journal(&self, arn: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let texts: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.execution(self.home(arn), "journal", arn))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading journal of {arn}"), e))?;
        texts
            .iter()
            .map(|t| from_json(format_args!("journal entry of {arn}"), t))
            .collect()
    }

    async fn pending_outbox(
        &self,
        partition: u32,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        const CHUNK: usize = 100;
        // Entries read per execution in the pipelined read (most executions have one or two
        // pending); an execution that fills it has the rest read separately.
        const PER_EXECUTION: usize = 8;
        let mut conn = self.conn.clone();
        let index = self.keys.partition(partition, "outbox_index");
        let mut out = Vec::new();
        let mut offset = 0usize;
        while out.len() < limit {
            // Every listed execution has at least one entry (or is pruned), so no more
            // executions than entries still wanted are needed.
            let chunk = CHUNK.min(limit - out.len());
            let arns: Vec<String> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg(offset)
                .arg(offset + chunk - 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    backend(format!("reading outbox index of partition {partition}"), e)
                })?;
            if arns.is_empty() {
                break;
            }
            // The outboxes of the whole chunk in one round trip.
            let first = PER_EXECUTION.min(limit - out.len());
            let mut pipe = redis::pipe();
            for arn in &arns {
                pipe.cmd("ZRANGE")
                    .arg(self.keys.execution(partition, "outbox", arn))
                    .arg(0)
                    .arg(first - 1);
            }
            let outboxes: Vec<Vec<String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| backend(format!("reading outboxes of partition {partition}"), e))?;
            let mut pruned = 0;
            for (arn, mut members) in arns.iter().zip(outboxes) {
                if out.len() >= limit {
                    break;
                }
                if members.is_empty() {
                    // Acked meanwhile, or expired with its execution: unlist it.
                    pruned += self.ack(partition, arn, 0).await?;
                    continue;
                }
                let room = limit - out.len();
                let mut entries = Vec::with_capacity(members.len());
                for member in members.iter().take(room) {
                    entries.push(outbox_entry(arn, member)?);
                }
                if let Some(last) = entries
                    .last()
                    .filter(|_| members.len() == first && room > first)
                {
                    // The rest continues by seq (the score), not by rank: entries acked
                    // meanwhile must not make the read skip any, since the caller acks up to
                    // the highest seq it was given.
                    members = redis::cmd("ZRANGEBYSCORE")
                        .arg(self.keys.execution(partition, "outbox", arn))
                        .arg(format!("({}", last.seq))
                        .arg("+inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(room - entries.len())
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| backend(format!("reading outbox of {arn}"), e))?;
                    for member in &members {
                        entries.push(outbox_entry(arn, member)?);
                    }
                }
                out.extend(entries);
            }
            if arns.len() < chunk {
                break; // The index has nothing more.
            }
            offset += arns.len() - pruned;
        }
        Ok(out)
    }

    async fn ack_outbox(
        &self,
        partition: u32,
        execution_arn: &str,
        up_to: u64,
    ) -> Result<(), StoreError> {
        self.ack(partition, execution_arn, up_to).await.map(|_| ())
    }

    async fn due_timers(
        &self,
        partition: u32,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<TimerEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.partition(partition, "timer_index"))
            .arg("-inf")
            .arg(now_ms)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading timers of partition {partition}"), e))?;
        raw.into_iter()
            .map(|(member, score)| {
                let (arn, timer) = member
                    .rsplit_once('|')
                    .and_then(|(a, t)| Some((a, t.parse::<u64>().ok()?)))
                    .ok_or_else(|| {
                        StoreError::Backend(format!("corrupt timer {member:?} in Redis"))
                    })?;
                Ok(TimerEntry {
                    partition,
                    execution_arn: arn.to_string(),
                    timer,
                    fire_at_ms: score_to_ms("timer", score)?,
                })
            })
            .collect()
    }

    async fn next_timer(&self, partition: u32) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.partition(partition, "timer_index"))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(format!("reading timers of partition {partition}"), e))?;
        raw.first()
            .map(|(_, score)| score_to_ms("timer", *score))
            .transpose()
    }

    async fn acquire_lease(
        &self,
        partition: u32,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<Option<Fence>, StoreError> {
        if ttl_ms == 0 {
            return Err(StoreError::Backend(
                "lease ttl must be at least 1 ms".into(),
            ));
        }
        let mut conn = self.conn.clone();
        let token: Option<u64> = self
            .scripts
            .acquire_lease
            .key(self.keys.partition(partition, "lease"))
            .key(self.keys.partition(partition, "fence"))
            .arg(owner)
            .arg(ttl_ms)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| backend(format!("acquiring the lease of partition {partition}"), e))?;
        Ok(token.map(|token| Fence { partition, token }))
    }

    async fn renew_lease(
        &self,
        fence: Fence,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        if ttl_ms == 0 {
            return Err(StoreError::Backend(
                "lease ttl must be at least 1 ms".into(),
            ));
        }
        let mut conn = self.conn.clone();
        let renewed: i64 = self
            .scripts
            .renew_lease
            .key(self.keys.partition(fence.partition, "lease"))
            .arg(format!("{}|{owner}", fence.token))
            .arg(ttl_ms)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| {
                backend(
                    format!("renewing the lease of partition {}", fence.partition),
                    e,
                )
            })?;
        Ok(renewed == 1)
    }

    async fn swap_reply_route(&self, partition: u32, route: &str) -> Result<RouteSwap, StoreError> {
        // One hash (partition → route) in the catalog's slot, swapped and searched atomically.
        // (Lua's `false` is a nil reply.)
        let script = redis::Script::new(
            r#"
            local previous = redis.call('HGET', KEYS[1], ARGV[1])
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
            if not previous then return {false, 0} end
            for _, r in ipairs(redis.call('HVALS', KEYS[1])) do
              if r == previous then return {previous, 1} end
            end
            return {previous, 0}
            "#,
        );
        let mut conn = self.conn.clone();
        let (previous, in_use): (Option<String>, u8) = script
            .key(self.keys.catalog("reply_routes"))
            .arg(partition)
            .arg(route)
            .invoke_retrying(&mut conn)
            .await
            .map_err(|e| {
                backend(
                    format!("recording the reply route of partition {partition}"),
                    e,
                )
            })?;
        Ok(RouteSwap {
            previous,
            previous_in_use: in_use == 1,
        })
    }

    async fn heartbeat_member(&self, owner: &str, ttl_ms: u64) -> Result<u32, StoreError> {
        // One sorted set of members scored by "alive until" (server time, so coordinators'
        // clocks need not agree), trimmed and counted atomically.
        let script = redis::Script::new(
            r#"
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
            redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
            return redis.call('ZCARD', KEYS[1])
            "#,
        );
        let mut conn = self.conn.clone();
        script
            .key(self.keys.catalog("members"))
            .arg(owner)
            .arg(ttl_ms)
            .invoke_retrying::<u32>(&mut conn)
            .await
            .map_err(|e| backend("recording coordinator membership", e))
    }

    async fn sweep_indexes(
        &self,
        cursor: &mut SweepCursor,
        partitions: &std::collections::BTreeSet<u32>,
        budget: usize,
    ) -> Result<SweepStep, StoreError> {
        let step = self.sweep_step(cursor, partitions, budget.max(1)).await;
        if step.is_err() {
            // Start the pass over next time (a failover may have lost the set cursor); the
            // adoption handles its own errors and stays where it was.
            *cursor = SweepCursor {
                adoption: std::mem::take(&mut cursor.adoption),
                ..SweepCursor::default()
            };
        }
        step
    }

    async fn release_lease(&self, fence: Fence, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .release_lease
            .key(self.keys.partition(fence.partition, "lease"))
            .arg(format!("{}|{owner}", fence.token))
            .invoke_retrying::<i64>(&mut conn)
            .await
            .map_err(|e| {
                backend(
                    format!("releasing the lease of partition {}", fence.partition),
                    e,
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                        maxmemory:2097152\r\nmaxmemory_human:2.00M\r\n\
                        maxmemory_policy:noeviction\r\n";

    #[test]
    fn memory_is_read_from_info() {
        let parse = |text: &str| RedisMemory::parse("r:6379", &redis::InfoDict::new(text));
        let m = parse(INFO).expect("parse");
        assert_eq!(
            m,
            RedisMemory {
                node: "r:6379".into(),
                used_bytes: 1_048_576,
                max_bytes: 2_097_152,
                policy: "noeviction".into(),
            }
        );
        let missing = parse("used_memory:1\r\n").expect_err("no maxmemory");
        assert!(missing.contains("maxmemory"), "{missing}");
        let bad =
            parse(&INFO.replace("used_memory:1048576", "used_memory:x")).expect_err("not a number");
        assert!(bad.contains("used_memory"), "{bad}");
    }

    #[test]
    fn only_noeviction_is_safe_and_a_nearly_full_node_is_reported() {
        let node = |used: u64, max: u64, policy: &str| RedisMemory {
            node: "r:6379".into(),
            used_bytes: used,
            max_bytes: max,
            policy: policy.into(),
        };
        assert_eq!(node(10, 0, "noeviction").warnings(), Vec::<String>::new());
        assert_eq!(node(89, 100, "noeviction").warnings(), Vec::<String>::new());
        for policy in [
            "allkeys-lru",
            "volatile-ttl",
            "allkeys-random",
            "volatile-lfu",
        ] {
            let w = node(10, 0, policy).warnings();
            assert_eq!(w.len(), 1, "{policy}: {w:?}");
            assert!(
                w[0].contains(policy) && w[0].contains("noeviction"),
                "{w:?}"
            );
        }
        let full = node(90, 100, "noeviction").warnings();
        assert_eq!(full.len(), 1, "{full:?}");
        assert!(full[0].contains("90 %") && full[0].contains("--retention-days"));
        assert_eq!(node(95, 100, "allkeys-lru").warnings().len(), 2);
        // No limit: never "full", however much is used.
        assert_eq!(
            node(u64::MAX, 0, "noeviction").warnings(),
            Vec::<String>::new()
        );
    }
}
