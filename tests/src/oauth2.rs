//! OAuth 2.0 access tokens the test servers accept: JWTs (RFC 7519) signed with HS256 by the
//! key `scripts/test-servers` writes (servers.env `MAILFERRY_TEST_OAUTH2_HS256_KEY`), which
//! Dovecot validates locally (`iat`, `nbf`, `exp`, and `sub` = the login name). A token minted
//! here expired is refused exactly as a provider refuses an expired one.
//!
//! Only tokens: no OAuth server, no refresh tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};

/// A JWT for `user`, issued at `now` (Unix seconds) and valid for `valid_for` seconds (negative:
/// already expired), signed with HS256 under `key`.
pub fn hs256_token(key: &[u8], user: &str, now: i64, valid_for: i64) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Issued a minute ago, so a token is never "not yet valid" to a server whose clock lags.
    let issued = now - 60;
    let claims = serde_json::json!({
        "sub": user,
        "iat": issued,
        "nbf": issued,
        "exp": now + valid_for,
    });
    let body = B64URL.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    // RFC 7515 §3.1 (JWS compact serialisation), RFC 7518 §3.2 (HS256).
    let signature = B64URL.encode(hmac_sha256(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 test cases 1 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tokens_carry_the_user_and_expiry() {
        let t = hs256_token(b"k", "alice", 1_000, 3_600);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["exp"], 4_600);
        assert_ne!(t, hs256_token(b"other", "alice", 1_000, 3_600));
    }
}
