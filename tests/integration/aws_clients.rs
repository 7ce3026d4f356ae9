//! Real AWS clients against Stepline's API: the Python boto3 + AWS CLI suite
//! (`tests/aws/test_api.py`) against `stepline dev` (in memory) and against `stepline server`
//! on the real Redis and RabbitMQ, and the Rust `aws-sdk-sfn` crate on the core path.
//!
//! Servers run in-process on a free port: `stepline dev` open (its default) and `stepline
//! server` and the SDK test with SigV4 access keys, so the suite's auth tests run for real. Python, boto3 and the AWS CLI must be installed (`.ci/test` installs them);
//! the tests fail loudly, never skip, when they are missing.

use crate::console::{free_port, http};
use aws_sdk_sfn as sfn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::api::ApiConfig;
use stepline_engine::runtime::broker_amqp::{AmqpBroker, AmqpConfig};
use stepline_engine::runtime::coordinator::CoordinatorConfig;
use stepline_engine::runtime::store_redis::RedisStore;
use stepline_engine::server::{run_dev, run_server_on, ServerConfig};
use tokio_util::sync::CancellationToken;

const KEY_ID: &str = "stepline-test";
const SECRET: &str = "s3cr3t-key";

fn config(listen: SocketAddr, namespace: Option<String>, open: bool) -> ServerConfig {
    ServerConfig {
        listen,
        coordinator: CoordinatorConfig {
            partitions: 4,
            owner: format!("aws-clients-{}", listen.port()),
            token_key: b"aws-clients-test-key".to_vec(),
            lease_ttl_ms: 3_000,
            timer_poll_ms: 50,
            ..Default::default()
        },
        retention: Duration::from_secs(3600),
        api: ApiConfig {
            access_keys: [(KEY_ID.to_string(), SECRET.to_string())].into(),
            open,
        },
        namespace,
    }
}

fn redis_url() -> String {
    std::env::var("STEPLINE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn amqp_url() -> String {
    std::env::var("STEPLINE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Waits until the server answers on its port.
async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the Stepline server did not start listening on {addr}");
}

/// Runs the Python suite against `endpoint`; panics with its output when it fails.
async fn python_suite(endpoint: String, auth: bool) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("aws/test_api.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .env("STEPLINE_ENDPOINT", &endpoint)
            .env("STEPLINE_AUTH", if auth { "1" } else { "0" })
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
            .env("AWS_PAGER", "")
            .output()
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| {
        panic!("python3 must be installed with boto3 and awscli (.ci/test installs them): {e}")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the boto3 / AWS CLI suite failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    // unittest prints "Ran N tests" and "OK"; make sure it really ran something.
    assert!(
        stderr.contains("\nOK") && !stderr.contains("Ran 0 tests"),
        "unexpected unittest output:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli_against_stepline_dev() {
    let addr = free_port();
    let shutdown = CancellationToken::new();
    // Open, as `stepline dev` runs by default (the server variant below requires SigV4).
    let server = tokio::spawn(run_dev(config(addr, None, true), shutdown.clone()));
    wait_listening(addr).await;
    python_suite(format!("http://{addr}"), false).await;
    shutdown.cancel();
    server.await.expect("join").expect("dev server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli_against_stepline_server_on_redis_and_rabbitmq() {
    let addr = free_port();
    let ns = format!("api-{}-{}", std::process::id(), addr.port());
    let shutdown = CancellationToken::new();
    let config = config(addr, Some(ns.clone()), false);
    // The server runs on adapters this test keeps, so that afterwards the broker deletes every
    // queue the server declared (task queues of activities the suite deleted included).
    let partitions = config.coordinator.partitions;
    let store = Arc::new(
        RedisStore::connect(&redis_url(), &format!("{ns}:"), Duration::from_secs(3600))
            .await
            .expect("connect to Redis (is it running?)")
            .with_partitions(partitions),
    );
    let broker = Arc::new(
        AmqpBroker::connect(
            AmqpConfig::new(amqp_url())
                .with_namespace(ns.clone())
                .with_callback_routing(config.coordinator.token_key.clone(), partitions),
        )
        .await
        .expect("connect to RabbitMQ (is it running?)"),
    );
    let server = tokio::spawn(run_server_on(
        config,
        store.clone(),
        broker.clone(),
        shutdown.clone(),
    ));
    wait_listening(addr).await;
    python_suite(format!("http://{addr}"), true).await;

    // The operator's view: healthy, Redis's memory per node (no warning: this Redis does not
    // evict and has no maxmemory).
    let health = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).expect("healthz JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health.get("warnings"), None, "{health}");
    let metrics = http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    let metrics = metrics.body;
    let memory = store.memory().await.expect("INFO memory");
    for family in [
        "stepline_redis_used_memory_bytes",
        "stepline_redis_maxmemory_bytes",
        "stepline_redis_evicting",
    ] {
        let sample = format!("{family}{{node=\"{}\"}} ", memory[0].node);
        assert!(metrics.contains(&sample), "no {sample} in:\n{metrics}");
    }
    assert!(metrics.contains(&format!(
        "stepline_redis_evicting{{node=\"{}\"}} 0\n",
        memory[0].node
    )));

    shutdown.cancel();
    server
        .await
        .expect("join")
        .expect("server on Redis and RabbitMQ");
    // Delete what the run created.
    store
        .purge_namespace()
        .await
        .expect("purge the Redis namespace");
    broker
        .delete_namespace()
        .await
        .expect("delete the RabbitMQ namespace");
}

/// The SDK prefixes the host with `sync-` for StartSyncExecution and TestState (AWS's
/// `sync-states` endpoint); a local endpoint has no such host, so strip it before signing.
#[derive(Debug)]
struct StripHostPrefix;

impl sfn::config::Intercept for StripHostPrefix {
    fn name(&self) -> &'static str {
        "StripHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut sfn::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &sfn::config::RuntimeComponents,
        _cfg: &mut sfn::config::ConfigBag,
    ) -> Result<(), sfn::error::BoxError> {
        let request = context.request_mut();
        let uri = request.uri().to_string();
        if let Some(rest) = uri.strip_prefix("http://sync-") {
            request.set_uri(format!("http://{rest}"))?;
        }
        Ok(())
    }
}

fn sdk(endpoint: &str, secret: &str) -> sfn::Client {
    let conf = sfn::Config::builder()
        .behavior_version(sfn::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(sfn::config::Region::new("us-east-1"))
        .credentials_provider(sfn::config::Credentials::new(
            KEY_ID, secret, None, None, "test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(StripHostPrefix)
        .build();
    sfn::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_sdk_sfn_core_path() {
    let addr = free_port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run_dev(config(addr, None, false), shutdown.clone()));
    wait_listening(addr).await;
    let endpoint = format!("http://{addr}");
    let client = sdk(&endpoint, SECRET);

    // A wrong secret is refused with AWS's code.
    let err = sdk(&endpoint, "wrong")
        .list_state_machines()
        .send()
        .await
        .expect_err("a wrong secret must be refused");
    assert_eq!(
        sfn::error::ProvideErrorMetadata::code(&err),
        Some("InvalidSignatureException"),
        "{err:?}"
    );

    let activity = client
        .create_activity()
        .name("sdk-charge")
        .send()
        .await
        .expect("create activity")
        .activity_arn;
    let definition = serde_json::json!({
        "StartAt": "Charge",
        "States": {
            "Charge": {
                "Type": "Task", "Resource": activity, "HeartbeatSeconds": 10,
                "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                "ResultPath": "$.charge", "End": true
            }
        }
    });
    let sm = client
        .create_state_machine()
        .name("sdk-orders")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::111111111111:role/stepline")
        .send()
        .await
        .expect("create state machine")
        .state_machine_arn;
    let exec = client
        .start_execution()
        .state_machine_arn(&sm)
        .name("order-1")
        .input(r#"{"amount": 42}"#)
        .send()
        .await
        .expect("start")
        .execution_arn;

    // An activity worker on the SDK: fail once, then succeed.
    for attempt in 1..=2 {
        let task = client
            .get_activity_task()
            .activity_arn(&activity)
            .worker_name("sdk-worker")
            .send()
            .await
            .expect("get activity task");
        let token = task.task_token.expect("a task is waiting");
        let input: serde_json::Value =
            serde_json::from_str(task.input.as_deref().unwrap_or("null")).expect("input JSON");
        assert_eq!(input["amount"], 42);
        client
            .send_task_heartbeat()
            .task_token(&token)
            .send()
            .await
            .expect("heartbeat");
        if attempt == 1 {
            client
                .send_task_failure()
                .task_token(&token)
                .error("Flaky")
                .cause("try again")
                .send()
                .await
                .expect("failure");
        } else {
            client
                .send_task_success()
                .task_token(&token)
                .output(r#"{"charged": true}"#)
                .send()
                .await
                .expect("success");
            // The task is closed now: a replayed token is refused.
            let err = client
                .send_task_success()
                .task_token(&token)
                .output("{}")
                .send()
                .await
                .expect_err("a replayed token must be refused");
            assert!(
                err.as_service_error()
                    .is_some_and(|e| e.is_task_timed_out()),
                "{err:?}"
            );
        }
    }

    let mut status = String::new();
    for _ in 0..100 {
        let d = client
            .describe_execution()
            .execution_arn(&exec)
            .send()
            .await
            .expect("describe");
        status = d.status.as_str().to_string();
        if status != "RUNNING" {
            let output: serde_json::Value =
                serde_json::from_str(d.output.as_deref().unwrap_or("null")).expect("output");
            assert_eq!(
                output,
                serde_json::json!({"amount": 42, "charge": {"charged": true}})
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "SUCCEEDED");
    let history = client
        .get_execution_history()
        .execution_arn(&exec)
        .send()
        .await
        .expect("history");
    let types: Vec<String> = history
        .events
        .iter()
        .map(|e| e.r#type.as_str().to_string())
        .collect();
    for expected in [
        "ExecutionStarted",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityFailed",
        "ActivitySucceeded",
        "ExecutionSucceeded",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing in {types:?}"
        );
    }
    let started = history
        .events
        .iter()
        .find_map(|e| e.activity_started_event_details.as_ref())
        .expect("ActivityStarted details");
    assert_eq!(started.worker_name.as_deref(), Some("sdk-worker"));

    // Error codes come back as the SDK's typed errors.
    let err = client
        .describe_execution()
        .execution_arn(format!(
            "{}:missing",
            sm.replace(":stateMachine:", ":execution:")
        ))
        .send()
        .await
        .expect_err("missing execution");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_execution_does_not_exist()),
        "{err:?}"
    );

    // StartSyncExecution on an EXPRESS machine, through the host-prefix interceptor.
    let express = client
        .create_state_machine()
        .name("sdk-express")
        .r#type(sfn::types::StateMachineType::Express)
        .definition(
            r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"sum.$":"States.MathAdd($.a, $.b)"},"End":true}}}"#,
        )
        .role_arn("arn:aws:iam::111111111111:role/stepline")
        .send()
        .await
        .expect("create express")
        .state_machine_arn;
    let sync = client
        .start_sync_execution()
        .state_machine_arn(&express)
        .input(r#"{"a": 2, "b": 3}"#)
        .send()
        .await
        .expect("start sync");
    assert_eq!(sync.status.as_str(), "SUCCEEDED");
    assert_eq!(sync.output.as_deref(), Some(r#"{"sum":5}"#));

    shutdown.cancel();
    server.await.expect("join").expect("dev server");
}
