//! The web console: a browser client of the AWS Step Functions API served by `stepline server`
//! and `stepline dev` themselves. `GET /` answers the page; the assets (`engine/console/`:
//! plain HTML, CSS and JavaScript modules, no framework, no build step) are embedded in the
//! binary with `include_bytes!`; the page calls the same `POST /` API as every other client.
//!
//! Authentication: when the server has access keys, the page signs in with an access key id
//! and its secret (`POST /console/session`); the answer sets an `HttpOnly`, `SameSite=Strict`
//! cookie `stepline_session=base64url(id).expiry.hex(HMAC-SHA256(secret, …))`. The API accepts
//! a request that carries a valid, unexpired cookie *and* the header `X-Stepline-Console: 1`
//! (a cross-site form cannot set a custom header, so the cookie alone never authorizes) in
//! place of a SigV4 signature ([`session_authorized`], called by `api::Api::authenticate`).
//! Sessions are stateless: removing or changing a key's secret ends its sessions; signing
//! out clears the cookie in the browser.
//!
//! Invariants: every answer carries `Content-Security-Policy: default-src 'self'` (the assets
//! use no inline script, style or event handler); a cookie verifies only with the secret of
//! the key it names and only before its expiry; secrets are compared in constant time.

use crate::api::{Api, ApiConfig};
use crate::runtime::broker::Broker;
use crate::runtime::clock::Clock;
use crate::runtime::store::Store;
use crate::task_token::hmac_sha256;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The session cookie's name.
pub const COOKIE: &str = "stepline_session";
/// The header every console API request carries (the CSRF guard).
pub const CONSOLE_HEADER: &str = "x-stepline-console";
/// How long a console session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// The Content-Security-Policy of every console answer.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        path: "/console/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/style.css"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        path: "/console/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/api.js"),
    },
    Asset {
        path: "/console/graph.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/graph.js"),
    },
    Asset {
        path: "/console/layout.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/layout.js"),
    },
    Asset {
        path: "/console/history.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/history.js"),
    },
    Asset {
        path: "/console/dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/dom.js"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../console/favicon.svg"),
    },
];

/// Strong ETags of the assets (a hash of their bytes), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                format!("\"{}\"", crate::api::sigv4::hex(&digest[..12]))
            })
            .collect()
    })
}

/// Headers every console answer carries.
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `GET` of an embedded asset. They are revalidated on every use (`no-cache` + ETag, so a
/// reload after an upgrade never mixes old and new modules) and answered `304` when unchanged.
async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (a, etag) = (&ASSETS[i], &etags()[i]);
    if let Some(dir) = std::env::var_os("STEPLINE_CONSOLE_DIR") {
        return from_disk(a, Path::new(&dir));
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(a.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    security_headers(h);
    response
}

/// Front-end development: `STEPLINE_CONSOLE_DIR=engine/console` serves the assets from disk,
/// uncached, so a reload shows an edit without rebuilding the binary.
fn from_disk(a: &Asset, dir: &Path) -> Response {
    let file = if a.path == "/" {
        "index.html"
    } else {
        a.path.trim_start_matches("/console/")
    };
    let mut r = match std::fs::read(dir.join(file)) {
        Ok(bytes) => Response::new(Body::from(bytes)),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    r
}

/// The console's routes: the page, its assets and `/console/session`. Merged into the
/// server's app next to the API (`POST /`).
pub fn router<S: Store, B: Broker, C: Clock>(api: Arc<Api<S, B, C>>) -> Router {
    let mut router = Router::new();
    for a in ASSETS {
        router = router.route(a.path, get(asset));
    }
    router.merge(
        Router::new()
            .route(
                "/console/session",
                get(session_status::<S, B, C>)
                    .post(sign_in::<S, B, C>)
                    .delete(sign_out),
            )
            .with_state(api),
    )
}

/// The value of the session cookie for key `id` (secret `secret`) valid until `expiry`
/// (epoch seconds).
pub fn session_cookie_value(id: &str, secret: &str, expiry: i64) -> String {
    format!(
        "{}.{expiry}.{}",
        URL_SAFE_NO_PAD.encode(id),
        crate::api::sigv4::hex(&session_mac(id, secret, expiry))
    )
}

fn session_mac(id: &str, secret: &str, expiry: i64) -> [u8; 32] {
    hmac_sha256(
        secret.as_bytes(),
        format!("stepline-console-session\n{id}\n{expiry}").as_bytes(),
    )
}

/// The access key id a cookie value names, when it verifies against `keys` at `now_ms`.
pub fn verify_session(value: &str, keys: &BTreeMap<String, String>, now_ms: i64) -> Option<String> {
    let mut parts = value.split('.');
    let (id, expiry, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let id = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
    let expiry: i64 = expiry.parse().ok()?;
    if expiry.saturating_mul(1000) <= now_ms {
        return None;
    }
    let secret = keys.get(&id)?;
    let expected = crate::api::sigv4::hex(&session_mac(&id, secret, expiry));
    constant_time_eq(expected.as_bytes(), mac.as_bytes()).then_some(id)
}

/// Whether an API request is authorized by a console session: it carries
/// `X-Stepline-Console: 1` and a valid `stepline_session` cookie.
pub fn session_authorized(
    headers: &HeaderMap,
    keys: &BTreeMap<String, String>,
    now_ms: i64,
) -> bool {
    let marked = headers
        .get(CONSOLE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    marked && session_cookie(headers).is_some_and(|c| verify_session(&c, keys, now_ms).is_some())
}

/// The `stepline_session` cookie of a request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"__type": code, "message": message}))
}

/// The `Set-Cookie` value for `value` lasting `max_age` seconds (`Secure` when a TLS proxy
/// says the page was loaded over HTTPS).
fn set_cookie(value: &str, max_age: i64, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn now_ms<S: Store, B: Broker, C: Clock>(api: &Api<S, B, C>) -> i64 {
    api.service.coordinator().clock().now_ms()
}

fn status_json(config: &ApiConfig, signed_in_as: Option<String>) -> Value {
    json!({
        "authRequired": !config.open,
        "signedIn": config.open || signed_in_as.is_some(),
        "accessKeyId": signed_in_as,
    })
}

/// `GET /console/session`: whether the page must sign in.
async fn session_status<S: Store, B: Broker, C: Clock>(
    State(api): State<Arc<Api<S, B, C>>>,
    headers: HeaderMap,
) -> Response {
    let who = session_cookie(&headers)
        .and_then(|c| verify_session(&c, &api.config.access_keys, now_ms(&api)));
    json_response(StatusCode::OK, status_json(&api.config, who))
}

/// `POST /console/session` with `{"accessKeyId", "secretAccessKey"}`: signs in.
async fn sign_in<S: Store, B: Broker, C: Clock>(
    State(api): State<Arc<Api<S, B, C>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers
        .get(CONSOLE_HEADER)
        .is_none_or(|v| v.as_bytes() != b"1")
    {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "console requests must carry X-Stepline-Console: 1",
        );
    }
    if api.config.open {
        return json_response(StatusCode::OK, status_json(&api.config, None));
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(id), Some(secret)) = (
        request["accessKeyId"].as_str(),
        request["secretAccessKey"].as_str(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "send {\"accessKeyId\": …, \"secretAccessKey\": …}",
        );
    };
    let known = api.config.access_keys.get(id);
    // Compare against something even for an unknown id, so timing does not tell ids apart.
    let ok = constant_time_eq(
        known.map_or(b"\0unknown-key".as_slice(), |s| s.as_bytes()),
        secret.as_bytes(),
    ) && known.is_some();
    if !ok {
        tracing::warn!(access_key_id = %id, "console sign-in refused");
        // 200 with `signedIn: false`: a refused sign-in is an answer, not a failed request
        // (browsers log failed requests as console errors).
        return json_response(
            StatusCode::OK,
            json!({"authRequired": true, "signedIn": false, "accessKeyId": null,
                   "message": "The access key ID or secret access key is not valid."}),
        );
    }
    let expiry = now_ms(&api) / 1000 + SESSION_SECONDS;
    let value = session_cookie_value(id, secret, expiry);
    let mut r = json_response(
        StatusCode::OK,
        json!({"authRequired": true, "signedIn": true, "accessKeyId": id, "expires": expiry}),
    );
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&value, SESSION_SECONDS, &headers)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `DELETE /console/session`: signs out (clears the cookie).
async fn sign_out(headers: HeaderMap) -> Response {
    if headers
        .get(CONSOLE_HEADER)
        .is_none_or(|v| v.as_bytes() != b"1")
    {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "console requests must carry X-Stepline-Console: 1",
        );
    }
    let mut r = json_response(StatusCode::OK, json!({"signedIn": false}));
    if let Ok(v) = HeaderValue::from_str(&set_cookie("", 0, &headers)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BTreeMap<String, String> {
        [("me".to_string(), "my-secret".to_string())].into()
    }

    #[test]
    fn a_cookie_verifies_only_with_its_key_and_before_its_expiry() {
        let v = session_cookie_value("me", "my-secret", 2_000);
        assert_eq!(
            verify_session(&v, &keys(), 1_000_000).as_deref(),
            Some("me")
        );
        assert_eq!(verify_session(&v, &keys(), 2_000_000), None, "expired");
        let other: BTreeMap<_, _> = [("me".to_string(), "rotated".to_string())].into();
        assert_eq!(
            verify_session(&v, &other, 1_000_000),
            None,
            "secret changed"
        );
        let forged = v.replace(".2000.", ".9000.");
        assert_eq!(
            verify_session(&forged, &keys(), 1_000_000),
            None,
            "expiry altered"
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.1.2", "bWU.x.00"] {
            assert_eq!(verify_session(junk, &keys(), 0), None, "{junk}");
        }
    }

    #[test]
    fn the_api_needs_the_console_header_besides_the_cookie() {
        let v = session_cookie_value("me", "my-secret", 2_000);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={v}")).unwrap(),
        );
        assert!(!session_authorized(&h, &keys(), 1_000_000));
        h.insert(CONSOLE_HEADER, HeaderValue::from_static("1"));
        assert!(session_authorized(&h, &keys(), 1_000_000));
    }

    #[test]
    fn every_asset_is_served_with_a_type_and_an_etag() {
        assert_eq!(etags().len(), ASSETS.len());
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
        }
    }
}
