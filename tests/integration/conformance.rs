//! Conformance ratchet: runs the recorded-AWS corpus (`/work/shared/conformance/cases`, i.e.
//! `shared/conformance/cases` next to the workspace) through
//! [`stepline_engine::conformance::run_dir`] and fails if fewer cases pass than the baseline
//! recorded in `tests/conformance-baseline.txt`. Raise the baseline when the engine improves;
//! never lower it to make this test pass.

use std::path::Path;

const CASES_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/cases"
);
const BASELINE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance-baseline.txt");

fn baseline() -> usize {
    let text = std::fs::read_to_string(BASELINE_FILE)
        .unwrap_or_else(|e| panic!("cannot read the conformance baseline {BASELINE_FILE}: {e}"));
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{BASELINE_FILE} holds no number"));
    line.parse().unwrap_or_else(|e| {
        panic!("{BASELINE_FILE}: '{line}' is not a count of passing cases: {e}")
    })
}

#[test]
fn conformance_does_not_regress() {
    let dir = Path::new(CASES_DIR);
    assert!(
        dir.is_dir(),
        "the conformance corpus is missing: expected a directory of case files at {} \
         (shared/conformance/cases beside the workspace root)",
        dir.display()
    );
    let want = baseline();
    let report = stepline_engine::conformance::run_dir(dir)
        .unwrap_or_else(|e| panic!("reading the corpus at {} failed: {e}", dir.display()));
    assert!(
        report.passed + report.failed > 0,
        "the conformance corpus at {} holds no *.json case",
        dir.display()
    );
    if report.passed < want {
        let failing: Vec<String> = report
            .cases
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "  {} [{}]: {}",
                    c.file,
                    c.category,
                    c.detail.lines().next().unwrap_or("")
                )
            })
            .collect();
        panic!(
            "conformance regressed: {} cases pass, the baseline in {BASELINE_FILE} is {want}\n\n{}\nfailing cases:\n{}",
            report.passed,
            report.table(),
            failing.join("\n")
        );
    }
    // Print the table anyway (visible with --nocapture) so improvements are easy to record.
    println!("{}", report.table());
    if report.passed > want {
        println!(
            "conformance improved: {} pass, baseline {want}; raise {BASELINE_FILE}",
            report.passed
        );
    }
}
