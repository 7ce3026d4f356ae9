//! A stand-alone activity worker for the order-processing state machine, for a deployed stack
//! (`docker compose up` runs it next to `stepline server`): it serves `charge-card`, `refund`,
//! `ship` and `notify` over RabbitMQ until SIGTERM/Ctrl-C, then drains gracefully.
//!
//! `STEPLINE_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p stepline-examples --bin order-worker`
//!
//! With `STEPLINE_NAMESPACE` set, it uses that namespace's queues, and with
//! `STEPLINE_QUEUE_TYPE=quorum` it declares quorum queues, as `stepline server` does with the
//! same settings. The activities must exist on the server (`stepline activities
//! create charge-card`, …): a Task on an activity nobody created fails, as on AWS.
//!
//! Charges above 1,000 are declined (`Payment.CardDeclined`), so the definition's Catch and
//! refund path can be exercised with a large `total`. At most 4 charges run at once (a
//! per-activity limit), within the worker's 16 tasks in flight.

use serde::Deserialize;
use serde_json::{json, Value};
use stepline_worker::{AmqpTransport, QueueType, TaskContext, TaskError, Worker};

#[derive(Deserialize)]
struct Charge {
    #[serde(rename = "orderId")]
    order_id: String,
    amount: f64,
}

async fn charge(ctx: TaskContext, c: Charge) -> Result<Value, TaskError> {
    if c.amount > 1000.0 {
        return Err(TaskError::new(
            "Payment.CardDeclined",
            format!("{} exceeds the card limit", c.amount),
        ));
    }
    Ok(json!({"chargeId": format!("ch_{}_{}", c.order_id, ctx.attempt()), "status": "captured"}))
}

async fn refund(_ctx: TaskContext, v: Value) -> Result<Value, TaskError> {
    Ok(json!({"refunded": true, "orderId": v["orderId"]}))
}

async fn ship(_ctx: TaskContext, v: Value) -> Result<Value, TaskError> {
    Ok(json!({"trackingId": format!("TRK-{}", v["orderId"].as_str().unwrap_or("unknown"))}))
}

async fn notify(_ctx: TaskContext, _v: Value) -> Result<Value, TaskError> {
    Ok(json!({"emailed": true}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let url = std::env::var("STEPLINE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let namespace = std::env::var("STEPLINE_NAMESPACE").unwrap_or_default();
    let queue_type: QueueType = match std::env::var("STEPLINE_QUEUE_TYPE") {
        Ok(text) => text.parse().map_err(anyhow::Error::msg)?,
        Err(_) => QueueType::Classic,
    };
    Worker::builder()
        .name("order-worker")
        .activity("charge-card", charge)
        .activity("refund", refund)
        .activity("ship", ship)
        .activity("notify", notify)
        .concurrency(16)
        // The payment gateway takes 4 calls at a time; further charges wait on RabbitMQ
        // (for this or another worker) while shipping and notifications use the other slots.
        .activity_concurrency("charge-card", 4)
        // The mail relay accepts 10 messages a second from us.
        .activity_rate_limit("notify", 10.0)
        .build(
            AmqpTransport::new(url)
                .namespace(&namespace)
                .queue_type(queue_type),
        )
        .run()
        .await?;
    Ok(())
}
