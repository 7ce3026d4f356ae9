//! The `stepline server` and `stepline dev` processes: a coordinator over real adapters
//! (Redis + RabbitMQ) or in-memory ones, plus one HTTP listener serving the AWS Step
//! Functions API on `POST /` ([`crate::api`]), the web console on `GET /` ([`crate::console`]),
//! `/healthz` and `/metrics`.
//!
//! Shutdown is a feature: on the cancellation token (SIGTERM/Ctrl-C in the binary) the
//! listener stops accepting, the coordinator stops serving partitions and releases its leases.

use crate::api::{Api, ApiConfig};
use crate::runtime::broker::Broker;
use crate::runtime::broker_amqp::{AmqpBroker, AmqpConfig};
use crate::runtime::broker_memory::MemoryBroker;
use crate::runtime::clock::SystemClock;
use crate::runtime::coordinator::CoordinatorConfig;
use crate::runtime::service::Service;
use crate::runtime::store::Store;
use crate::runtime::store_memory::MemoryStore;
use crate::runtime::store_redis::{RedisMemory, RedisStore};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stepline_worker::hub::InProcessHub;
use tokio_util::sync::CancellationToken;

/// Settings shared by `server` and `dev`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub coordinator: CoordinatorConfig,
    /// How long finished executions are kept.
    pub retention: Duration,
    /// Authentication of the API.
    pub api: ApiConfig,
    /// Keeps this deployment's Redis keys (`<ns>:`) and RabbitMQ queues apart from others on
    /// the same servers; `None` uses the default names (`stepline:` keys).
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::runtime::store::StoreError),
    #[error("broker: {0}")]
    Broker(#[from] crate::runtime::broker::BrokerError),
    #[error("http server: {0}")]
    Http(std::io::Error),
}

/// The latest reading of the Redis nodes' memory ([`watch_memory`] keeps it).
type MemoryReading = Arc<std::sync::Mutex<Option<Vec<RedisMemory>>>>;

/// What the HTTP handlers can see, independent of the adapters in use.
trait Health: Send + Sync + 'static {
    fn probe(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
    fn dead_lettered(&self) -> u64;
    fn owner(&self) -> &str;
    fn partitions(&self) -> u32;
    fn owned_partitions(&self) -> usize;
    /// The coordinator's execution and task metrics (Prometheus text).
    fn runtime_metrics(&self) -> String;
    /// The Redis nodes' memory as last read; `None` without Redis or before a reading.
    fn store_memory(&self) -> Option<Vec<RedisMemory>>;
}

struct ServiceHealth<S: Store, B: Broker> {
    service: Arc<Service<S, B, SystemClock>>,
    memory: MemoryReading,
}

impl<S: Store, B: Broker> Health for ServiceHealth<S, B> {
    fn probe(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            self.service
                .coordinator()
                .store()
                .get_activity("arn:aws:states:health:0:activity:probe")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn dead_lettered(&self) -> u64 {
        self.service.coordinator().broker().dead_lettered()
    }

    fn owner(&self) -> &str {
        &self.service.coordinator().config().owner
    }

    fn partitions(&self) -> u32 {
        self.service.coordinator().config().partitions
    }

    fn owned_partitions(&self) -> usize {
        self.service.coordinator().owned_partitions().len()
    }

    fn runtime_metrics(&self) -> String {
        self.service.coordinator().metrics().render()
    }

    fn store_memory(&self) -> Option<Vec<RedisMemory>> {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn healthz(State(h): State<Arc<dyn Health>>) -> impl IntoResponse {
    match h.probe().await {
        Ok(()) => {
            let mut body = serde_json::json!({"status": "ok", "owner": h.owner(), "partitions": h.partitions()});
            // Healthy still (a restart would not help), but what an operator must fix.
            let warnings: Vec<String> = h
                .store_memory()
                .iter()
                .flatten()
                .flat_map(RedisMemory::warnings)
                .collect();
            if !warnings.is_empty() {
                body["warnings"] = warnings.into();
            }
            (StatusCode::OK, Json(body))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": e})),
        ),
    }
}

async fn metrics(State(h): State<Arc<dyn Health>>) -> impl IntoResponse {
    use crate::runtime::metrics::single;
    let mut text = h.runtime_metrics();
    single(
        &mut text,
        "stepline_dead_lettered_total",
        "counter",
        "Messages this process dead-lettered because they could not be parsed.",
        h.dead_lettered(),
    );
    single(
        &mut text,
        "stepline_partitions",
        "gauge",
        "Partitions executions are hashed to (the same on every server).",
        u64::from(h.partitions()),
    );
    single(
        &mut text,
        "stepline_partitions_owned",
        "gauge",
        "Partitions this server serves now.",
        h.owned_partitions() as u64,
    );
    if let Some(nodes) = h.store_memory() {
        memory_metrics(&mut text, &nodes);
    }
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// The Redis memory gauges of `/metrics`, a sample per node.
fn memory_metrics(text: &mut String, nodes: &[RedisMemory]) {
    use crate::runtime::metrics::family;
    let per_node = |value: fn(&RedisMemory) -> u64| -> Vec<_> {
        nodes
            .iter()
            .map(|n| (vec![("node", n.node.clone())], value(n)))
            .collect()
    };
    family(
        text,
        "stepline_redis_used_memory_bytes",
        "gauge",
        "Memory the Redis node uses (used_memory; the same on every server).",
        &per_node(|n| n.used_bytes),
    );
    family(
        text,
        "stepline_redis_maxmemory_bytes",
        "gauge",
        "The Redis node's maxmemory (0: no limit).",
        &per_node(|n| n.max_bytes),
    );
    family(
        text,
        "stepline_redis_evicting",
        "gauge",
        "1 when the Redis node's maxmemory-policy deletes keys under memory pressure (executions would be lost; use noeviction).",
        &per_node(|n| u64::from(n.evicts())),
    );
}

/// How often the server reads Redis's memory (for `/metrics`, `/healthz` and its log).
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Until `shutdown`: reads the Redis nodes' memory now and every [`MEMORY_CHECK_EVERY`] into
/// `reading`, and logs its warnings ([`RedisMemory::warnings`]) whenever which ones apply
/// changes (a policy that evicts at error level: it loses data).
async fn watch_memory(redis: Arc<RedisStore>, reading: MemoryReading, shutdown: CancellationToken) {
    // The warnings that applied at the last reading, per node: evicts, nearly full (their
    // texts hold figures that change at every reading).
    let mut applying: Vec<(String, bool, bool)> = Vec::new();
    let mut unreadable_said = false;
    loop {
        let nodes = match redis.memory().await {
            Ok(nodes) => {
                unreadable_said = false;
                let now: Vec<_> = nodes
                    .iter()
                    .map(|n| (n.node.clone(), n.evicts(), n.fullness_warning().is_some()))
                    .filter(|(_, evicts, full)| *evicts || *full)
                    .collect();
                if now != applying {
                    for node in &nodes {
                        if let Some(warning) = node.eviction_warning() {
                            tracing::error!("{warning}");
                        }
                        if let Some(warning) = node.fullness_warning() {
                            tracing::warn!("{warning}");
                        }
                    }
                    if now.is_empty() {
                        tracing::info!("Redis memory: no warnings any more");
                    }
                    applying = now;
                }
                Some(nodes)
            }
            Err(e) => {
                // Managed Redis may not allow INFO: said once per outage, then quiet.
                if !unreadable_said {
                    tracing::warn!(error = %e, "cannot read Redis's memory; /metrics and /healthz do not show it until it can");
                    unreadable_said = true;
                }
                None
            }
        };
        // An old reading would pass for the current one.
        *reading.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MEMORY_CHECK_EVERY) => {}
        }
    }
}

async fn serve<S: Store, B: Broker>(
    config: &ServerConfig,
    service: Service<S, B, SystemClock>,
    redis: Option<Arc<RedisStore>>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let service = Arc::new(service);
    let memory = MemoryReading::default();
    if let Some(redis) = redis {
        tokio::spawn(watch_memory(redis, memory.clone(), shutdown.clone()));
    }
    let health: Arc<dyn Health> = Arc::new(ServiceHealth {
        service: service.clone(),
        memory,
    });
    let api = Api::new(service.clone(), config.api.clone());
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(health)
        .merge(crate::console::router(api.clone()))
        .merge(
            Router::new()
                .route("/", post(crate::api::handle::<S, B, SystemClock>))
                .with_state(api),
        );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Listen(config.listen, e))?;
    if config.api.open {
        tracing::warn!(listen = %config.listen, "the API is OPEN: requests are not authenticated (configure access keys to require AWS SigV4)");
    }
    tracing::info!(listen = %config.listen, owner = %config.coordinator.owner, console = %format!("http://{}/", config.listen), "stepline listening");
    let stop = shutdown.clone();
    tokio::spawn({
        let (service, shutdown) = (Arc::downgrade(&service), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            if let Some(service) = service.upgrade() {
                service.drain();
            }
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(ServerError::Http)?;
    // The HTTP side is down; stop the coordinator and release its partitions.
    if let Ok(service) = Arc::try_unwrap(service) {
        service.shutdown().await;
    }
    Ok(())
}

/// `stepline server`: Redis + RabbitMQ.
pub async fn run_server(
    config: ServerConfig,
    amqp_url: &str,
    queue_type: crate::runtime::broker_amqp::QueueType,
    redis_url: &str,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let prefix = match &config.namespace {
        Some(ns) => format!("{ns}:"),
        None => "stepline:".to_string(),
    };
    // Reads by ARN find an execution in the partition its ARN hashes to: the store must
    // hash into the coordinators' partitions.
    let store = RedisStore::connect(redis_url, &prefix, config.retention)
        .await?
        .with_partitions(config.coordinator.partitions);
    let mut amqp = AmqpConfig::new(amqp_url)
        .with_queue_type(queue_type)
        .with_callback_routing(
            config.coordinator.token_key.clone(),
            config.coordinator.partitions,
        );
    if let Some(ns) = &config.namespace {
        amqp = amqp.with_namespace(ns.clone());
    }
    let broker = AmqpBroker::connect(amqp).await?;
    run_server_on(config, Arc::new(store), Arc::new(broker), shutdown).await
}

/// `stepline server` on adapters the caller built (its own connection settings, or to keep
/// the broker for `AmqpBroker::delete_namespace` afterwards: it deletes exactly the queues this
/// broker declared). The store must hash into `config.coordinator.partitions`
/// (`RedisStore::with_partitions`), and the broker should route callbacks to them
/// (`AmqpConfig::with_callback_routing`).
pub async fn run_server_on(
    config: ServerConfig,
    store: Arc<RedisStore>,
    broker: Arc<AmqpBroker>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let service = Service::start(
        store.clone(),
        broker,
        Arc::new(SystemClock),
        config.coordinator.clone(),
    );
    serve(&config, service, Some(store), shutdown).await
}

/// `stepline dev`: everything in memory, in one process.
pub async fn run_dev(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let hub = InProcessHub::new();
    let store = MemoryStore::with_system_clock(config.retention);
    let broker = MemoryBroker::new(
        hub,
        config.coordinator.token_key.clone(),
        config.coordinator.partitions,
    );
    let service = Service::start(
        Arc::new(store),
        Arc::new(broker),
        Arc::new(SystemClock),
        config.coordinator.clone(),
    );
    serve(&config, service, None, shutdown).await
}
