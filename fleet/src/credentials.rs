//! Credentials: secrets never travel in task envelopes; a worker asks its credential source for a
//! pair's endpoints and secrets by pair id. The embedded mode keeps them in process memory only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mailferry_proto::task::{Endpoint, Side};

/// A secret string that never prints itself, and is overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: the bytes of this allocation are zeroed before it is freed (`black_box`
        // keeps the writes); copies the allocator made while the string grew are out of reach.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How one side logs in.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// LOGIN / AUTHENTICATE PLAIN with the user's own password.
    Password(Secret),
    /// An OAuth 2.0 access token (OAUTHBEARER or XOAUTH2), read from this file at every
    /// (re)connect so an external refresher can rotate it during long runs.
    OAuth2 {
        /// The file holding the token.
        token_file: std::path::PathBuf,
    },
    /// An OAuth 2.0 access token itself (OAUTHBEARER or XOAUTH2), as the fleet API receives it;
    /// the caller pushes a fresh one before it expires (UpdatePairCredentials).
    OAuth2Token(Secret),
    /// AUTHENTICATE PLAIN as an administrator (master user) on behalf of the endpoint's user
    /// (RFC 4616 authorization identity); the secret is the administrator's password.
    Admin {
        /// The administrator's login name.
        admin: String,
        /// The administrator's password.
        secret: Secret,
    },
}

/// Where a worker finds a pair's endpoints and secrets.
pub trait CredentialSource: Send + Sync + 'static {
    /// The endpoint and credentials of one side of a pair, if known.
    fn account(&self, pair_id: &str, side: Side) -> Option<(Endpoint, Credentials)>;
}

/// Credentials held in process memory (embedded mode): never written anywhere.
#[derive(Debug, Clone, Default)]
pub struct MemoryCredentials {
    inner: Arc<RwLock<AccountMap>>,
}

/// Endpoint and credentials by (pair id, side).
type AccountMap = HashMap<(String, Side), (Endpoint, Credentials)>;

impl MemoryCredentials {
    /// Registers one side's endpoint and credentials.
    pub fn insert(&self, pair_id: &str, side: Side, endpoint: Endpoint, creds: Credentials) {
        if let Ok(mut map) = self.inner.write() {
            map.insert((pair_id.to_owned(), side), (endpoint, creds));
        }
    }
}

impl CredentialSource for MemoryCredentials {
    fn account(&self, pair_id: &str, side: Side) -> Option<(Endpoint, Credentials)> {
        self.inner
            .read()
            .ok()?
            .get(&(pair_id.to_owned(), side))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = Credentials::Password(s);
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credentials::OAuth2Token(Secret::new("ya29.token"));
        assert!(!format!("{t:?}").contains("ya29"));
    }
}
