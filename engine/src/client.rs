//! The `stepline` CLI's server commands (`create`, `update`, `list`, `start --wait`,
//! `describe`, `history --follow`, `stop`, `redrive`, `activities`): a small AWS JSON-protocol
//! client over HTTP/1.1 that signs requests with SigV4 (credentials from the usual
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` variables), and human-readable tables, or
//! `--json` for scripts.
//!
//! Errors print the AWS code and message (`ExecutionDoesNotExist: …`) and exit with 2 (usage or
//! request error); a waited-for execution that does not succeed exits 1.

/// Writes one line of a command's output to stdout. A reader that went away
/// (`stepline start … --wait | head`) ends the process quietly with status 141, as SIGPIPE ends
/// a Unix tool (128 + 13), where `println!` would panic on the broken pipe; any other write
/// error ends it with status 2 and a message.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("stepline: cannot write the output: {e}");
        std::process::exit(2);
    }
}

/// `println!` through [`print_line`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::client::print_line(format_args!($($arg)*))
    };
}

use crate::api::sigv4;
use crate::history::json_text;
use anyhow::{anyhow, bail, Context as _, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// An error answered by the server, with AWS's code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Talks to a Stepline (or AWS) endpoint with the Step Functions JSON protocol.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    credentials: Option<(String, String)>,
    region: String,
}

impl Client {
    /// `endpoint` is `http://host:port` (TLS is left to a proxy in front of the server).
    pub fn new(
        endpoint: &str,
        credentials: Option<(String, String)>,
        region: &str,
    ) -> Result<Self> {
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            anyhow!("the endpoint must be an http:// URL (put TLS in a proxy in front): {endpoint}")
        })?;
        let host = rest.trim_end_matches('/').to_string();
        if host.is_empty() || host.contains('/') {
            bail!("the endpoint must be http://HOST:PORT, got {endpoint}");
        }
        Ok(Client {
            host,
            credentials,
            region: region.to_string(),
        })
    }

    /// Credentials and region from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` (unsigned requests when no key is set).
    pub fn from_env(endpoint: &str) -> Result<Self> {
        let id = std::env::var("AWS_ACCESS_KEY_ID").ok();
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok();
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        Client::new(endpoint, id.zip(secret), &region)
    }

    /// Calls `action` with `body`; an AWS error response becomes [`AwsError`].
    pub async fn call(&self, action: &str, body: &Value) -> Result<Value> {
        let payload = body.to_string().into_bytes();
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            (
                "content-type".to_string(),
                crate::api::CONTENT_TYPE.to_string(),
            ),
            (
                "x-amz-target".to_string(),
                format!("AWSStepFunctions.{action}"),
            ),
        ];
        if let Some((id, secret)) = &self.credentials {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let extra = sigv4::sign(
                &sigv4::SignedRequest {
                    method: "POST",
                    path: "/",
                    query: "",
                    headers: &headers,
                    body: &payload,
                },
                id,
                secret,
                &self.region,
                "states",
                now,
            );
            headers.extend(extra);
        }
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .with_context(|| format!("cannot connect to the Stepline server at {}", self.host))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = hyper::Request::builder().method("POST").uri("/");
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("{action} request to {}", self.host))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({"__type": "InvalidResponse", "message": String::from_utf8_lossy(&bytes)}),
        );
        if status == 200 {
            return Ok(value);
        }
        let code = value
            .get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| format!("HTTP{status}"));
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Err(AwsError {
            status,
            code,
            message,
        }
        .into())
    }
}

/// Options shared by the server commands.
#[derive(clap::Args, Clone, Debug)]
pub struct RemoteArgs {
    /// The Stepline server (also `STEPLINE_ENDPOINT`).
    #[arg(
        long,
        env = "STEPLINE_ENDPOINT",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub endpoint: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands that talk to a server.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Remote {
    /// Create a state machine from a definition file.
    Create {
        #[command(flatten)]
        remote: RemoteArgs,
        name: String,
        definition_file: PathBuf,
        #[arg(long = "type", default_value = "STANDARD")]
        machine_type: String,
        #[arg(long = "role-arn")]
        role_arn: Option<String>,
    },
    /// Replace a state machine's definition (running executions keep theirs).
    Update {
        #[command(flatten)]
        remote: RemoteArgs,
        /// State machine name or ARN.
        state_machine: String,
        definition_file: PathBuf,
    },
    /// List state machines, or the executions of one.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// State machine name or ARN: list its executions.
        state_machine: Option<String>,
        /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Start an execution.
    Start {
        #[command(flatten)]
        remote: RemoteArgs,
        /// State machine name or ARN.
        state_machine: String,
        /// Input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Execution name (a second start with the same name and input is the same execution).
        #[arg(long)]
        name: Option<String>,
        /// Follow the execution's states as they run and wait for its end (exit 1 unless it
        /// succeeds).
        #[arg(long)]
        wait: bool,
    },
    /// Describe an execution (by ARN) or a state machine (by name or ARN).
    Describe {
        #[command(flatten)]
        remote: RemoteArgs,
        target: String,
        /// With a state machine: print its definition too.
        #[arg(long)]
        definition: bool,
    },
    /// An execution's event history.
    History {
        #[command(flatten)]
        remote: RemoteArgs,
        execution_arn: String,
        /// Keep printing new events until the execution ends.
        #[arg(long)]
        follow: bool,
    },
    /// Stop a running execution.
    Stop {
        #[command(flatten)]
        remote: RemoteArgs,
        execution_arn: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
    },
    /// Redrive a failed, timed-out or aborted execution from where it failed.
    Redrive {
        #[command(flatten)]
        remote: RemoteArgs,
        execution_arn: String,
        /// Follow it until it ends (exit 1 unless it succeeds).
        #[arg(long)]
        wait: bool,
    },
    /// List activities, or create / delete one.
    Activities {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        action: Option<ActivityAction>,
    },
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum ActivityAction {
    List,
    Create { name: String },
    Delete { activity_arn: String },
}

fn seconds_to_ms(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_f64)
        .map(|s| (s * 1000.0).round() as i64)
}

fn date(v: Option<&Value>) -> String {
    seconds_to_ms(v)
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Prints rows as an aligned table.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < header.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        crate::out!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_json(v: &Value) {
    crate::out!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn read_arg(text: &str) -> Result<String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(text.to_string()),
    }
}

struct Cli {
    client: Client,
    json: bool,
}

impl Remote {
    fn args(&self) -> &RemoteArgs {
        match self {
            Remote::Create { remote, .. }
            | Remote::Update { remote, .. }
            | Remote::List { remote, .. }
            | Remote::Start { remote, .. }
            | Remote::Describe { remote, .. }
            | Remote::History { remote, .. }
            | Remote::Stop { remote, .. }
            | Remote::Redrive { remote, .. }
            | Remote::Activities { remote, .. } => remote,
        }
    }
}

/// Runs one server command; returns the process exit code.
pub async fn run(command: Remote) -> ExitCode {
    let args = command.args().clone();
    let cli = match Client::from_env(&args.endpoint) {
        Ok(client) => Cli {
            client,
            json: args.json,
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match cli.run(command).await {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<AwsError>() {
                Some(aws) => eprintln!("error: {}: {}", aws.code, aws.message),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

impl Cli {
    async fn run(&self, command: Remote) -> Result<ExitCode> {
        match command {
            Remote::Create {
                name,
                definition_file,
                machine_type,
                role_arn,
                ..
            } => {
                let definition = std::fs::read_to_string(&definition_file)
                    .with_context(|| format!("cannot read {}", definition_file.display()))?;
                let mut body = json!({"name": name, "definition": definition, "type": machine_type.to_uppercase()});
                if let Some(r) = role_arn {
                    body["roleArn"] = json!(r);
                }
                let out = self.client.call("CreateStateMachine", &body).await?;
                if self.json {
                    print_json(&out);
                } else {
                    crate::out!("created {}", s(&out, "stateMachineArn"));
                }
            }
            Remote::Update {
                state_machine,
                definition_file,
                ..
            } => {
                let arn = self.state_machine_arn(&state_machine).await?;
                let definition = std::fs::read_to_string(&definition_file)
                    .with_context(|| format!("cannot read {}", definition_file.display()))?;
                let out = self
                    .client
                    .call(
                        "UpdateStateMachine",
                        &json!({"stateMachineArn": arn, "definition": definition}),
                    )
                    .await?;
                if self.json {
                    print_json(&out);
                } else {
                    crate::out!("updated {arn} (revision {})", s(&out, "revisionId"));
                }
            }
            Remote::List {
                state_machine: None,
                limit,
                ..
            } => {
                let items = self
                    .paginate("ListStateMachines", json!({}), "stateMachines", limit)
                    .await?;
                if self.json {
                    print_json(&json!({"stateMachines": items}));
                } else {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|m| {
                            vec![
                                s(m, "name").to_string(),
                                s(m, "type").to_string(),
                                date(m.get("creationDate")),
                                s(m, "stateMachineArn").to_string(),
                            ]
                        })
                        .collect();
                    table(&["NAME", "TYPE", "CREATED", "ARN"], &rows);
                }
            }
            Remote::List {
                state_machine: Some(sm),
                status,
                limit,
                ..
            } => {
                let arn = self.state_machine_arn(&sm).await?;
                let mut body = json!({"stateMachineArn": arn});
                if let Some(st) = status {
                    body["statusFilter"] = json!(st.to_uppercase());
                }
                let items = self
                    .paginate("ListExecutions", body, "executions", limit)
                    .await?;
                if self.json {
                    print_json(&json!({"executions": items}));
                } else {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|e| {
                            let dur = match (
                                seconds_to_ms(e.get("startDate")),
                                seconds_to_ms(e.get("stopDate")),
                            ) {
                                (Some(a), Some(b)) => format!("{:.3}s", (b - a) as f64 / 1000.0),
                                _ => "-".into(),
                            };
                            vec![
                                s(e, "name").to_string(),
                                s(e, "status").to_string(),
                                date(e.get("startDate")),
                                dur,
                                s(e, "executionArn").to_string(),
                            ]
                        })
                        .collect();
                    table(&["NAME", "STATUS", "STARTED", "DURATION", "ARN"], &rows);
                }
            }
            Remote::Start {
                state_machine,
                input,
                name,
                wait,
                ..
            } => {
                let arn = self.state_machine_arn(&state_machine).await?;
                let input = read_arg(&input)?;
                serde_json::from_str::<Value>(&input)
                    .with_context(|| "--input is not valid JSON".to_string())?;
                let mut body = json!({"stateMachineArn": arn, "input": input});
                if let Some(n) = name {
                    body["name"] = json!(n);
                }
                let out = self.client.call("StartExecution", &body).await?;
                let exec = s(&out, "executionArn").to_string();
                if !wait {
                    if self.json {
                        print_json(&out);
                    } else {
                        crate::out!("started {exec}");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                if !self.json {
                    crate::out!("started {exec}");
                }
                return self.follow(&exec, true).await;
            }
            Remote::Describe {
                target, definition, ..
            } => {
                if target.contains(":execution:") || target.contains(":express:") {
                    let out = self
                        .client
                        .call("DescribeExecution", &json!({"executionArn": target}))
                        .await?;
                    if self.json {
                        print_json(&out);
                    } else {
                        print_execution(&out);
                    }
                } else {
                    let arn = self.state_machine_arn(&target).await?;
                    let out = self
                        .client
                        .call("DescribeStateMachine", &json!({"stateMachineArn": arn}))
                        .await?;
                    if self.json {
                        print_json(&out);
                    } else {
                        self.print_state_machine(&out, definition).await?;
                    }
                }
            }
            Remote::History {
                execution_arn,
                follow,
                ..
            } => {
                if follow {
                    return self.follow(&execution_arn, false).await;
                }
                let events = self.history_after(&execution_arn, 0).await?;
                if self.json {
                    print_json(&json!({"events": events}));
                } else {
                    let mut names = StateNames::default();
                    let start = events
                        .first()
                        .and_then(|e| seconds_to_ms(e.get("timestamp")));
                    let rows: Vec<Vec<String>> = events
                        .iter()
                        .map(|e| names.row(e, start.unwrap_or(0)))
                        .collect();
                    table(&["ID", "TYPE", "STATE", "ELAPSED", "DETAILS"], &rows);
                }
            }
            Remote::Stop {
                execution_arn,
                error,
                cause,
                ..
            } => {
                let mut body = json!({"executionArn": execution_arn});
                if let Some(e) = error {
                    body["error"] = json!(e);
                }
                if let Some(c) = cause {
                    body["cause"] = json!(c);
                }
                let out = self.client.call("StopExecution", &body).await?;
                if self.json {
                    print_json(&out);
                } else {
                    crate::out!("stopped {execution_arn} at {}", date(out.get("stopDate")));
                }
            }
            Remote::Redrive {
                execution_arn,
                wait,
                ..
            } => {
                let out = self
                    .client
                    .call("RedriveExecution", &json!({"executionArn": execution_arn}))
                    .await?;
                if wait {
                    if !self.json {
                        crate::out!("redriven {execution_arn}");
                    }
                    return self.follow(&execution_arn, false).await;
                }
                if self.json {
                    print_json(&out);
                } else {
                    crate::out!(
                        "redriven {execution_arn} at {}",
                        date(out.get("redriveDate"))
                    );
                }
            }
            Remote::Activities { action, .. } => match action.unwrap_or(ActivityAction::List) {
                ActivityAction::List => {
                    let items = self
                        .paginate("ListActivities", json!({}), "activities", usize::MAX)
                        .await?;
                    if self.json {
                        print_json(&json!({"activities": items}));
                    } else {
                        let rows: Vec<Vec<String>> = items
                            .iter()
                            .map(|a| {
                                vec![
                                    s(a, "name").to_string(),
                                    date(a.get("creationDate")),
                                    s(a, "activityArn").to_string(),
                                ]
                            })
                            .collect();
                        table(&["NAME", "CREATED", "ARN"], &rows);
                    }
                }
                ActivityAction::Create { name } => {
                    let out = self
                        .client
                        .call("CreateActivity", &json!({"name": name}))
                        .await?;
                    if self.json {
                        print_json(&out);
                    } else {
                        crate::out!("created {}", s(&out, "activityArn"));
                    }
                }
                ActivityAction::Delete { activity_arn } => {
                    let out = self
                        .client
                        .call("DeleteActivity", &json!({"activityArn": activity_arn}))
                        .await?;
                    if self.json {
                        print_json(&out);
                    } else {
                        crate::out!("deleted {activity_arn}");
                    }
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A state machine ARN from a name or an ARN.
    async fn state_machine_arn(&self, name_or_arn: &str) -> Result<String> {
        if name_or_arn.starts_with("arn:") {
            return Ok(name_or_arn.to_string());
        }
        let all = self
            .paginate("ListStateMachines", json!({}), "stateMachines", usize::MAX)
            .await?;
        all.iter()
            .find(|m| s(m, "name") == name_or_arn)
            .map(|m| s(m, "stateMachineArn").to_string())
            .ok_or_else(|| {
                AwsError {
                    status: 400,
                    code: "StateMachineDoesNotExist".into(),
                    message: format!("no state machine is named {name_or_arn:?}"),
                }
                .into()
            })
    }

    async fn paginate(
        &self,
        action: &str,
        mut body: Value,
        key: &str,
        limit: usize,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            body["maxResults"] = json!(limit.saturating_sub(out.len()).clamp(1, 1000));
            let page = self.client.call(action, &body).await?;
            if let Some(items) = page.get(key).and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            match page.get("nextToken").and_then(Value::as_str) {
                Some(t) if out.len() < limit => body["nextToken"] = json!(t),
                _ => return Ok(out),
            }
        }
    }

    /// Events with id > `after`, oldest first.
    async fn history_after(&self, arn: &str, after: u64) -> Result<Vec<Value>> {
        let mut newest_first = Vec::new();
        let mut body = json!({"executionArn": arn, "reverseOrder": true, "maxResults": 200});
        'pages: loop {
            let page = self.client.call("GetExecutionHistory", &body).await?;
            for e in page
                .get("events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if e.get("id").and_then(Value::as_u64).unwrap_or(0) <= after {
                    break 'pages;
                }
                newest_first.push(e.clone());
            }
            match page.get("nextToken").and_then(Value::as_str) {
                Some(t) => body["nextToken"] = json!(t),
                None => break,
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Prints events as they happen until the execution ends; the exit code follows its
    /// status.
    async fn follow(&self, arn: &str, progress: bool) -> Result<ExitCode> {
        let mut last = 0u64;
        let mut names = StateNames::default();
        let mut start = None;
        if !self.json && !progress {
            crate::out!(
                "{}",
                follow_line(&["ID", "TYPE", "STATE", "ELAPSED", "DETAILS"])
            );
        }
        loop {
            let events = self.history_after(arn, last).await?;
            for e in &events {
                last = last.max(e.get("id").and_then(Value::as_u64).unwrap_or(0));
                let t0 = *start
                    .get_or_insert_with(|| seconds_to_ms(e.get("timestamp")).unwrap_or_default());
                if self.json {
                    crate::out!("{e}");
                } else if progress {
                    if let Some(line) = names.progress(e, t0) {
                        crate::out!("{line}");
                    }
                } else {
                    let row = names.row(e, t0);
                    crate::out!("{}", follow_line(&row));
                }
            }
            let desc = self
                .client
                .call("DescribeExecution", &json!({"executionArn": arn}))
                .await?;
            let status = s(&desc, "status");
            if status != "RUNNING" {
                // Events committed with the end may have arrived after our last read.
                let tail = self.history_after(arn, last).await?;
                for e in &tail {
                    if self.json {
                        crate::out!("{e}");
                    } else if progress {
                        if let Some(line) = names.progress(e, start.unwrap_or_default()) {
                            crate::out!("{line}");
                        }
                    } else {
                        crate::out!("{}", follow_line(&names.row(e, start.unwrap_or_default())));
                    }
                }
                if !self.json && progress {
                    print_execution(&desc);
                }
                return Ok(if status == "SUCCEEDED" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn print_state_machine(&self, sm: &Value, definition: bool) -> Result<()> {
        crate::out!("name:      {}", s(sm, "name"));
        crate::out!("arn:       {}", s(sm, "stateMachineArn"));
        crate::out!("type:      {}", s(sm, "type"));
        crate::out!("created:   {}", date(sm.get("creationDate")));
        crate::out!("revision:  {}", s(sm, "revisionId"));
        let mut counts = Vec::new();
        for status in ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"] {
            let n = self
                .paginate(
                    "ListExecutions",
                    json!({"stateMachineArn": s(sm, "stateMachineArn"), "statusFilter": status}),
                    "executions",
                    10_000,
                )
                .await?
                .len();
            counts.push(format!("{status} {n}"));
        }
        crate::out!("executions: {}", counts.join(", "));
        if definition {
            let def: Value = serde_json::from_str(s(sm, "definition")).unwrap_or(Value::Null);
            print_json(&def);
        }
        Ok(())
    }
}

/// A history row in fixed-width columns (rows of `--follow` are printed as they come, so the
/// widths cannot be measured first).
fn follow_line<S: AsRef<str>>(cells: &[S]) -> String {
    let widths = [5, 28, 24, 10];
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        match widths.get(i) {
            Some(w) => out.push_str(&format!("{:<w$} ", short(c.as_ref(), w - 1), w = w)),
            None => out.push_str(c.as_ref()),
        }
    }
    out.trim_end().to_string()
}

fn print_execution(e: &Value) {
    crate::out!("execution: {}", s(e, "executionArn"));
    crate::out!("status:    {}", s(e, "status"));
    crate::out!("started:   {}", date(e.get("startDate")));
    if e.get("stopDate").is_some() {
        crate::out!("stopped:   {}", date(e.get("stopDate")));
    }
    if let Some(n) = e
        .get("redriveCount")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        crate::out!("redrives:  {n}");
    }
    crate::out!("input:     {}", s(e, "input"));
    if e.get("output").is_some() {
        crate::out!("output:    {}", s(e, "output"));
    }
    if e.get("error").is_some() || e.get("cause").is_some() {
        crate::out!("error:     {}", s(e, "error"));
        crate::out!("cause:     {}", s(e, "cause"));
    }
}

/// Tracks which state each event belongs to (events point to their cause through
/// `previousEventId`).
#[derive(Default)]
struct StateNames {
    by_id: HashMap<u64, String>,
}

fn details(e: &Value) -> Option<&serde_json::Map<String, Value>> {
    e.as_object()?
        .iter()
        .find(|(k, _)| k.ends_with("EventDetails"))
        .and_then(|(_, v)| v.as_object())
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl StateNames {
    fn state_of(&mut self, e: &Value) -> String {
        let id = e.get("id").and_then(Value::as_u64).unwrap_or(0);
        let prev = e
            .get("previousEventId")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let ty = s(e, "type");
        let name = match details(e)
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
        {
            Some(n) if ty.ends_with("StateEntered") || ty.ends_with("StateExited") => n.to_string(),
            _ => self.by_id.get(&prev).cloned().unwrap_or_default(),
        };
        let owner = if ty.ends_with("StateExited") {
            // Events after an exit belong to the next state.
            String::new()
        } else {
            name.clone()
        };
        self.by_id.insert(id, owner);
        name
    }

    fn row(&mut self, e: &Value, t0: i64) -> Vec<String> {
        let state = self.state_of(e);
        let elapsed = seconds_to_ms(e.get("timestamp")).unwrap_or(t0) - t0;
        let detail = details(e)
            .map(|d| {
                if let Some(err) = d.get("error") {
                    format!(
                        "{} {}",
                        err.as_str().unwrap_or(""),
                        d.get("cause").and_then(Value::as_str).unwrap_or("")
                    )
                } else if let Some(v) = d.get("output").or_else(|| d.get("input")) {
                    v.as_str().map_or_else(|| json_text(v), str::to_string)
                } else {
                    String::new()
                }
            })
            .unwrap_or_default();
        vec![
            e.get("id").and_then(Value::as_u64).unwrap_or(0).to_string(),
            s(e, "type").to_string(),
            state,
            format!("{:.3}s", elapsed as f64 / 1000.0),
            short(detail.trim(), 100),
        ]
    }

    /// One progress line for `start --wait`, or `None` for events not worth a line.
    fn progress(&mut self, e: &Value, t0: i64) -> Option<String> {
        let state = self.state_of(e);
        let at = format!(
            "{:>8.3}s",
            (seconds_to_ms(e.get("timestamp")).unwrap_or(t0) - t0) as f64 / 1000.0
        );
        let ty = s(e, "type");
        let d = details(e);
        let field = |k: &str| {
            d.and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(match ty {
            t if t.ends_with("StateEntered") => format!("{at}  ▶ {state}"),
            t if t.ends_with("StateExited") => format!("{at}  ✓ {state}"),
            "ActivityScheduled" | "TaskScheduled" => {
                format!("{at}      scheduled {}", field("resource"))
            }
            "ActivityStarted" | "TaskStarted" => {
                format!("{at}      started by {}", field("workerName"))
            }
            t if t.ends_with("Failed") && !t.starts_with("Execution") => format!(
                "{at}    ✗ {state}: {} {}",
                field("error"),
                short(&field("cause"), 80)
            ),
            t if t.ends_with("TimedOut") && !t.starts_with("Execution") => {
                format!("{at}    ⏱ {state}: {}", field("error"))
            }
            "WaitStateEntered" => format!("{at}  ▶ {state} (waiting)"),
            "MapIterationStarted" | "MapIterationSucceeded" | "MapIterationFailed" => {
                format!(
                    "{at}      {ty} #{}",
                    d.and_then(|d| d.get("index"))
                        .map_or(String::new(), |i| i.to_string())
                )
            }
            "ExecutionRedriven" => format!("{at}  ↻ redriven"),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    /// A reader that goes away ends the writer with status 141 and no panic. The test runs
    /// itself again as the writer (`STEPLINE_PRINT_LINE_CHILD`), reads its stdout until the
    /// writer's lines begin, then closes the pipe.
    #[test]
    fn output_to_a_closed_pipe_ends_quietly_with_141() {
        if std::env::var_os("STEPLINE_PRINT_LINE_CHILD").is_some() {
            for n in 0..100_000 {
                super::print_line(format_args!("line {n}"));
            }
            return;
        }
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "client::tests::output_to_a_closed_pipe_ends_quietly_with_141",
                "--nocapture",
            ])
            .env("STEPLINE_PRINT_LINE_CHILD", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        // Past the test harness's own first lines, once the writer is writing: hang up.
        let stdout = child.stdout.take().expect("the writer's stdout");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        assert!(
            lines.any(|line| line.is_ok_and(|line| line.starts_with("line "))),
            "the writer wrote nothing"
        );
        drop(lines);
        let out = child.wait_with_output().expect("wait for the writer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
