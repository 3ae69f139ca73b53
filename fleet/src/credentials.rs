//! Credentials: secrets never travel in task envelopes; a worker asks its credential source for a
//! pair's endpoints and secrets by pair id. The embedded mode keeps them in process memory only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mailferry_proto::task::{AuthMechanism, Endpoint, Side};

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

impl Credentials {
    /// Why `mechanism` cannot log in with these credentials, if it cannot: a password logs in
    /// with LOGIN or PLAIN, an administrator for another user only with PLAIN (LOGIN has no
    /// authorization identity, RFC 3501 §6.2.3), an OAuth 2.0 token only with XOAUTH2 or
    /// OAUTHBEARER. The sentence completes "`mechanism` ...".
    pub fn refuses(&self, mechanism: AuthMechanism) -> Option<&'static str> {
        let token = matches!(
            self,
            Credentials::OAuth2 { .. } | Credentials::OAuth2Token(_)
        );
        match (mechanism, self) {
            (AuthMechanism::Login, Credentials::Admin { .. }) => Some(
                "cannot log in as an administrator acting for another user (it has no authorization identity); use plain",
            ),
            (m, _) if m.takes_token() && !token => {
                Some("logs in with an OAuth 2.0 access token, not a password")
            }
            (m, _) if !m.takes_token() && token => Some(
                "logs in with a password, not an OAuth 2.0 access token; use xoauth2 or oauthbearer",
            ),
            _ => None,
        }
    }
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

    #[test]
    fn mechanisms_fit_their_credentials_only() {
        let password = Credentials::Password(Secret::new("p"));
        let admin = Credentials::Admin {
            admin: "root".into(),
            secret: Secret::new("p"),
        };
        let token = Credentials::OAuth2Token(Secret::new("t"));
        let file = Credentials::OAuth2 {
            token_file: "/t".into(),
        };
        let fits = |c: &Credentials| -> Vec<&str> {
            AuthMechanism::ALL
                .into_iter()
                .filter(|m| c.refuses(*m).is_none())
                .map(AuthMechanism::name)
                .collect()
        };
        assert_eq!(fits(&password), ["login", "plain"]);
        assert_eq!(fits(&admin), ["plain"]);
        assert_eq!(fits(&token), ["xoauth2", "oauthbearer"]);
        assert_eq!(fits(&file), ["xoauth2", "oauthbearer"]);
    }
}
