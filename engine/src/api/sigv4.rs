//! AWS Signature Version 4: verifying the requests the control plane receives and signing the
//! ones the `stepline` CLI sends, so unmodified AWS SDKs and the AWS CLI authenticate against
//! access keys configured on the server.
//!
//! Pure: the caller passes the request's parts and the current time; nothing here reads a
//! clock or does IO. Verification recomputes the signature from the canonical request
//! (method, path, query, the signed headers, SHA-256 of the body) and compares it in constant
//! time; a request older or newer than 15 minutes is refused, as AWS does.

use crate::task_token::hmac_sha256;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Allowed clock skew between signer and server.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// Why a request was refused; `code` is AWS's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError {
        code,
        message: message.into(),
    }
}

/// The parts of a request that the signature covers. Header names must be lower case.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hexval = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hexval {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request string over `signed` header names (lower case, sorted).
fn canonical_request(req: &SignedRequest<'_>, signed: &[&str], payload_hash: &str) -> String {
    let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers {
        if signed.contains(&k.as_str()) {
            grouped
                .entry(k.as_str())
                .or_default()
                .push(canonical_header_value(v));
        }
    }
    let mut headers = String::new();
    for name in signed {
        let values = grouped.get(name).map(|v| v.join(",")).unwrap_or_default();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values);
        headers.push('\n');
    }
    let path = if req.path.is_empty() { "/" } else { req.path };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(&percent_decode(path), true),
        canonical_query(req.query),
        headers,
        signed.join(";"),
        payload_hash
    )
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn signature(
    req: &SignedRequest<'_>,
    signed: &[&str],
    amz_date: &str,
    scope: &str,
    secret: &str,
    payload_hash: &str,
) -> String {
    let creq = canonical_request(req, signed, payload_hash);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let mut parts = scope.split('/');
    let date = parts.next().unwrap_or("");
    let region = parts.next().unwrap_or("");
    let service = parts.next().unwrap_or("");
    hex(&hmac_sha256(
        &signing_key(secret, date, region, service),
        string_to_sign.as_bytes(),
    ))
}

fn header<'a>(req: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `YYYYMMDD'T'HHMMSS'Z'` → epoch milliseconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    let ts: jiff::Timestamp = iso.parse().ok()?;
    Some(ts.as_millisecond())
}

fn amz_date(now_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Who signed a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub access_key_id: String,
    pub region: String,
}

/// Verifies an `Authorization: AWS4-HMAC-SHA256 …` header against `keys` (access key id →
/// secret). Errors carry AWS's codes: `MissingAuthenticationToken`,
/// `IncompleteSignature`, `UnrecognizedClientException`, `InvalidSignatureException`.
pub fn verify(
    req: &SignedRequest<'_>,
    keys: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Principal, AuthError> {
    let Some(auth) = header(req, "authorization") else {
        return Err(err(
            "MissingAuthenticationToken",
            "Missing Authentication Token: sign the request with AWS Signature Version 4",
        ));
    };
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
        err(
            "IncompleteSignature",
            "Unsupported authorization type: only AWS4-HMAC-SHA256 is accepted",
        )
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut provided = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            provided = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(provided)) =
        (credential, signed_headers, provided)
    else {
        return Err(err(
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'",
        ));
    };
    let mut cparts = credential.splitn(2, '/');
    let access_key = cparts.next().unwrap_or("");
    let scope = cparts.next().unwrap_or("");
    let scope_parts: Vec<&str> = scope.split('/').collect();
    if scope_parts.len() != 4 || scope_parts[3] != "aws4_request" {
        return Err(err(
            "IncompleteSignature",
            format!("Credential scope {scope:?} must be <date>/<region>/<service>/aws4_request"),
        ));
    }
    let Some(secret) = keys.get(access_key) else {
        return Err(err(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let Some(date_header) = header(req, "x-amz-date") else {
        return Err(err(
            "IncompleteSignature",
            "Authorization requires an X-Amz-Date header",
        ));
    };
    let Some(signed_at) = parse_amz_date(date_header) else {
        return Err(err(
            "IncompleteSignature",
            format!("X-Amz-Date {date_header:?} is not in the form YYYYMMDD'T'HHMMSS'Z'"),
        ));
    };
    if !date_header.starts_with(scope_parts[0]) {
        return Err(err(
            "InvalidSignatureException",
            "Date in Credential scope does not match the X-Amz-Date header",
        ));
    }
    if (now_ms - signed_at).abs() > MAX_SKEW_MS {
        return Err(err(
            "InvalidSignatureException",
            format!(
                "Signature expired: {date_header} is now earlier or later than 15 minutes from {}",
                amz_date(now_ms)
            ),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(err(
            "InvalidSignatureException",
            "The 'Host' header must be signed",
        ));
    }
    let payload_hash = sha256_hex(req.body);
    let expected = signature(req, &signed, date_header, scope, secret, &payload_hash);
    let same = expected.len() == provided.len()
        && expected
            .bytes()
            .zip(provided.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
    if !same {
        return Err(err(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Principal {
        access_key_id: access_key.to_string(),
        region: scope_parts[1].to_string(),
    })
}

/// Signs a request: returns the headers to add (`x-amz-date`, `authorization`). `headers` must
/// already contain `host` and every other header to sign (lower-case names).
pub fn sign(
    req: &SignedRequest<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    now_ms: i64,
) -> Vec<(String, String)> {
    let date_time = amz_date(now_ms);
    let scope = format!("{}/{region}/{service}/aws4_request", &date_time[..8]);
    let mut all: Vec<(String, String)> = req.headers.to_vec();
    all.push(("x-amz-date".into(), date_time.clone()));
    let mut signed: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    signed.sort_unstable();
    signed.dedup();
    let with_date = SignedRequest {
        headers: &all,
        ..*req
    };
    let sig = signature(
        &with_date,
        &signed,
        &date_time,
        &scope,
        secret,
        &sha256_hex(req.body),
    );
    vec![
        ("x-amz-date".into(), date_time),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example (IAM ListUsers, GET, from the SigV4 documentation).
    #[test]
    fn matches_the_aws_documentation_example() {
        let headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        let sig = signature(
            &req,
            &["content-type", "host", "x-amz-date"],
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &sha256_hex(b""),
        );
        assert_eq!(
            sig,
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    fn keys() -> BTreeMap<String, String> {
        BTreeMap::from([("AKID".to_string(), "secret".to_string())])
    }

    fn signed_headers(body: &[u8], secret: &str, now: i64) -> Vec<(String, String)> {
        let mut headers = vec![
            ("host".to_string(), "localhost:8080".to_string()),
            (
                "x-amz-target".to_string(),
                "AWSStepFunctions.ListActivities".to_string(),
            ),
        ];
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let extra = sign(&req, "AKID", secret, "us-east-1", "states", now);
        headers.extend(extra);
        headers
    }

    const NOW: i64 = 1_790_000_000_000;

    fn check(headers: &[(String, String)], body: &[u8], now: i64) -> Result<Principal, AuthError> {
        verify(
            &SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers,
                body,
            },
            &keys(),
            now,
        )
    }

    #[test]
    fn a_signed_request_verifies_and_tampering_fails() {
        let body = br#"{"maxResults":1}"#;
        let h = signed_headers(body, "secret", NOW);
        assert_eq!(check(&h, body, NOW + 1000).unwrap().access_key_id, "AKID");
        assert_eq!(
            check(&h, br#"{"maxResults":2}"#, NOW).unwrap_err().code,
            "InvalidSignatureException"
        );
        let wrong = signed_headers(body, "other", NOW);
        assert_eq!(
            check(&wrong, body, NOW).unwrap_err().code,
            "InvalidSignatureException"
        );
        assert_eq!(
            check(&h, body, NOW + MAX_SKEW_MS + 60_000)
                .unwrap_err()
                .code,
            "InvalidSignatureException"
        );
        assert_eq!(
            check(&h[..2], body, NOW).unwrap_err().code,
            "MissingAuthenticationToken"
        );
        let mut unknown = h.clone();
        for (k, v) in unknown.iter_mut() {
            if k == "authorization" {
                *v = v.replace("AKID", "NOPE");
            }
        }
        assert_eq!(
            check(&unknown, body, NOW).unwrap_err().code,
            "UnrecognizedClientException"
        );
    }
}
