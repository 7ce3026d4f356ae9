//! Human approval with a `.waitForTaskToken` task:
//! `cargo run -p stepline-examples --bin human-approval [-- --amqp-url URL --redis-url URL]`.
//!
//! The state machine (`examples/human-approval/definition.asl.json`) has a Task whose Resource
//! is `arn:aws:states:::sqs:sendMessage.waitForTaskToken`. Stepline publishes such a task's
//! message (its Parameters, here with `$$.Task.Token` in `MessageBody.taskToken`) to the queue
//! named after the resource, then waits — not for a worker's reply but for someone holding the
//! token to call back. `HeartbeatSeconds` 2 makes it give up on a request nobody keeps alive;
//! `TimeoutSeconds` 5 is the deadline even for one that is kept alive; both are caught and go
//! to Escalate.
//!
//! Three parties, all in this process:
//!
//! * the **notifier**, a worker-SDK `Worker` serving the resource (`.activity(RESOURCE, …)`),
//!   receives each message and "e-mails" the approver the request and its token. Its handler's
//!   success reply only confirms the delivery (`TaskStarted`); it does not complete the task;
//! * the approvers' **inbox** keeps every open request alive with a heartbeat each second
//!   (`SendTaskHeartbeat`) and sends the decision (`SendTaskSuccess`) — through
//!   `Service::send_task_success` embedded, through the worker SDK's `TaskTokenClient` over
//!   RabbitMQ on the servers;
//! * two requests: alice approves `req-1` after about 3 s (longer than `HeartbeatSeconds`:
//!   the heartbeats keep it alive), bob never answers `req-2`, whose `TimeoutSeconds` expires
//!   after 5 s — `States.Timeout`, caught, Escalate.

use anyhow::Result;
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use stepline_engine::history::{EventKind, HistoryEvent};
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::runtime::broker::Broker;
use stepline_engine::runtime::store::Store;
use stepline_examples::{say, Checks, Example, Stack, StackArgs};
use stepline_worker::{TaskContext, TaskError, Worker};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

const DEFINITION: &str = include_str!("../../human-approval/definition.asl.json");

/// The callback resource; its task messages wait on the queue `stepline.task.<RESOURCE>`.
const RESOURCE: &str = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";

/// How long alice looks at a request before approving it (longer than HeartbeatSeconds 2).
const ALICE_REVIEWS_FOR: Duration = Duration::from_millis(2500);

#[derive(Parser)]
#[command(about = "Human approval: .waitForTaskToken, heartbeats, TimeoutSeconds and Catch")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stepline_examples::main(&HumanApproval, &Args::parse().stack).await
}

/// The `MessageBody` the state's Parameters build.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalRequest {
    request_id: String,
    amount: f64,
    approver: String,
    task_token: String,
}

/// What the notifier receives: the state's Parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsMessage {
    queue_url: String,
    message_body: ApprovalRequest,
}

/// A request sitting in an approver's inbox.
struct Open {
    request: ApprovalRequest,
    since: Instant,
    /// Whether the body's `taskToken` is the token of the task the notifier received.
    token_matches: bool,
}

struct HumanApproval;

impl Example for HumanApproval {
    const NAME: &'static str = "human-approval";

    async fn run<S: Store, B: Broker>(
        &self,
        stack: &Stack<S, B>,
        checks: &mut Checks,
    ) -> Result<()> {
        let sm = stack
            .create_state_machine("ExpenseApproval", DEFINITION)
            .await?;
        let (to_inbox, inbox_rx) = mpsc::unbounded_channel();
        let notifier =
            Worker::builder().activity(RESOURCE, move |ctx: TaskContext, m: SqsMessage| {
                let to_inbox = to_inbox.clone();
                async move { notify(ctx, m, &to_inbox) }
            });
        stack.spawn_worker("notifier", notifier);
        say(
            "setup",
            format!("decisions go back via {}", stack.callback_route()),
        );
        let done = CancellationToken::new();
        let requests = async {
            println!("\n### Two expense requests: alice approves req-1, bob never answers req-2");
            let req1 = stack
                .start(
                    &sm,
                    "expense-req-1",
                    json!({"requestId": "req-1", "amount": 800, "approver": "alice"}),
                )
                .await?;
            let req2 = stack
                .start(
                    &sm,
                    "expense-req-2",
                    json!({"requestId": "req-2", "amount": 12000, "approver": "bob"}),
                )
                .await?;
            let finished = (stack.finish(&req1).await, stack.finish(&req2).await);
            done.cancel();
            Ok::<_, anyhow::Error>((finished.0?, finished.1?))
        };
        let (tokens_match, (approved, ignored)) =
            tokio::try_join!(inbox(stack, inbox_rx, &done), requests)?;

        approved.print();
        ignored.print();
        checks.expect(
            tokens_match.len() == 2 && tokens_match.iter().all(|m| *m),
            "each message carried its task token in MessageBody.taskToken ($$.Task.Token)",
        );
        checks.expect(
            approved.count("TaskStarted") == 1 && ignored.count("TaskStarted") == 1,
            "the notifier's replies only started the tasks (TaskStarted), they did not complete them",
        );
        checks.expect(
            approved.status == ExecutionStatus::Succeeded
                && approved.output_at("/status") == Some(&json!("APPROVED"))
                && approved.output_at("/by") == Some(&json!("alice")),
            "req-1 SUCCEEDED: APPROVED by alice",
        );
        let waited = waited_ms(&approved.history, "TaskSucceeded");
        checks.expect(
            waited.is_some_and(|ms| ms > 2_000) && approved.count("TaskTimedOut") == 0,
            format!(
                "req-1 waited longer than HeartbeatSeconds 2 without timing out: heartbeats kept \
                 it alive ({} ms)",
                waited.unwrap_or(0)
            ),
        );
        checks.expect(
            ignored.status == ExecutionStatus::Succeeded
                && ignored.output_at("/status") == Some(&json!("ESCALATED"))
                && ignored.output_at("/reason") == Some(&json!("States.Timeout")),
            "req-2 was caught and ESCALATED with States.Timeout",
        );
        let waited = waited_ms(&ignored.history, "TaskTimedOut");
        checks.expect(
            waited.is_some_and(|ms| (5_000..8_000).contains(&ms)),
            format!(
                "req-2 timed out after TimeoutSeconds 5 despite its heartbeats ({} ms)",
                waited.unwrap_or(0)
            ),
        );
        Ok(())
    }
}

/// Milliseconds from the (only) `TaskScheduled` to the first event of type `until`.
fn waited_ms(history: &[HistoryEvent], until: &str) -> Option<i64> {
    let scheduled = history
        .iter()
        .find(|e| matches!(e.kind, EventKind::TaskScheduled { .. }))?;
    let end = history.iter().find(|e| e.kind.type_name() == until)?;
    Some(end.timestamp_ms - scheduled.timestamp_ms)
}

fn short(token: &str) -> &str {
    token.get(token.len().saturating_sub(10)..).unwrap_or(token)
}

/// The notifier's handler: "e-mails" the approver and hands the request to the inbox. Its
/// `Ok` (an SQS-like receipt) only tells the engine the message was handled.
fn notify(
    ctx: TaskContext,
    m: SqsMessage,
    inbox: &mpsc::UnboundedSender<Open>,
) -> Result<Value, TaskError> {
    let request = m.message_body;
    say(
        "notifier",
        format!(
            "e-mailed {}: \"approve {} for ${}?\" (queue {}, task token …{})",
            request.approver,
            request.request_id,
            request.amount,
            m.queue_url.rsplit('/').next().unwrap_or(&m.queue_url),
            short(&request.task_token)
        ),
    );
    let token_matches = request.task_token == ctx.task_token();
    inbox
        .send(Open {
            request,
            since: Instant::now(),
            token_matches,
        })
        .map_err(|_| TaskError::new("Notifier.InboxClosed", "the inbox is gone"))?;
    Ok(json!({"MessageId": format!("msg-{}", short(ctx.task_token()))}))
}

/// What an approver decides about an open request, if anything yet.
fn decide(open: &Open) -> Option<Value> {
    match open.request.approver.as_str() {
        "alice" if open.since.elapsed() >= ALICE_REVIEWS_FOR => {
            Some(json!({"approved": true, "by": "alice", "comment": "fine for the team offsite"}))
        }
        _ => None, // still reviewing; bob is on holiday and never answers
    }
}

/// The approvers' inbox: each second, every open request either gets its decision
/// (`SendTaskSuccess`) or a heartbeat (`SendTaskHeartbeat`: still open, someone is on it).
/// Returns, per request received, whether its body carried its task's token.
async fn inbox<S: Store, B: Broker>(
    stack: &Stack<S, B>,
    mut arrivals: mpsc::UnboundedReceiver<Open>,
    done: &CancellationToken,
) -> Result<Vec<bool>> {
    let mut tokens_match = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(Instant::now() + second, second);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = done.cancelled() => return Ok(tokens_match),
            Some(arrived) = arrivals.recv() => {
                tokens_match.push(arrived.token_matches);
                say(&arrived.request.approver, format!("{} is in my inbox", arrived.request.request_id));
                open.push(arrived);
            }
            _ = tick.tick() => {
                let mut still_open = Vec::new();
                for o in open.drain(..) {
                    let r = &o.request;
                    match decide(&o) {
                        Some(decision) => {
                            stack.send_task_success(&r.task_token, decision.clone()).await?;
                            say(&r.approver, format!("approved {}: SendTaskSuccess {decision}", r.request_id));
                        }
                        None => {
                            stack.send_task_heartbeat(&r.task_token).await?;
                            say(&r.approver, format!(
                                "{} still open after {:.1} s: SendTaskHeartbeat",
                                r.request_id,
                                o.since.elapsed().as_secs_f64()
                            ));
                            still_open.push(o);
                        }
                    }
                }
                open = still_open;
            }
        }
    }
}
