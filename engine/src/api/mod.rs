//! The control plane: AWS Step Functions' JSON protocol on `POST /`, so boto3, the AWS CLI,
//! aws-sdk-sfn and other AWS SDKs work against Stepline by pointing `endpoint_url` at it.
//!
//! A request is `POST /` with `X-Amz-Target: AWSStepFunctions.<Action>` and a JSON body
//! (`application/x-amz-json-1.0`). It is authenticated with SigV4 ([`sigv4`]) — or, for the
//! web console, a session cookie plus `X-Stepline-Console: 1` ([`crate::console`]) — unless the
//! server runs open (`stepline dev` without keys), its body is limited in size, and the
//! action's handler ([`actions`]) maps it onto the runtime's [`Service`]. Responses are JSON
//! with timestamps as epoch seconds; errors are HTTP 400 (5xx only for infrastructure
//! failures) with `{"__type": "<AWS code>", "message": "…"}`. A handler that panics is caught
//! and answered as `InternalFailure`, never a dropped connection.
//!
//! Invariants: every execution-changing action goes through the [`Service`], so the
//! partition owner stays the only writer of an execution; nothing here holds state besides
//! the request counter.

pub mod actions;
pub mod sigv4;

use crate::runtime::broker::Broker;
use crate::runtime::clock::Clock;
use crate::runtime::service::Service;
use crate::runtime::store::Store;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest request body accepted (AWS's payloads are at most 256 KiB; a request carries one
/// plus some fields).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The content type of AWS JSON 1.0 requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// How the API authenticates.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Access key id → secret access key.
    pub access_keys: BTreeMap<String, String>,
    /// Accept unsigned requests (and any signature). Only for `stepline dev`.
    pub open: bool,
}

impl ApiConfig {
    /// Parses `ID:SECRET[,ID:SECRET…]` (the `--access-key`/`STEPLINE_ACCESS_KEYS` form).
    pub fn parse_keys(text: &str) -> Result<BTreeMap<String, String>, String> {
        let mut keys = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, secret) = part
                .split_once(':')
                .filter(|(id, s)| !id.is_empty() && !s.is_empty())
                .ok_or_else(|| format!("access key {part:?} is not in the form ID:SECRET"))?;
            keys.insert(id.to_string(), secret.to_string());
        }
        Ok(keys)
    }
}

/// An AWS error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// AWS's wording for a missing required member.
    pub fn missing(member: &str) -> ApiError {
        ApiError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }

    fn into_response(self, request_id: &str) -> Response {
        let body = json!({"__type": self.code, "message": self.message});
        (
            self.status,
            [
                ("content-type", CONTENT_TYPE.to_string()),
                ("x-amzn-requestid", request_id.to_string()),
                ("x-amzn-errortype", self.code.clone()),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// The API's shared state.
pub struct Api<S: Store, B: Broker, C: Clock> {
    pub service: Arc<Service<S, B, C>>,
    pub config: ApiConfig,
    requests: AtomicU64,
}

impl<S: Store, B: Broker, C: Clock> Api<S, B, C> {
    pub fn new(service: Arc<Service<S, B, C>>, config: ApiConfig) -> Arc<Self> {
        Arc::new(Api {
            service,
            config,
            requests: AtomicU64::new(0),
        })
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let seed = crate::runner::seed_from(&format!("{}|{n}", std::process::id()));
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (seed >> 32) as u32,
            (seed >> 16) as u16,
            (seed & 0xfff) as u16,
            (n & 0xfff) as u16,
            n
        )
    }

    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), ApiError> {
        if self.config.open {
            return Ok(());
        }
        let now = self.service.coordinator().clock().now_ms();
        // The web console's requests: a session cookie plus `X-Stepline-Console: 1`.
        if crate::console::session_authorized(headers, &self.config.access_keys, now) {
            return Ok(());
        }
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let req = sigv4::SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &pairs,
            body,
        };
        sigv4::verify(&req, &self.config.access_keys, now)
            .map(|_| ())
            .map_err(|e| {
                let status = if e.code == "MissingAuthenticationToken" {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(e.code, e.message).with_status(status)
            })
    }
}

/// `POST /`: one AWS API call.
pub async fn handle<S: Store, B: Broker, C: Clock>(
    State(api): State<Arc<Api<S, B, C>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = api.request_id();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                "ValidationException",
                format!("the request body exceeds the maximum size of {MAX_BODY_BYTES} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            .into_response(&request_id)
        }
    };
    match call(api, &method, &uri, &headers, body).await {
        Ok(value) => (
            StatusCode::OK,
            [
                ("content-type", CONTENT_TYPE.to_string()),
                ("x-amzn-requestid", request_id),
            ],
            value.to_string(),
        )
            .into_response(),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = %e.code, message = %e.message, "API request failed");
            }
            e.into_response(&request_id)
        }
    }
}

async fn call<S: Store, B: Broker, C: Clock>(
    api: Arc<Api<S, B, C>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Value, ApiError> {
    api.authenticate(method, uri, headers, &body)?;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                "UnknownOperationException",
                "missing X-Amz-Target header (expected AWSStepFunctions.<Action>)",
            )
        })?;
    let action = target
        .strip_prefix("AWSStepFunctions.")
        .ok_or_else(|| {
            ApiError::new(
                "UnknownOperationException",
                format!("unknown target {target:?} (expected AWSStepFunctions.<Action>)"),
            )
        })?
        .to_string();
    let request: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "the request body must be a JSON object",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    "SerializationException",
                    format!("the request body is not valid JSON: {e}"),
                ))
            }
        }
    };
    // Run the action on its own task so a bug that panics answers `InternalFailure` instead of
    // dropping the connection.
    let task = tokio::spawn(async move { actions::dispatch(&api, &action, request).await });
    match task.await {
        Ok(result) => result,
        Err(e) => Err(ApiError::new(
            "InternalFailure",
            format!("the request could not be processed: {e}"),
        )
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}
