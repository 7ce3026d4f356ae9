//! Order processing on the Stepline runtime, with real workers:
//! `cargo run -p stepline-examples --bin order-processing [-- --amqp-url URL --redis-url URL]`.
//!
//! The state machine (`examples/order-processing/definition.asl.json`) validates the order
//! (Choice), charges the card (a Task with Retry and backoff on `Payment.GatewayBusy` and a
//! Catch of everything else), refunds on failure, and ships and notifies in a Parallel.
//! Two workers serve its four activities. Three orders run one after the other:
//!
//! * `o-1001`: the payment gateway is busy for its first two calls (the worker fails with
//!   `Payment.GatewayBusy`), so ChargeCard is retried after 1 s and then 2 s and the third
//!   attempt succeeds; ship and notify then run side by side. SUCCEEDED.
//! * `o-1002`: the card is declined (`Payment.CardDeclined`, not retried); the Catch goes to
//!   Refund and the execution FAILS with `Order.PaymentFailed`.
//! * `o-1003`: a total of 0 makes the Choice go to its Default, RejectOrder: FAILED with
//!   `Order.Invalid`, no task runs.
//!
//! `--mock` runs instead the original virtual-time demo: no workers, the same definition run
//! in-process against the test cases of `examples/order-processing/mock-config.json` (AWS Step
//! Functions Local format), with simulated timestamps.

use anyhow::Result;
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::history::EventKind;
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::mock::MockCase;
use stepline_engine::runner::{run_once, RunIdentity};
use stepline_engine::runtime::broker::Broker;
use stepline_engine::runtime::store::Store;
use stepline_examples::{say, Checks, Example, Finished, Stack, StackArgs};
use stepline_worker::{TaskContext, TaskError, Worker};

const DEFINITION: &str = include_str!("../../order-processing/definition.asl.json");
const INPUT: &str = include_str!("../../order-processing/input.json");
const MOCK_CONFIG: &str = include_str!("../../order-processing/mock-config.json");

/// A test card number that always succeeds, and one that is always declined.
const GOOD_CARD: &str = "4242 4242 4242 4242";
const DECLINED_CARD: &str = "4000 0000 0000 0002";

#[derive(Parser)]
#[command(about = "Order processing: Choice, Retry with backoff, Catch, Parallel")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
    /// Run the virtual-time mock-config demo instead (no workers, no servers).
    #[arg(long)]
    mock: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.mock {
        return match mock_demo() {
            Ok(checks) => checks.exit_code(),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    stepline_examples::main(&OrderProcessing, &args.stack).await
}

/// What ChargeCard's Parameters send the worker.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Charge {
    order_id: String,
    amount: f64,
    card: String,
}

/// What Refund's Parameters send the worker.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refund {
    order_id: String,
    reason: String,
}

/// What Ship and Notify get: the whole order (only its id matters here).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    order_id: String,
}

struct OrderProcessing;

impl Example for OrderProcessing {
    const NAME: &'static str = "order-processing";

    async fn run<S: Store, B: Broker>(
        &self,
        stack: &Stack<S, B>,
        checks: &mut Checks,
    ) -> Result<()> {
        for activity in ["charge-card", "refund", "ship", "notify"] {
            stack.create_activity(activity).await?;
        }
        // The gateway is overloaded for its first two calls, whoever makes them.
        let gateway_calls = Arc::new(AtomicU32::new(0));
        let payments = Worker::builder()
            .activity("charge-card", move |ctx: TaskContext, c: Charge| {
                let call = gateway_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let who = format!(
                        "charging {} {:.2} (attempt {})",
                        c.order_id,
                        c.amount,
                        ctx.attempt()
                    );
                    if call <= 2 {
                        say("payments-worker", format!("{who}: gateway busy (503)"));
                        return Err(TaskError::new(
                            "Payment.GatewayBusy",
                            "gateway returned 503",
                        ));
                    }
                    if c.card == DECLINED_CARD {
                        say("payments-worker", format!("{who}: card declined"));
                        return Err(TaskError::new(
                            "Payment.CardDeclined",
                            format!(
                                "card ending {} was declined: insufficient funds",
                                last4(&c.card)
                            ),
                        ));
                    }
                    say("payments-worker", format!("{who}: captured"));
                    Ok(json!({"chargeId": format!("ch_{}", c.order_id), "status": "captured"}))
                }
            })
            .activity("refund", |_ctx: TaskContext, r: Refund| async move {
                say(
                    "payments-worker",
                    format!("refunding {} because {}", r.order_id, r.reason),
                );
                Ok::<_, TaskError>(json!({"refunded": true}))
            });
        stack.spawn_worker("payments-worker", payments);
        let fulfilment = Worker::builder()
            .activity("ship", |_ctx: TaskContext, order: Order| async move {
                say("fulfilment-worker", format!("packing {} …", order.order_id));
                tokio::time::sleep(Duration::from_millis(300)).await;
                say("fulfilment-worker", format!("shipped {}", order.order_id));
                Ok::<_, TaskError>(json!({"trackingId": format!("TRK-{}", order.order_id)}))
            })
            .activity("notify", |_ctx: TaskContext, order: Order| async move {
                say(
                    "fulfilment-worker",
                    format!("e-mailing the customer of {} …", order.order_id),
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                say(
                    "fulfilment-worker",
                    format!("e-mailed the customer of {}", order.order_id),
                );
                Ok::<_, TaskError>(json!({"emailed": true}))
            });
        stack.spawn_worker("fulfilment-worker", fulfilment);
        let sm = stack
            .create_state_machine("OrderProcessing", DEFINITION)
            .await?;

        println!("\n### Order o-1001: the gateway is busy twice, the third attempt succeeds");
        let input: Value = serde_json::from_str(INPUT)?;
        let ok = stack.run_execution(&sm, "o-1001", input).await?;
        ok.print();
        check_flaky_order(&ok, checks);

        println!("\n### Order o-1002: the card is declined, the Catch refunds");
        let declined = json!({"orderId": "o-1002", "total": 120.0, "card": DECLINED_CARD});
        let declined = stack.run_execution(&sm, "o-1002", declined).await?;
        declined.print();
        check_declined_order(&declined, checks);

        println!("\n### Order o-1003: a total of 0 is rejected by the Choice");
        let invalid = json!({"orderId": "o-1003", "total": 0, "card": GOOD_CARD});
        let invalid = stack.run_execution(&sm, "o-1003", invalid).await?;
        invalid.print();
        checks.expect(
            invalid.status == ExecutionStatus::Failed
                && invalid.error.as_deref() == Some("Order.Invalid"),
            "o-1003 FAILED with Order.Invalid (Choice → Default → RejectOrder)",
        );
        checks.expect(
            !invalid.entered("ChargeCard"),
            "o-1003 never charged the card",
        );
        Ok(())
    }
}

fn last4(card: &str) -> &str {
    card.get(card.len().saturating_sub(4)..).unwrap_or(card)
}

/// Times (ms) at which ChargeCard's attempts were scheduled.
fn charge_attempts(f: &Finished) -> Vec<i64> {
    f.history
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ActivityScheduled { resource, .. } if resource.ends_with(":charge-card")))
        .map(|e| e.timestamp_ms)
        .collect()
}

fn check_flaky_order(f: &Finished, checks: &mut Checks) {
    checks.expect(f.status == ExecutionStatus::Succeeded, "o-1001 SUCCEEDED");
    let attempts = charge_attempts(f);
    checks.expect(
        attempts.len() == 3 && f.count("ActivityFailed") == 2,
        format!(
            "ChargeCard ran 3 times, the first 2 failing (ran {} times)",
            attempts.len()
        ),
    );
    let gaps: Vec<i64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    checks.expect(
        gaps.len() == 2 && gaps[0] >= 1_000 && gaps[1] >= 2_000,
        format!("retries waited IntervalSeconds 1 then ×BackoffRate 2 = 2 s (gaps {gaps:?} ms)"),
    );
    checks.expect(
        f.output_at("/payment/status") == Some(&json!("captured")),
        "the payment result landed in $.payment",
    );
    checks.expect(
        f.output_at("/fulfilment/shipment/trackingId").is_some()
            && f.output_at("/fulfilment/notification/emailed") == Some(&json!(true)),
        "the Parallel shipped and notified ($.fulfilment)",
    );
}

fn check_declined_order(f: &Finished, checks: &mut Checks) {
    checks.expect(
        f.status == ExecutionStatus::Failed && f.error.as_deref() == Some("Order.PaymentFailed"),
        "o-1002 FAILED with Order.PaymentFailed",
    );
    checks.expect(
        charge_attempts(f).len() == 1,
        "a declined card is not retried (Retry only matches Payment.GatewayBusy)",
    );
    checks.expect(f.entered("Refund"), "the Catch sent o-1002 to Refund");
    checks.expect(
        f.cause.as_deref().is_some_and(|c| c.contains("declined")),
        "the failure's cause is the worker's (CausePath $.failure.Cause)",
    );
}

/// The virtual-time demo: each mock test case run in-process, no workers.
fn mock_demo() -> Result<Checks> {
    stepline_examples::init_tracing();
    println!("=== Stepline example `order-processing --mock`");
    println!("    mode: in-process, virtual time, task results from mock-config.json\n");
    let def = Arc::new(Definition::parse_text(
        DEFINITION,
        StateMachineType::Standard,
    )?);
    let input: Value = serde_json::from_str(INPUT)?;
    let mut checks = Checks::default();
    for (case, expected) in [
        ("HappyPath", ExecutionStatus::Succeeded),
        ("FlakyGateway", ExecutionStatus::Succeeded),
        ("CardDeclined", ExecutionStatus::Failed),
    ] {
        println!("### test case {case}");
        let mock = MockCase::load(MOCK_CONFIG, "OrderProcessing", case)?;
        let identity = RunIdentity {
            state_machine_name: "OrderProcessing".into(),
            execution_name: format!("order-{case}"),
            ..RunIdentity::default()
        };
        let out = run_once(def.clone(), &identity, input.clone(), Some(mock), 0)?;
        let finished = Finished::from_outcome(&identity.execution_name, out);
        finished.print();
        checks.expect(
            finished.status == expected,
            format!("{case} ended {}", expected.as_str()),
        );
    }
    Ok(checks)
}
