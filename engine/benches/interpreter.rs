//! Criterion benchmarks of the pure interpreter, history recorded.
//!
//! Each benchmark reports *state transitions per second* as criterion's element throughput
//! (one element = one state entered, so a 100-state Pass chain is 100 elements):
//! `cargo bench -p stepline-engine --bench interpreter`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::hint::black_box;
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::history::{EventKind, HistoryEvent};
use stepline_engine::interp::{Context, Execution, ExecutionInfo, Input};
use stepline_engine::runner::RunIdentity;

fn pass_chain(n: usize) -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let mut s = json!({"Type": "Pass", "Result": {"step": i}, "ResultPath": "$.last"});
        if i + 1 < n {
            s["Next"] = json!(format!("S{}", i + 1));
        } else {
            s["End"] = json!(true);
        }
        states.insert(format!("S{i}"), s);
    }
    json!({"StartAt": "S0", "States": states})
}

/// A counter loop: Choice → Pass (increment via intrinsic) → Choice … `n` times.
fn choice_loop() -> Value {
    json!({
        "StartAt": "Check",
        "States": {
            "Check": {"Type": "Choice",
                      "Choices": [{"Variable": "$.i", "NumericLessThan": 100, "Next": "Inc"}],
                      "Default": "Done"},
            "Inc": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "Check"},
            "Done": {"Type": "Succeed"}
        }
    })
}

fn inline_map() -> Value {
    json!({
        "StartAt": "Map",
        "States": {
            "Map": {"Type": "Map", "ItemsPath": "$.items",
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Double",
                                      "States": {"Double": {"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}}},
                    "End": true}
        }
    })
}

/// Runs one execution to completion; returns its events.
fn run(def: &Definition, info: &ExecutionInfo, ctx: &Context) -> Vec<HistoryEvent> {
    let mut ex = Execution::new(info.clone());
    let step = ex
        .apply(def, &Input::Start, ctx)
        .expect("interpreter error");
    assert!(ex.is_finished());
    step.events
}

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, Value, Value)> = vec![
        ("pass_chain_100", pass_chain(100), json!({"order": 42})),
        ("choice_loop_100", choice_loop(), json!({"i": 0})),
        (
            "inline_map_1000",
            inline_map(),
            json!({"items": (0..1000).collect::<Vec<_>>()}),
        ),
    ];
    let mut group = c.benchmark_group("interpreter");
    for (name, def, input) in cases {
        let def = Definition::parse(&def, StateMachineType::Standard).expect("valid definition");
        let info = RunIdentity::default().info(input, 0, 1);
        let ctx = Context::default();
        let transitions = run(&def, &info, &ctx)
            .iter()
            .filter(|e| matches!(e.kind, EventKind::StateEntered { .. }))
            .count();
        group.throughput(Throughput::Elements(transitions as u64));
        group.bench_function(name, |b| b.iter(|| black_box(run(&def, &info, &ctx))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
