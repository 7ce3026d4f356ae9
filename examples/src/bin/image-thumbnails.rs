//! Image thumbnails with a Map state:
//! `cargo run -p stepline-examples --bin image-thumbnails [-- --amqp-url URL --redis-url URL]`.
//!
//! The state machine (`examples/image-thumbnails/definition.asl.json`) maps a `resize-image`
//! activity over the images of `examples/image-thumbnails/input.json` with `MaxConcurrency` 2
//! (never more than two iterations run at once, even though the worker could take four) and
//! `ToleratedFailureCount` 1. One image, `corrupt.jpg`, is not an image at all: its worker
//! fails with `Image.Corrupt`, its iteration fails (`MapIterationFailed`), the Map tolerates it
//! and the execution SUCCEEDS; the Report state then lists the thumbnails made and the failure
//! (`{"Error", "Cause"}` in the failed item's slot of the Map's result).
//!
//! A second, smaller batch with two corrupt images exceeds the tolerance: the Map, and the
//! execution, FAIL with `States.ExceedToleratedFailureThreshold`.

use anyhow::Result;
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::history::EventKind;
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::runtime::broker::Broker;
use stepline_engine::runtime::store::Store;
use stepline_examples::{say, Checks, Example, Finished, Stack, StackArgs};
use stepline_worker::{TaskContext, TaskError, Worker};

const DEFINITION: &str = include_str!("../../image-thumbnails/definition.asl.json");
const INPUT: &str = include_str!("../../image-thumbnails/input.json");

#[derive(Parser)]
#[command(about = "Image thumbnails: Map with MaxConcurrency and ToleratedFailureCount")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stepline_examples::main(&ImageThumbnails, &Args::parse().stack).await
}

/// What the Map's ItemSelector sends each iteration.
#[derive(Deserialize)]
struct Resize {
    bucket: String,
    size: u32,
    index: usize,
    image: Image,
}

#[derive(Deserialize)]
struct Image {
    key: String,
    bytes: u64,
}

/// Resizes in flight right now, and the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

async fn resize(ctx: TaskContext, r: Resize, in_flight: Arc<InFlight>) -> Result<Value, TaskError> {
    let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    in_flight.most.fetch_max(now, Ordering::SeqCst);
    let key = &r.image.key;
    say(
        "resize-worker",
        format!(
            "item {} {key}: resizing to {}px ({now} in flight, attempt {})",
            r.index,
            r.size,
            ctx.attempt()
        ),
    );
    // Reading the header takes a moment; resizing takes longer for bigger images.
    let corrupt = key.contains("corrupt");
    let work = if corrupt {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(300 + (r.image.bytes / 10_000).min(500))
    };
    let result = tokio::select! {
        _ = tokio::time::sleep(work) => {
            if corrupt {
                say("resize-worker", format!("item {} {key}: not an image", r.index));
                Err(TaskError::new(
                    "Image.Corrupt",
                    format!("{key}: no JPEG start-of-image marker (file is {} bytes)", r.image.bytes),
                ))
            } else {
                let thumbnail = format!("s3://{}/thumbnails/{}/{key}", r.bucket, r.size);
                say("resize-worker", format!("item {} {key}: wrote {thumbnail}", r.index));
                Ok(json!({"key": key, "thumbnail": thumbnail}))
            }
        }
        // The engine gave the task up (here: the Map failed and aborted this iteration).
        _ = ctx.cancelled() => {
            say("resize-worker", format!("item {} {key}: cancelled by the engine", r.index));
            Err(TaskError::new("Resize.Cancelled", format!("{key}: abandoned")))
        }
    };
    in_flight.now.fetch_sub(1, Ordering::SeqCst);
    result
}

struct ImageThumbnails;

impl Example for ImageThumbnails {
    const NAME: &'static str = "image-thumbnails";

    async fn run<S: Store, B: Broker>(
        &self,
        stack: &Stack<S, B>,
        checks: &mut Checks,
    ) -> Result<()> {
        stack.create_activity("resize-image").await?;
        let in_flight = Arc::new(InFlight::default());
        let seen = in_flight.clone();
        // The worker could run 4 resizes at once; the Map's MaxConcurrency allows only 2.
        let worker = Worker::builder()
            .concurrency(4)
            .activity("resize-image", move |ctx: TaskContext, r: Resize| {
                resize(ctx, r, seen.clone())
            });
        stack.spawn_worker("resize-worker", worker);
        let sm = stack
            .create_state_machine("ImageThumbnails", DEFINITION)
            .await?;

        println!("\n### Batch 1: five images, one of them corrupt (1 failure tolerated)");
        let input: Value = serde_json::from_str(INPUT)?;
        let batch = stack
            .run_execution(&sm, "holiday-batch", input.clone())
            .await?;
        batch.print();
        report_failures(&batch, &input);
        check_batch(&batch, &in_flight, checks);

        println!("\n### Batch 2: two corrupt images out of three (more than the 1 tolerated)");
        let input = json!({
            "bucket": "holiday-photos",
            "thumbnailSize": 128,
            "images": [
                {"key": "corrupt-1.jpg", "bytes": 12},
                {"key": "corrupt-2.jpg", "bytes": 9},
                {"key": "pier.jpg", "bytes": 1500000}
            ]
        });
        let too_many = stack.run_execution(&sm, "bad-batch", input.clone()).await?;
        too_many.print();
        report_failures(&too_many, &input);
        checks.expect(
            too_many.status == ExecutionStatus::Failed
                && too_many.error.as_deref() == Some("States.ExceedToleratedFailureThreshold"),
            "bad-batch FAILED with States.ExceedToleratedFailureThreshold",
        );
        checks.expect(
            too_many.count("MapIterationFailed") == 2,
            "both corrupt images' iterations failed",
        );
        Ok(())
    }
}

/// Which items failed and why: the history's `MapIterationFailed` events, each with the task
/// failure found on that iteration's chain of events, and the error objects in the output.
fn report_failures(f: &Finished, input: &Value) {
    println!("Failed items (from the history):");
    let failed = f.failed_iterations();
    if failed.is_empty() {
        println!("  none");
    }
    for it in &failed {
        let key = input["images"][it.index]["key"].as_str().unwrap_or("?");
        println!(
            "  item {} ({key}) of {}: {} — {}",
            it.index,
            it.map_state,
            it.error.as_deref().unwrap_or("?"),
            it.cause.as_deref().unwrap_or("no cause")
        );
    }
    if let Some(failures) = f.output_at("/failures") {
        println!("Failed items (from the output's $.failures): {failures}");
    }
    println!();
}

fn check_batch(f: &Finished, in_flight: &InFlight, checks: &mut Checks) {
    checks.expect(
        f.status == ExecutionStatus::Succeeded,
        "holiday-batch SUCCEEDED despite the corrupt image",
    );
    let failed = f.failed_iterations();
    checks.expect(
        failed.len() == 1
            && failed[0].index == 2
            && failed[0].error.as_deref() == Some("Image.Corrupt"),
        "exactly one iteration failed: item 2 (corrupt.jpg) with Image.Corrupt",
    );
    let thumbnails = f
        .output_at("/thumbnails")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    checks.expect(
        thumbnails == 4,
        format!("4 thumbnails were made ({thumbnails})"),
    );
    checks.expect(
        f.output_at("/failures/0/Error") == Some(&json!("Image.Corrupt")),
        "the failed item's slot of the Map result holds its Error and Cause",
    );
    // Replay the iteration events: how many iterations ran at once, at most.
    let (mut running, mut most) = (0usize, 0usize);
    for e in &f.history {
        if let EventKind::MapIteration { status, .. } = &e.kind {
            if status == "Started" {
                running += 1;
                most = most.max(running);
            } else {
                running = running.saturating_sub(1);
            }
        }
    }
    checks.expect(
        most == 2,
        format!(
            "the history never has more than MaxConcurrency 2 iterations running (at most {most})"
        ),
    );
    let worker_most = in_flight.most.load(Ordering::SeqCst);
    checks.expect(
        worker_most <= 2,
        format!(
            "the worker (concurrency 4) never had more than 2 resizes in flight ({worker_most})"
        ),
    );
}
