//! The Step Functions actions: request members in, response members out, with AWS's names,
//! validation messages and error codes. Each action maps onto one or a few [`Service`] calls.
//!
//! Pagination tokens are opaque (`base64url("v1:" + position)`); a token that does not
//! decode is `InvalidToken`. Timestamps are epoch seconds (fractional). Inputs and outputs
//! travel as JSON *text*, as in AWS.

use super::{Api, ApiError};
use crate::asl::{validate, StateMachineType};
use crate::interp::{Execution, ExecutionStatus, PAYLOAD_LIMIT_BYTES};
use crate::runtime::broker::Broker;
use crate::runtime::clock::Clock;
use crate::runtime::service::{valid_name, ServiceError};
use crate::runtime::store::{ActivityRecord, ExecutionRecord, StateMachineRecord, Store};
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use stepline_worker::protocol::{Reply, PROTOCOL_VERSION};

/// Longest `GetActivityTask` long poll, as in AWS.
pub const ACTIVITY_POLL: Duration = Duration::from_secs(60);
/// Longest wait of `StartSyncExecution` (EXPRESS executions run at most 5 minutes).
pub const SYNC_EXECUTION_LIMIT: Duration = Duration::from_secs(300);

/// Every action this server answers (the rest are `UnknownOperationException`).
pub const ACTIONS: &[&str] = &[
    "CreateStateMachine",
    "DescribeStateMachine",
    "UpdateStateMachine",
    "DeleteStateMachine",
    "ListStateMachines",
    "ValidateStateMachineDefinition",
    "StartExecution",
    "StartSyncExecution",
    "StopExecution",
    "DescribeExecution",
    "ListExecutions",
    "GetExecutionHistory",
    "DescribeStateMachineForExecution",
    "RedriveExecution",
    "CreateActivity",
    "DeleteActivity",
    "DescribeActivity",
    "ListActivities",
    "GetActivityTask",
    "SendTaskSuccess",
    "SendTaskFailure",
    "SendTaskHeartbeat",
    "TestState",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

pub(super) async fn dispatch<S: Store, B: Broker, C: Clock>(
    api: &Api<S, B, C>,
    action: &str,
    body: Map<String, Value>,
) -> Result<Value, ApiError> {
    let r = Req(body);
    let a = Actions { api };
    match action {
        "CreateStateMachine" => a.create_state_machine(&r).await,
        "DescribeStateMachine" => a.describe_state_machine(&r).await,
        "UpdateStateMachine" => a.update_state_machine(&r).await,
        "DeleteStateMachine" => a.delete_state_machine(&r).await,
        "ListStateMachines" => a.list_state_machines(&r).await,
        "ValidateStateMachineDefinition" => a.validate_definition(&r),
        "StartExecution" => a.start_execution(&r).await,
        "StartSyncExecution" => a.start_sync_execution(&r).await,
        "StopExecution" => a.stop_execution(&r).await,
        "DescribeExecution" => a.describe_execution(&r).await,
        "ListExecutions" => a.list_executions(&r).await,
        "GetExecutionHistory" => a.get_execution_history(&r).await,
        "DescribeStateMachineForExecution" => a.describe_state_machine_for_execution(&r).await,
        "RedriveExecution" => a.redrive_execution(&r).await,
        "CreateActivity" => a.create_activity(&r).await,
        "DeleteActivity" => a.delete_activity(&r).await,
        "DescribeActivity" => a.describe_activity(&r).await,
        "ListActivities" => a.list_activities(&r).await,
        "GetActivityTask" => a.get_activity_task(&r).await,
        "SendTaskSuccess" => a.send_task_success(&r).await,
        "SendTaskFailure" => a.send_task_failure(&r).await,
        "SendTaskHeartbeat" => a.send_task_heartbeat(&r).await,
        "TestState" => a.test_state(&r),
        "TagResource" => a.tag_resource(&r).await,
        "UntagResource" => a.untag_resource(&r).await,
        "ListTagsForResource" => a.list_tags(&r).await,
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("Stepline does not implement the action {other:?}"),
        )),
    }
}

/// A request body with typed member access and AWS's validation messages.
struct Req(Map<String, Value>);

impl Req {
    fn opt_str(&self, member: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(member) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("member '{member}' must be a string, got {other}"),
            )),
        }
    }

    fn str(&self, member: &str) -> Result<&str, ApiError> {
        self.opt_str(member)?
            .ok_or_else(|| ApiError::missing(member))
    }

    fn opt_bool(&self, member: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(member) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ApiError::new(
                "SerializationException",
                format!("member '{member}' must be a boolean, got {other}"),
            )),
        }
    }

    fn opt_int(&self, member: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(member) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ApiError::new(
                    "SerializationException",
                    format!("member '{member}' must be an integer, got {v}"),
                )
            }),
        }
    }

    /// `maxResults`: 0 or absent → `default`; at most 1000.
    fn max_results(&self, default: usize) -> Result<usize, ApiError> {
        match self.opt_int("maxResults")? {
            None | Some(0) => Ok(default),
            Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
            Some(n) => Err(ApiError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
                ),
            )),
        }
    }

    fn next_token(&self) -> Result<Option<String>, ApiError> {
        self.opt_str("nextToken")?.map(decode_token).transpose()
    }

    fn tags(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let mut tags = BTreeMap::new();
        let Some(list) = self.0.get("tags") else {
            return Ok(tags);
        };
        let items = list.as_array().ok_or_else(|| {
            ApiError::new("SerializationException", "member 'tags' must be a list")
        })?;
        for t in items {
            let key = t.get("key").and_then(Value::as_str);
            let value = t.get("value").and_then(Value::as_str).unwrap_or("");
            let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 128) else {
                return Err(ApiError::new(
                    "ValidationException",
                    "every tag needs a 'key' of 1 to 128 characters",
                ));
            };
            if value.len() > 256 {
                return Err(ApiError::new(
                    "ValidationException",
                    "a tag value has at most 256 characters",
                ));
            }
            tags.insert(key.to_string(), value.to_string());
        }
        if tags.len() > 50 {
            return Err(ApiError::new(
                "TooManyTags",
                "a resource has at most 50 tags",
            ));
        }
        Ok(tags)
    }
}

fn encode_token(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{position}"))
}

fn decode_token(token: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").map(str::to_string))
        .ok_or_else(|| ApiError::new("InvalidToken", format!("Invalid Token: '{token}'")))
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Checks an ARN's shape: `arn:<partition>:states:<region>:<account>:<kind>:<name>…`.
fn check_arn(arn: &str, kinds: &[&str]) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ok = parts.len() == 7
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "states"
        && kinds.contains(&parts[5])
        && !parts[6].is_empty();
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidArn",
            format!(
                "Invalid Arn: '{arn}' (expected arn:aws:states:<region>:<account>:{}:…)",
                kinds.join("|")
            ),
        ))
    }
}

fn parse_json_text(text: &str, code: &str, what: &str) -> Result<Value, ApiError> {
    if text.len() > PAYLOAD_LIMIT_BYTES {
        return Err(ApiError::new(
            code,
            format!("the {what} exceeds the maximum size of {PAYLOAD_LIMIT_BYTES} bytes"),
        ));
    }
    serde_json::from_str(text)
        .map_err(|e| ApiError::new(code, format!("Invalid {what}: not valid JSON ({e})")))
}

fn machine_type(text: Option<&str>) -> Result<StateMachineType, ApiError> {
    match text {
        None | Some("STANDARD") => Ok(StateMachineType::Standard),
        Some("EXPRESS") => Ok(StateMachineType::Express),
        Some(other) => Err(ApiError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
            ),
        )),
    }
}

fn type_name(t: StateMachineType) -> &'static str {
    match t {
        StateMachineType::Standard => "STANDARD",
        StateMachineType::Express => "EXPRESS",
    }
}

fn status_filter(text: Option<&str>) -> Result<Option<ExecutionStatus>, ApiError> {
    Ok(match text {
        None => None,
        Some("RUNNING") => Some(ExecutionStatus::Running),
        Some("SUCCEEDED") => Some(ExecutionStatus::Succeeded),
        Some("FAILED") => Some(ExecutionStatus::Failed),
        Some("TIMED_OUT") => Some(ExecutionStatus::TimedOut),
        Some("ABORTED") => Some(ExecutionStatus::Aborted),
        Some(other) => {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{other}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
                ),
            ))
        }
    })
}

fn name_error(name: &str) -> ApiError {
    ApiError::new("InvalidName", format!("Invalid Name: '{name}'"))
}

/// Maps a service error to AWS's code.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match &e {
            ServiceError::InvalidDefinition(diags) => ApiError::new(
                "InvalidDefinition",
                validate::invalid_definition_message(diags),
            ),
            ServiceError::InvalidName(n) => name_error(n),
            ServiceError::StateMachineDoesNotExist(arn) => ApiError::new(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            ),
            ServiceError::StateMachineAlreadyExists(arn) => ApiError::new(
                "StateMachineAlreadyExists",
                format!("State Machine Already Exists: '{arn}'"),
            ),
            ServiceError::ActivityDoesNotExist(arn) => ApiError::new(
                "ActivityDoesNotExist",
                format!("Activity Does Not Exist: '{arn}'"),
            ),
            ServiceError::ExecutionDoesNotExist(arn) => ApiError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            ),
            ServiceError::ExecutionAlreadyExists(arn) => ApiError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{arn}'"),
            ),
            ServiceError::InvalidExecutionInput(m) => ApiError::new(
                "InvalidExecutionInput",
                format!("Invalid execution input: {m}"),
            ),
            ServiceError::InvalidToken => {
                ApiError::new("InvalidToken", "Invalid Token: the task token is not valid")
            }
            ServiceError::TaskDoesNotExist(arn) => ApiError::new(
                "TaskDoesNotExist",
                format!("Task Does Not Exist: the execution {arn} no longer exists"),
            ),
            ServiceError::TaskTimedOut => {
                ApiError::new("TaskTimedOut", "Task Timed Out: the task is no longer open")
            }
            ServiceError::ExecutionNotRedrivable(reason) => {
                ApiError::new("ExecutionNotRedrivable", reason.clone())
            }
            ServiceError::ResourceNotFound(arn) => {
                ApiError::new("ResourceNotFound", format!("Resource not found: '{arn}'"))
            }
            ServiceError::Store(_) | ServiceError::Broker(_) | ServiceError::Coordinator(_) => {
                ApiError::new("ServiceUnavailable", e.to_string())
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

struct Actions<'a, S: Store, B: Broker, C: Clock> {
    api: &'a Api<S, B, C>,
}

impl<S: Store, B: Broker, C: Clock> Actions<'_, S, B, C> {
    fn service(&self) -> &crate::runtime::service::Service<S, B, C> {
        &self.api.service
    }

    fn now_ms(&self) -> i64 {
        self.service().coordinator().clock().now_ms()
    }

    // ---- State machines -------------------------------------------------------------------

    async fn create_state_machine(&self, r: &Req) -> Result<Value, ApiError> {
        let name = r.str("name")?;
        let definition = r.str("definition")?;
        let ty = machine_type(r.opt_str("type")?)?;
        let role = r.opt_str("roleArn")?.map(str::to_string);
        let tags = r.tags()?;
        if !valid_name(name) {
            return Err(name_error(name));
        }
        match self
            .service()
            .create_state_machine(name, definition, ty, role.clone())
            .await
        {
            Ok(sm) => {
                if !tags.is_empty() {
                    self.service().change_tags(&sm.arn, tags, &[]).await?;
                }
                Ok(json!({"stateMachineArn": sm.arn, "creationDate": seconds(sm.created_ms)}))
            }
            Err(ServiceError::StateMachineAlreadyExists(arn)) => {
                // AWS: creating an identical state machine again returns the existing one. The
                // check covers name, definition and type; a different roleArn or tags is
                // ignored (and not applied).
                let existing = self.service().describe_state_machine(&arn).await?;
                if existing.definition == definition && existing.machine_type == ty {
                    Ok(
                        json!({"stateMachineArn": existing.arn, "creationDate": seconds(existing.created_ms)}),
                    )
                } else {
                    Err(ServiceError::StateMachineAlreadyExists(arn).into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn describe_sm_json(&self, sm: &StateMachineRecord) -> Value {
        let mut v = json!({
            "stateMachineArn": sm.arn,
            "name": sm.name,
            "status": "ACTIVE",
            "definition": sm.definition,
            "roleArn": sm.role_arn,
            "type": type_name(sm.machine_type),
            "creationDate": seconds(sm.created_ms),
            "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
            "tracingConfiguration": {"enabled": false},
            "revisionId": sm.revision_id,
        });
        if let Some(desc) = description(&sm.definition) {
            v["description"] = Value::String(desc);
        }
        v
    }

    async fn describe_state_machine(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("stateMachineArn")?;
        check_arn(arn, &["stateMachine"])?;
        let sm = self.service().describe_state_machine(arn).await?;
        Ok(self.describe_sm_json(&sm))
    }

    async fn update_state_machine(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("stateMachineArn")?;
        check_arn(arn, &["stateMachine"])?;
        let definition = r.opt_str("definition")?;
        let role = r.opt_str("roleArn")?.map(str::to_string);
        let other = [
            "loggingConfiguration",
            "tracingConfiguration",
            "encryptionConfiguration",
        ]
        .iter()
        .any(|k| r.0.get(*k).is_some_and(|v| !v.is_null()));
        if definition.is_none() && role.is_none() && !other {
            return Err(ApiError::new(
                "MissingRequiredParameter",
                "Either the definition, the roleArn, the loggingConfiguration or the tracingConfiguration must be specified",
            ));
        }
        let sm = self
            .service()
            .update_state_machine(arn, definition, role)
            .await?;
        Ok(json!({
            "updateDate": seconds(sm.updated_ms.unwrap_or(sm.created_ms)),
            "revisionId": sm.revision_id,
        }))
    }

    async fn delete_state_machine(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("stateMachineArn")?;
        check_arn(arn, &["stateMachine"])?;
        self.service().delete_state_machine(arn).await?;
        Ok(json!({}))
    }

    async fn list_state_machines(&self, r: &Req) -> Result<Value, ApiError> {
        let page = self
            .service()
            .list_state_machines(r.max_results(100)?, r.next_token()?)
            .await?;
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|sm| {
                json!({
                    "stateMachineArn": sm.arn,
                    "name": sm.name,
                    "type": type_name(sm.machine_type),
                    "creationDate": seconds(sm.created_ms),
                })
            })
            .collect();
        Ok(with_token(json!({"stateMachines": items}), page.next_token))
    }

    fn validate_definition(&self, r: &Req) -> Result<Value, ApiError> {
        let definition = r.str("definition")?;
        let ty = machine_type(r.opt_str("type")?)?;
        let min = match r.opt_str("severity")? {
            None | Some("ERROR") => "ERROR",
            Some("WARNING") => "WARNING",
            Some(other) => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("1 validation error detected: Value '{other}' at 'severity' failed to satisfy constraint: Member must satisfy enum value set: [ERROR, WARNING]"),
                ))
            }
        };
        let max = r.max_results(100)?;
        let diags: Vec<_> = validate::validate_text(definition, ty)
            .into_iter()
            .filter(|d| min == "WARNING" || d.severity == "ERROR")
            .collect();
        let failed = diags.iter().any(|d| d.severity == "ERROR");
        let truncated = diags.len() > max;
        let list: Vec<Value> = diags
            .iter()
            .take(max)
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect();
        Ok(json!({
            "result": if failed { "FAIL" } else { "OK" },
            "diagnostics": list,
            "truncated": truncated,
        }))
    }

    // ---- Executions -----------------------------------------------------------------------

    /// Common part of StartExecution and StartSyncExecution: returns the created record.
    async fn start(&self, r: &Req) -> Result<(StateMachineRecord, ExecutionRecord), ApiError> {
        let sm_arn = r.str("stateMachineArn")?;
        check_arn(sm_arn, &["stateMachine"])?;
        let name = r.opt_str("name")?.map(str::to_string);
        if let Some(n) = &name {
            if !valid_name(n) {
                return Err(name_error(n));
            }
        }
        let input = parse_json_text(
            r.opt_str("input")?.unwrap_or("{}"),
            "InvalidExecutionInput",
            "execution input",
        )?;
        let sm = self.service().describe_state_machine(sm_arn).await?;
        if let Some(n) = &name {
            // AWS: only an *open* execution with the same name and input is idempotent; the
            // name of a closed one is ExecutionAlreadyExists whatever the input.
            let existing = format!(
                "{}:{n}",
                sm.arn.replacen(":stateMachine:", ":execution:", 1)
            );
            if let Ok(rec) = self.service().describe_execution(&existing).await {
                if rec.status != ExecutionStatus::Running {
                    return Err(ServiceError::ExecutionAlreadyExists(existing).into());
                }
            }
        }
        let arn = self
            .service()
            .start_execution(sm_arn, name, input.clone())
            .await?;
        // The partition owner creates the record asynchronously; answer once it exists so a
        // DescribeExecution right after StartExecution finds it.
        let record = self
            .service()
            .wait_created(&arn, Duration::from_secs(30))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    "ServiceUnavailable",
                    "the execution was accepted but no coordinator created it within 30 s",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
            })?;
        if record.input != input {
            return Err(ServiceError::ExecutionAlreadyExists(arn).into());
        }
        Ok((sm, record))
    }

    async fn start_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let (_, record) = self.start(r).await?;
        Ok(json!({
            "executionArn": record.execution_arn,
            "startDate": seconds(record.start_ms),
        }))
    }

    async fn start_sync_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let sm_arn = r.str("stateMachineArn")?;
        check_arn(sm_arn, &["stateMachine"])?;
        let sm = self.service().describe_state_machine(sm_arn).await?;
        if sm.machine_type != StateMachineType::Express {
            return Err(ApiError::new(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine: StartSyncExecution needs an EXPRESS state machine",
            ));
        }
        let (sm, record) = self.start(r).await?;
        let done = self
            .service()
            .wait(&record.execution_arn, SYNC_EXECUTION_LIMIT)
            .await?;
        let mut v = json!({
            "executionArn": done.execution_arn,
            "stateMachineArn": sm.arn,
            "name": done.name,
            "startDate": seconds(done.start_ms),
            "stopDate": seconds(done.stop_ms.unwrap_or_else(|| self.now_ms())),
            "status": match done.status {
                ExecutionStatus::Running | ExecutionStatus::TimedOut => "TIMED_OUT",
                ExecutionStatus::Succeeded => "SUCCEEDED",
                ExecutionStatus::Failed | ExecutionStatus::Aborted => "FAILED",
            },
            "input": done.input.to_string(),
            "inputDetails": {"included": true},
            "billingDetails": {
                "billedMemoryUsedInMB": 64,
                "billedDurationInMilliseconds":
                    ((done.stop_ms.unwrap_or_else(|| self.now_ms()) - done.start_ms).max(0) + 99) / 100 * 100,
            },
        });
        if done.status == ExecutionStatus::Running {
            v["error"] = json!("States.Timeout");
            v["cause"] = json!("the synchronous execution did not finish within 5 minutes");
        }
        if let Some(out) = &done.output {
            v["output"] = Value::String(out.to_string());
            v["outputDetails"] = json!({"included": true});
        }
        if let Some(e) = &done.error {
            v["error"] = Value::String(e.clone());
        }
        if let Some(c) = &done.cause {
            v["cause"] = Value::String(c.clone());
        }
        Ok(v)
    }

    async fn stop_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("executionArn")?;
        check_arn(arn, &["execution", "express"])?;
        let error = r.opt_str("error")?.map(str::to_string);
        let cause = r.opt_str("cause")?.map(str::to_string);
        let record = self.service().describe_execution(arn).await?;
        if record.status == ExecutionStatus::Running {
            self.service().stop_execution(arn, error, cause).await?;
        }
        // Stop is applied by the partition owner; answer once it is visible.
        let done = self.service().wait(arn, Duration::from_secs(10)).await?;
        Ok(json!({"stopDate": seconds(done.stop_ms.unwrap_or_else(|| self.now_ms()))}))
    }

    async fn describe_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("executionArn")?;
        check_arn(arn, &["execution", "express"])?;
        let record = self.service().describe_execution(arn).await?;
        let sm = self
            .service()
            .describe_state_machine(&record.state_machine_arn)
            .await
            .ok();
        Ok(execution_json(&record, sm.as_ref()))
    }

    async fn list_executions(&self, r: &Req) -> Result<Value, ApiError> {
        let Some(sm_arn) = r.opt_str("stateMachineArn")? else {
            if r.opt_str("mapRunArn")?.is_some() {
                return Err(ApiError::new(
                    "ValidationException",
                    "Stepline runs distributed Map items inline and has no Map Runs to list",
                ));
            }
            return Err(ApiError::missing("stateMachineArn"));
        };
        check_arn(sm_arn, &["stateMachine"])?;
        let status = status_filter(r.opt_str("statusFilter")?)?;
        let redrive_filter = r.opt_str("redriveFilter")?;
        let page = self
            .service()
            .list_executions(sm_arn, status, r.max_results(100)?, r.next_token()?)
            .await?;
        let items: Vec<Value> = page
            .items
            .iter()
            .filter_map(|e| {
                let redrives = redrive_count(e);
                match redrive_filter {
                    Some("REDRIVEN") if redrives == 0 => return None,
                    Some("NOT_REDRIVEN") if redrives > 0 => return None,
                    _ => {}
                }
                let mut v = json!({
                    "executionArn": e.execution_arn,
                    "stateMachineArn": e.state_machine_arn,
                    "name": e.name,
                    "status": e.status.as_str(),
                    "startDate": seconds(e.start_ms),
                });
                if let Some(stop) = e.stop_ms {
                    v["stopDate"] = seconds(stop);
                }
                if redrives > 0 {
                    v["redriveCount"] = json!(redrives);
                }
                Some(v)
            })
            .collect();
        Ok(with_token(json!({"executions": items}), page.next_token))
    }

    async fn get_execution_history(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("executionArn")?;
        check_arn(arn, &["execution", "express"])?;
        let max = r.max_results(100)?;
        let reverse = r.opt_bool("reverseOrder")?.unwrap_or(false);
        let include_data = r.opt_bool("includeExecutionData")?.unwrap_or(true);
        let start: usize = match r.next_token()? {
            None => 0,
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::new("InvalidToken", "Invalid Token: not a history token"))?,
        };
        self.service().describe_execution(arn).await?;
        let mut events = self.service().history(arn).await?;
        if reverse {
            events.reverse();
        }
        let end = (start + max).min(events.len());
        let page: Vec<Value> = events
            .get(start.min(end)..end)
            .unwrap_or(&[])
            .iter()
            .map(|e| {
                let mut v = e.to_aws_json();
                if !include_data {
                    strip_data(&mut v);
                }
                v
            })
            .collect();
        let next = (end < events.len()).then(|| end.to_string());
        Ok(with_token(json!({"events": page}), next))
    }

    async fn describe_state_machine_for_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("executionArn")?;
        check_arn(arn, &["execution", "express"])?;
        let sm = self.service().state_machine_for_execution(arn).await?;
        Ok(json!({
            "stateMachineArn": sm.arn,
            "name": sm.name,
            "definition": sm.definition,
            "roleArn": sm.role_arn,
            "updateDate": seconds(sm.updated_ms.unwrap_or(sm.created_ms)),
            "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
            "tracingConfiguration": {"enabled": false},
            "revisionId": sm.revision_id,
        }))
    }

    async fn redrive_execution(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("executionArn")?;
        check_arn(arn, &["execution", "express"])?;
        let redrive_ms = self.service().redrive_execution(arn).await?;
        Ok(json!({"redriveDate": seconds(redrive_ms)}))
    }

    // ---- Activities -----------------------------------------------------------------------

    async fn create_activity(&self, r: &Req) -> Result<Value, ApiError> {
        let name = r.str("name")?;
        let tags = r.tags()?;
        let a = self.service().create_activity(name).await?;
        if !tags.is_empty() {
            self.service().change_tags(&a.arn, tags, &[]).await?;
        }
        Ok(json!({"activityArn": a.arn, "creationDate": seconds(a.created_ms)}))
    }

    async fn delete_activity(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("activityArn")?;
        check_arn(arn, &["activity"])?;
        self.service().delete_activity(arn).await?;
        Ok(json!({}))
    }

    async fn describe_activity(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("activityArn")?;
        check_arn(arn, &["activity"])?;
        let a = self.service().describe_activity(arn).await?;
        Ok(activity_json(&a))
    }

    async fn list_activities(&self, r: &Req) -> Result<Value, ApiError> {
        let page = self
            .service()
            .list_activities(r.max_results(100)?, r.next_token()?)
            .await?;
        let items: Vec<Value> = page.items.iter().map(activity_json).collect();
        Ok(with_token(json!({"activities": items}), page.next_token))
    }

    async fn get_activity_task(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("activityArn")?;
        check_arn(arn, &["activity"])?;
        let worker = r.opt_str("workerName")?.map(str::to_string);
        if worker.as_ref().is_some_and(|w| w.len() > 80) {
            return Err(ApiError::new(
                "ValidationException",
                "1 validation error detected: Value at 'workerName' failed to satisfy constraint: Member must have length less than or equal to 80",
            ));
        }
        match self
            .service()
            .get_activity_task(arn, worker, ACTIVITY_POLL)
            .await?
        {
            Some(task) => Ok(json!({
                "taskToken": task.task_token,
                "input": task.input.to_string(),
            })),
            None => Ok(json!({})),
        }
    }

    async fn send_task_success(&self, r: &Req) -> Result<Value, ApiError> {
        let token = r.str("taskToken")?;
        let output = parse_json_text(r.str("output")?, "InvalidOutput", "output")?;
        self.service()
            .send_checked_reply(Reply::Succeeded {
                version: PROTOCOL_VERSION,
                task_token: token.to_string(),
                output,
            })
            .await?;
        Ok(json!({}))
    }

    async fn send_task_failure(&self, r: &Req) -> Result<Value, ApiError> {
        let token = r.str("taskToken")?;
        let error = r.opt_str("error")?.map(str::to_string);
        let cause = r.opt_str("cause")?.map(str::to_string);
        if error.as_ref().is_some_and(|e| e.len() > 256) {
            return Err(ApiError::new(
                "ValidationException",
                "1 validation error detected: Value at 'error' failed to satisfy constraint: Member must have length less than or equal to 256",
            ));
        }
        if cause.as_ref().is_some_and(|c| c.len() > 32768) {
            return Err(ApiError::new(
                "ValidationException",
                "1 validation error detected: Value at 'cause' failed to satisfy constraint: Member must have length less than or equal to 32768",
            ));
        }
        self.service()
            .send_checked_reply(Reply::Failed {
                version: PROTOCOL_VERSION,
                task_token: token.to_string(),
                error,
                cause,
            })
            .await?;
        Ok(json!({}))
    }

    async fn send_task_heartbeat(&self, r: &Req) -> Result<Value, ApiError> {
        let token = r.str("taskToken")?;
        self.service()
            .send_checked_reply(Reply::Heartbeat {
                version: PROTOCOL_VERSION,
                task_token: token.to_string(),
            })
            .await?;
        Ok(json!({}))
    }

    fn test_state(&self, r: &Req) -> Result<Value, ApiError> {
        let request: crate::test_state::TestStateRequest =
            serde_json::from_value(Value::Object(r.0.clone())).map_err(|e| {
                ApiError::new(
                    "ValidationException",
                    format!("invalid TestState request: {e}"),
                )
            })?;
        let now = self.now_ms();
        let config = self.service().coordinator().config();
        let env = crate::test_state::TestStateEnv {
            now_ms: now,
            seed: crate::runner::seed_from(&format!("test-state|{now}")),
            account: config.account.clone(),
            region: config.region.clone(),
        };
        let response = crate::test_state::test_state_with(&request, &env)
            .map_err(|e| ApiError::new(e.code.as_str(), e.message))?;
        serde_json::to_value(response).map_err(|e| {
            ApiError::new("InternalFailure", e.to_string())
                .with_status(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    // ---- Tags -----------------------------------------------------------------------------

    async fn tag_resource(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("resourceArn")?;
        check_arn(arn, &["stateMachine", "activity"])?;
        let tags = r.tags()?;
        let existing = self.service().tags(arn).await?;
        if existing
            .keys()
            .chain(tags.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 50
        {
            return Err(ApiError::new(
                "TooManyTags",
                "a resource has at most 50 tags",
            ));
        }
        self.service().change_tags(arn, tags, &[]).await?;
        Ok(json!({}))
    }

    async fn untag_resource(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("resourceArn")?;
        check_arn(arn, &["stateMachine", "activity"])?;
        let keys: Vec<String> = match r.0.get("tagKeys") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            None | Some(Value::Null) => return Err(ApiError::missing("tagKeys")),
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "member 'tagKeys' must be a list of strings",
                ))
            }
        };
        self.service()
            .change_tags(arn, BTreeMap::new(), &keys)
            .await?;
        Ok(json!({}))
    }

    async fn list_tags(&self, r: &Req) -> Result<Value, ApiError> {
        let arn = r.str("resourceArn")?;
        check_arn(arn, &["stateMachine", "activity"])?;
        let tags: Vec<Value> = self
            .service()
            .tags(arn)
            .await?
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        Ok(json!({"tags": tags}))
    }
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["nextToken"] = Value::String(encode_token(&t));
    }
    v
}

fn description(definition: &str) -> Option<String> {
    serde_json::from_str::<Value>(definition)
        .ok()?
        .get("Comment")?
        .as_str()
        .map(str::to_string)
}

fn activity_json(a: &ActivityRecord) -> Value {
    json!({"activityArn": a.arn, "name": a.name, "creationDate": seconds(a.created_ms)})
}

fn snapshot(record: &ExecutionRecord) -> Option<Execution> {
    record.snapshot.parse().ok()
}

fn redrive_count(record: &ExecutionRecord) -> u32 {
    record.snapshot.redrives().count
}

/// `DescribeExecution`'s response.
pub fn execution_json(record: &ExecutionRecord, sm: Option<&StateMachineRecord>) -> Value {
    let redrives = record.snapshot.redrives();
    let mut v = json!({
        "executionArn": record.execution_arn,
        "stateMachineArn": record.state_machine_arn,
        "name": record.name,
        "status": record.status.as_str(),
        "startDate": seconds(record.start_ms),
        "input": record.input.to_string(),
        "inputDetails": {"included": true},
        "redriveCount": redrives.count,
    });
    if let Some(stop) = record.stop_ms {
        v["stopDate"] = seconds(stop);
    }
    if let Some(out) = &record.output {
        v["output"] = Value::String(out.to_string());
        v["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &record.error {
        v["error"] = Value::String(e.clone());
    }
    if let Some(c) = &record.cause {
        v["cause"] = Value::String(c.clone());
    }
    let express = sm.is_some_and(|s| s.machine_type == StateMachineType::Express);
    let reason = match record.status {
        ExecutionStatus::Running => Some("Execution is RUNNING and cannot be redriven".to_string()),
        ExecutionStatus::Succeeded => {
            Some("Execution is SUCCEEDED and cannot be redriven".to_string())
        }
        _ if express => Some("Express executions cannot be redriven".to_string()),
        _ => snapshot(record).and_then(|e| e.redrivable().err()),
    };
    if let Some(ms) = redrives.last_ms {
        v["redriveDate"] = seconds(ms);
    }
    match reason {
        None => v["redriveStatus"] = json!("REDRIVABLE"),
        Some(r) => {
            v["redriveStatus"] = json!("NOT_REDRIVABLE");
            v["redriveStatusReason"] = json!(r);
        }
    }
    v
}

/// `includeExecutionData: false`: drop inputs, outputs and their details from every event.
fn strip_data(event: &mut Value) {
    if let Value::Object(m) = event {
        for (k, details) in m.iter_mut() {
            if !k.ends_with("EventDetails") {
                continue;
            }
            if let Value::Object(d) = details {
                for key in ["input", "output", "inputDetails", "outputDetails"] {
                    d.remove(key);
                }
            }
        }
    }
}
