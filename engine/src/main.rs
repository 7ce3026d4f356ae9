//! The `stepline` command line: `validate`, `run` and `conformance` (the runtime's `server`
//! and `dev` commands and the API client commands live with the runtime and control plane).
//!
//! Exit codes: 0 success; 1 the execution ended FAILED/TIMED_OUT/ABORTED or the definition is
//! invalid; 2 a usage or input error (unreadable file, bad JSON, a Task nobody serves).

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use stepline_engine::asl::{validate, Definition, StateMachineType};
use stepline_engine::conformance;
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::mock::MockCase;
use stepline_engine::runner::{run_once, RunIdentity};

#[derive(Parser)]
#[command(
    name = "stepline",
    version,
    about = "Stepline: run Amazon States Language state machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum MachineType {
    #[value(name = "STANDARD", alias = "standard")]
    Standard,
    #[value(name = "EXPRESS", alias = "express")]
    Express,
}

impl From<MachineType> for StateMachineType {
    fn from(t: MachineType) -> Self {
        match t {
            MachineType::Standard => StateMachineType::Standard,
            MachineType::Express => StateMachineType::Express,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a definition and print every diagnostic (exit 0 when valid).
    Validate {
        definition_file: PathBuf,
        #[arg(long = "type", value_enum, default_value = "STANDARD")]
        machine_type: MachineType,
        /// Print the diagnostics as JSON (ValidateStateMachineDefinition's shape).
        #[arg(long)]
        json: bool,
    },
    /// Run one execution in-process under virtual time and print its result as JSON.
    Run {
        definition_file: PathBuf,
        /// Execution input: JSON text, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// State machine name (used in ARNs and to pick the mock config entry).
        #[arg(long = "name", default_value = "StateMachine")]
        name: String,
        #[arg(long = "execution-name")]
        execution_name: Option<String>,
        #[arg(long = "type", value_enum, default_value = "STANDARD")]
        machine_type: MachineType,
        /// AWS Step Functions Local MockConfigFile.
        #[arg(long = "mock-config", requires = "test_case")]
        mock_config: Option<PathBuf>,
        #[arg(long = "test-case", requires = "mock_config")]
        test_case: Option<String>,
        /// Include the execution history in the output.
        #[arg(long)]
        history: bool,
        #[arg(long, default_value = "111111111111")]
        account: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// Run a directory of recorded AWS conformance cases and print a per-category table.
    Conformance {
        dir: PathBuf,
        /// Write every case's verdict to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Fail unless at least as many cases pass as the number in this file.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Print the reason of every failing case.
        #[arg(long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stepline: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            definition_file,
            machine_type,
            json,
        } => {
            let text = read(&definition_file)?;
            let diags = validate::validate_text(&text, machine_type.into());
            let errors = diags.iter().filter(|d| d.severity == "ERROR").count();
            if json {
                let result = if errors > 0 { "FAIL" } else { "OK" };
                println!(
                    "{}",
                    serde_json::json!({"result": result, "diagnostics": diags})
                );
            } else if diags.is_empty() {
                println!("{}: valid", definition_file.display());
            } else {
                for d in &diags {
                    println!(
                        "{} {} at {}: {}",
                        d.severity,
                        d.code,
                        d.location.as_deref().unwrap_or("(document)"),
                        d.message
                    );
                }
                println!("{errors} error(s)");
            }
            Ok(if errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run {
            definition_file,
            input,
            name,
            execution_name,
            machine_type,
            mock_config,
            test_case,
            history,
            account,
            region,
        } => {
            let text = read(&definition_file)?;
            let def = match Definition::parse_text(&text, machine_type.into()) {
                Ok(d) => d,
                Err(e) => {
                    for d in &e.0 {
                        eprintln!(
                            "{} {} at {}: {}",
                            d.severity,
                            d.code,
                            d.location.as_deref().unwrap_or("(document)"),
                            d.message
                        );
                    }
                    bail!("{} is not a valid state machine", definition_file.display());
                }
            };
            let input_text = match input.strip_prefix('@') {
                Some(file) => read(&PathBuf::from(file))?,
                None => input,
            };
            let input: Value = serde_json::from_str(&input_text)
                .map_err(|e| anyhow!("--input is not valid JSON: {e}"))?;
            let mock = match (mock_config, test_case) {
                (Some(f), Some(case)) => Some(MockCase::load(&read(&f)?, &name, &case)?),
                _ => None,
            };
            let start_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let identity = RunIdentity {
                account,
                region,
                state_machine_name: name,
                execution_name: execution_name.unwrap_or_else(|| format!("run-{start_ms}")),
                role_arn: None,
                express: matches!(machine_type, MachineType::Express),
                execution_arn: None,
            };
            let outcome = run_once(Arc::new(def), &identity, input, mock, start_ms)?;
            println!("{}", outcome.to_json(history));
            Ok(match outcome.status {
                ExecutionStatus::Succeeded => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
        Command::Conformance {
            dir,
            json,
            baseline,
            verbose,
        } => {
            let report = conformance::run_dir(&dir)
                .with_context(|| format!("cannot read cases from {}", dir.display()))?;
            if verbose {
                for c in report
                    .cases
                    .iter()
                    .filter(|c| c.history_exact == Some(false))
                {
                    println!(
                        "HISTORY {}\n  {}",
                        c.file,
                        c.history_note.replace('\n', "\n  ")
                    );
                }
                for c in report.cases.iter().filter(|c| !c.passed) {
                    println!(
                        "FAIL {} [{}]\n  {}",
                        c.file,
                        c.category,
                        c.detail.replace('\n', "\n  ")
                    );
                }
            }
            print!("{}", report.table());
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(b) = baseline {
                let want: usize = read(&b)?
                    .trim()
                    .parse()
                    .with_context(|| format!("{} must hold one number", b.display()))?;
                if report.passed < want {
                    eprintln!(
                        "conformance regressed: {} passed, the baseline in {} is {want}",
                        report.passed,
                        b.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
