//! The `stepline` command line: `validate`, `run` and `conformance` (the pure engine),
//! `server` and `dev` (the runtime), `create`, `update`, `list`, `start`, `describe`,
//! `history`, `stop`, `redrive`, `activities` (a server's API, [`stepline_engine::client`]),
//! `health` (a probe for containers), `bench` (throughput and latency on real servers).
//!
//! Exit codes: 0 success; 1 the execution ended FAILED/TIMED_OUT/ABORTED, the definition is
//! invalid, or a benchmark target was missed; 2 a usage or input error (unreadable file, bad JSON, a Task nobody serves).

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

/// mimalloc instead of glibc's malloc: the coordinator allocates many small, short-lived
/// buffers on several threads, where glibc's arenas spent ~40% of the CPU in `stepline bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run a coordinator over RabbitMQ and Redis, with health and metrics over HTTP.
    Server {
        #[command(flatten)]
        servers: ServersArgs,
        #[command(flatten)]
        common: RuntimeArgs,
    },
    /// Run everything in one process with in-memory state (nothing to install).
    Dev {
        #[command(flatten)]
        common: RuntimeArgs,
    },
    /// Measure the RabbitMQ ceiling and the runtime's tasks/s, latency and Pass transitions/s
    /// on real servers, in throwaway namespaces deleted afterwards; print a table (exit 1 when
    /// a target is missed). Logs only warnings and progress unless RUST_LOG says otherwise.
    Bench {
        #[command(flatten)]
        servers: ServersArgs,
        /// Executions of the throughput runs (tasks/s and Pass transitions/s).
        #[arg(long, default_value_t = 2000)]
        executions: usize,
        /// Partitions of the measured coordinator (as `stepline server --partitions`).
        #[arg(long, default_value_t = 16)]
        partitions: u32,
        /// Concurrency (and prefetch) of the echo worker.
        #[arg(long, default_value_t = 64)]
        worker_concurrency: usize,
        /// Also write the six numbers to this file as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    #[command(flatten)]
    Remote(stepline_engine::client::Remote),
    /// Probe a server's /healthz and print its report (exit 0 when healthy); for container
    /// health checks.
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
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

#[derive(clap::Args, Clone)]
struct RuntimeArgs {
    #[arg(long, env = "STEPLINE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Partitions executions are hashed to; must be the same on every server.
    #[arg(long, env = "STEPLINE_PARTITIONS", default_value_t = 16)]
    partitions: u32,
    /// Secret that signs task tokens; must be the same on every server.
    #[arg(long, env = "STEPLINE_TOKEN_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// Days finished executions are kept.
    #[arg(long, env = "STEPLINE_RETENTION_DAYS", default_value_t = 90)]
    retention_days: u64,
    #[arg(long, env = "STEPLINE_ACCOUNT", default_value = "111111111111")]
    account: String,
    #[arg(long, env = "STEPLINE_REGION", default_value = "us-east-1")]
    region: String,
    /// Access keys the API accepts (AWS SigV4): ID:SECRET[,ID:SECRET…].
    #[arg(
        long = "access-keys",
        env = "STEPLINE_ACCESS_KEYS",
        hide_env_values = true
    )]
    access_keys: Option<String>,
    /// Serve the API without authentication (what `stepline dev` does when no keys are given).
    #[arg(long = "no-auth")]
    no_auth: bool,
    /// Namespace of Redis keys and RabbitMQ queues, to run several deployments on one stack
    /// (workers must use the same namespace).
    #[arg(long, env = "STEPLINE_NAMESPACE")]
    namespace: Option<String>,
}

/// The servers of `stepline server` and `stepline bench`.
#[derive(clap::Args, Debug)]
struct ServersArgs {
    #[arg(
        long,
        env = "STEPLINE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Redis: `redis://host:port/db` for one node, `redis+cluster://host:port[,host:port…]`
    /// for a Redis Cluster.
    #[arg(
        long,
        env = "STEPLINE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Type of the durable RabbitMQ queues declared: `classic`, or `quorum` (replicated by a
    /// RabbitMQ cluster; workers must declare the same). A queue keeps the type it was
    /// created with.
    #[arg(long, env = "STEPLINE_QUEUE_TYPE", default_value = "classic")]
    queue_type: stepline_worker::QueueType,
}

impl RuntimeArgs {
    fn config(&self, dev: bool) -> Result<stepline_engine::server::ServerConfig> {
        let access_keys = match &self.access_keys {
            Some(text) => {
                stepline_engine::api::ApiConfig::parse_keys(text).map_err(|e| anyhow!(e))?
            }
            None => Default::default(),
        };
        if !dev && access_keys.is_empty() && !self.no_auth {
            bail!("stepline server needs access keys for its API: --access-keys ID:SECRET (or STEPLINE_ACCESS_KEYS), or --no-auth to serve it unauthenticated");
        }
        let api = stepline_engine::api::ApiConfig {
            open: self.no_auth || access_keys.is_empty(),
            access_keys,
        };
        let token_key = match &self.token_key {
            Some(k) => k.clone().into_bytes(),
            None => {
                if !dev {
                    tracing::warn!("no STEPLINE_TOKEN_KEY set: using the development key; task tokens can be forged by anyone who knows it");
                }
                b"stepline-development-key".to_vec()
            }
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "stepline".into());
        Ok(stepline_engine::server::ServerConfig {
            listen: self.listen,
            coordinator: stepline_engine::runtime::coordinator::CoordinatorConfig {
                partitions: self.partitions.max(1),
                owner: format!("{host}-{}", std::process::id()),
                token_key,
                account: self.account.clone(),
                region: self.region.clone(),
                ..Default::default()
            },
            retention: std::time::Duration::from_secs(self.retention_days * 86_400),
            api,
            namespace: self.namespace.clone(),
        })
    }
}

fn init_tracing() {
    init_tracing_with("info");
}

/// Logs to stderr, filtered by RUST_LOG or else by `default_filter`.
fn init_tracing_with(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `GET url` over plain HTTP/1.1: whether it answered 200, and the body.
fn http_get(url: &str) -> Result<(bool, String)> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        std::net::TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let ok = response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((ok, body))
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
                stepline_engine::out!(
                    "{}",
                    serde_json::json!({"result": result, "diagnostics": diags})
                );
            } else if diags.is_empty() {
                stepline_engine::out!("{}: valid", definition_file.display());
            } else {
                for d in &diags {
                    stepline_engine::out!(
                        "{} {} at {}: {}",
                        d.severity,
                        d.code,
                        d.location.as_deref().unwrap_or("(document)"),
                        d.message
                    );
                }
                stepline_engine::out!("{errors} error(s)");
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
            stepline_engine::out!("{}", outcome.to_json(history));
            Ok(match outcome.status {
                ExecutionStatus::Succeeded => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
        Command::Server { servers, common } => {
            init_tracing();
            let config = common.config(false)?;
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signal();
                stepline_engine::server::run_server(
                    config,
                    &servers.amqp_url,
                    servers.queue_type,
                    &servers.redis_url,
                    shutdown,
                )
                .await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { common } => {
            init_tracing();
            let config = common.config(true)?;
            eprintln!(
                "stepline dev: in-memory store and broker, nothing persists; open to anyone who can reach http://{} (no authentication)",
                config.listen
            );
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signal();
                stepline_engine::server::run_dev(config, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            servers,
            executions,
            partitions,
            worker_concurrency,
            json,
        } => {
            // Per-task logs of the in-process worker would cost more than the work measured.
            init_tracing_with("warn,stepline_engine::bench=info");
            let config = stepline_engine::bench::BenchConfig {
                executions: executions.max(1),
                partitions: partitions.max(1),
                worker_concurrency: worker_concurrency.max(1),
                queue_type: servers.queue_type,
                ..stepline_engine::bench::BenchConfig::new(servers.amqp_url, servers.redis_url)
            };
            let report = runtime()?.block_on(stepline_engine::bench::run(&config))?;
            stepline_engine::out!("{}", report.table().trim_end_matches('\n'));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(if report.all_met() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Remote(remote) => Ok(runtime()?.block_on(stepline_engine::client::run(remote))),
        Command::Health { url } => {
            // The server's own report (status, and any warnings an operator must act on).
            let (ok, body) = http_get(&url)?;
            stepline_engine::out!("{}", body.trim_end());
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
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
                    stepline_engine::out!(
                        "HISTORY {}\n  {}",
                        c.file,
                        c.history_note.replace('\n', "\n  ")
                    );
                }
                for c in report.cases.iter().filter(|c| !c.passed) {
                    stepline_engine::out!(
                        "FAIL {} [{}]\n  {}",
                        c.file,
                        c.category,
                        c.detail.replace('\n', "\n  ")
                    );
                }
            }
            stepline_engine::out!("{}", report.table().trim_end_matches('\n'));
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
