//! Order processing, run in-process under virtual time with mocked task responses:
//! `cargo run -p stepline-examples --bin order-processing`.
//!
//! Shows Choice, Retry with backoff on a flaky payment gateway, Catch to a refund path and a
//! Parallel fulfilment, one test case of `examples/order-processing/mock-config.json` each.

use anyhow::{Context, Result};
use std::sync::Arc;
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::history::EventKind;
use stepline_engine::mock::MockCase;
use stepline_engine::runner::{run_once, RunIdentity};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/order-processing");

fn main() -> Result<()> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("{DIR}/{f}")).with_context(|| format!("reading {f}"))
    };
    let def = Arc::new(Definition::parse_text(
        &read("definition.asl.json")?,
        StateMachineType::Standard,
    )?);
    let input: serde_json::Value = serde_json::from_str(&read("input.json")?)?;
    let mocks = read("mock-config.json")?;
    for case in ["HappyPath", "FlakyGateway", "CardDeclined"] {
        println!("=== test case {case}");
        let mock = MockCase::load(&mocks, "OrderProcessing", case)?;
        let identity = RunIdentity {
            state_machine_name: "OrderProcessing".into(),
            execution_name: format!("order-{case}"),
            ..RunIdentity::default()
        };
        let out = run_once(def.clone(), &identity, input.clone(), Some(mock), 0)?;
        for e in &out.history {
            let t = e.timestamp_ms as f64 / 1000.0;
            match &e.kind {
                EventKind::StateEntered { name, .. } => println!("  t={t:>5.1}s  enter {name}"),
                EventKind::ActivityFailed { error, .. } => {
                    println!(
                        "  t={t:>5.1}s    task failed: {}",
                        error.as_deref().unwrap_or("?")
                    )
                }
                EventKind::ActivitySucceeded { .. } => println!("  t={t:>5.1}s    task succeeded"),
                _ => {}
            }
        }
        println!("  => {}\n", out.to_json(false));
    }
    Ok(())
}
