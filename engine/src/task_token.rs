//! Task tokens: opaque strings that identify one task attempt of one execution.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, where the payload
//! is `execution_arn '\n' task_id`. With an empty key (in-process runs) the MAC is still
//! computed, so the format never changes; servers configure a secret so a worker can neither
//! forge nor alter a token. Pure: HMAC is computed here with `sha2`, no IO.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Creates the token for `task` of `execution_arn`.
pub fn mint(key: &[u8], execution_arn: &str, task: u64) -> String {
    let payload = format!("{execution_arn}\n{task}");
    let mac = hmac_sha256(key, payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac)
    )
}

/// Checks a token's MAC and returns `(execution_arn, task)`; `None` if forged or malformed.
pub fn verify(key: &[u8], token: &str) -> Option<(String, u64)> {
    let (p, m) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    let mac = URL_SAFE_NO_PAD.decode(m).ok()?;
    let expected = hmac_sha256(key, &payload);
    // Constant-time comparison.
    if mac.len() != expected.len()
        || mac.iter().zip(expected).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0
    {
        return None;
    }
    let text = String::from_utf8(payload).ok()?;
    let (arn, task) = text.rsplit_once('\n')?;
    Some((arn.to_string(), task.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let t = mint(b"secret", "arn:aws:states:us-east-1:1:execution:sm:e", 7);
        assert_eq!(
            verify(b"secret", &t),
            Some(("arn:aws:states:us-east-1:1:execution:sm:e".into(), 7))
        );
        assert_eq!(verify(b"other", &t), None);
        let (p, _) = t.split_once('.').unwrap();
        let forged = format!("{}.{}", p, URL_SAFE_NO_PAD.encode([0u8; 32]));
        assert_eq!(verify(b"secret", &forged), None);
        assert_eq!(verify(b"secret", "garbage"), None);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
