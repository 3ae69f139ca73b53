//! Bearer-token authentication of the API: every service but `grpc.health.v1` requires
//! `authorization: Bearer <token>` with one of the tokens of the tokens file. Tokens are
//! compared in constant time and never logged.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// The accepted tokens.
#[derive(Clone)]
pub struct Tokens {
    tokens: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.tokens.len())
    }
}

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("API tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error(
        "API tokens file {0} holds no token: write one token per line (at least 16 characters)"
    )]
    Empty(String),
    /// A token is too short to be a secret.
    #[error("API tokens file {path}: the token on line {line} is shorter than 16 characters")]
    Short {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

impl Tokens {
    /// Reads one token per line (blank lines and `#` comments skipped).
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// Parses the file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokensError> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < 16 {
                return Err(TokensError::Short {
                    path: path.to_owned(),
                    line: i + 1,
                });
            }
            tokens.push(t.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty(path.to_owned()));
        }
        Ok(Tokens {
            tokens: Arc::new(tokens),
        })
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        // Constant time per candidate of the same length; every candidate is compared.
        let mut ok = false;
        for t in self.tokens.iter() {
            if t.len() == presented.len() {
                let diff = t
                    .iter()
                    .zip(presented)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                ok |= diff == 0;
            }
        }
        ok
    }

    /// The interceptor: passes a request with an accepted token, refuses any other.
    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing authorization metadata: send `authorization: Bearer <token>`",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            Some(t) if self.accepts(t.as_bytes()) => Ok(req),
            _ => Err(Status::unauthenticated("the API token was refused")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut()
                .insert("authorization", a.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn only_listed_tokens_pass() {
        let t = Tokens::parse("# fleet\n0123456789abcdef\n\nfedcba9876543210xyz\n", "f")
            .expect("valid");
        assert!(t.check(req(Some("Bearer 0123456789abcdef"))).is_ok());
        assert!(t.check(req(Some("Bearer fedcba9876543210xyz"))).is_ok());
        for bad in [
            None,
            Some("Bearer wrong-token-000000"),
            Some("0123456789abcdef"),
            Some("Bearer "),
        ] {
            let e = t.check(req(bad)).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert!(!e.message().contains("0123456789abcdef"));
        }
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[test]
    fn bad_files_are_named() {
        assert!(matches!(
            Tokens::parse("# none\n", "f"),
            Err(TokensError::Empty(_))
        ));
        assert!(matches!(
            Tokens::parse("short\n", "f"),
            Err(TokensError::Short { line: 1, .. })
        ));
    }
}
