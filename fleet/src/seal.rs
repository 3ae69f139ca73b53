//! Sealed credentials: the fleet key file ([`FleetKeys`]) and authenticated encryption
//! (XChaCha20-Poly1305) of the values the fleet stores, above all each pair side's endpoint and
//! credentials ([`seal_account`], [`open_account`]).
//!
//! This module owns the key file format, the sealed format and the account's sealed encoding. It
//! must not print key material or plaintext anywhere (errors, `Debug`, logs), must not panic on any
//! input, and does no I/O beyond reading the key file it is pointed at.
//!
//! Key file: one `KEY_ID BASE64` line per 32-byte key (blank lines and `#` comments are skipped).
//! The first key seals; every key opens, so a key rotates by prepending a new line and dropping the
//! old one once nothing sealed with it is left (DESIGN.md, Principle 6).
//!
//! Sealed format: `1` (version) · key id length · key id · 24-byte random nonce · ciphertext and
//! 16-byte tag. The caller's associated data binds a sealed value to its place, so it cannot be
//! moved elsewhere (an account's to another pair or side) and still open.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mailferry_proto::task::{Endpoint, Side};
use serde::{Deserialize, Serialize};

use crate::credentials::{Credentials, Secret};

/// Version byte of the sealed format.
const VERSION: u8 = 1;
/// Bytes of a fleet key.
const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
const TAG_LEN: usize = 16;
/// Longest key id.
const MAX_ID_LEN: usize = 32;

/// Key file, sealing and opening failures. None of them holds key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file does not exist.
    #[error(
        "fleet key file {path} does not exist: create it with `mailferry keygen > {path}` \
         (readable by mailferry only) or point the fleet key setting at the right file"
    )]
    KeyFileMissing {
        /// The key file.
        path: String,
    },
    /// The key file exists but could not be read.
    #[error("fleet key file {path} could not be read: {source}; check its permissions")]
    KeyFileUnreadable {
        /// The key file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No key line at all.
    #[error("{origin} holds no key: add a `KEY_ID BASE64` line (`mailferry keygen` prints one)")]
    NoKey {
        /// Where the keys came from.
        origin: String,
    },
    /// A line is not `KEY_ID BASE64`.
    #[error("{origin}, line {line}: {problem}; each key line is `KEY_ID BASE64`")]
    MalformedLine {
        /// Where the keys came from.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, without quoting the line.
        problem: &'static str,
    },
    /// A key does not decode to 32 bytes.
    #[error(
        "{origin}, line {line}: key {id} is {len} bytes, a fleet key is exactly 32 \
         (`mailferry keygen` prints a valid line)"
    )]
    KeyLength {
        /// Where the keys came from.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The key id (not secret).
        id: String,
        /// Decoded length.
        len: usize,
    },
    /// Two lines share a key id.
    #[error(
        "{origin}, line {line}: key id {id} is already used on line {first}; give every key its own id"
    )]
    DuplicateKeyId {
        /// Where the keys came from.
        origin: String,
        /// 1-based line number of the repeat.
        line: usize,
        /// 1-based line number of the first use.
        first: usize,
        /// The key id.
        id: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Encryption failed (only on absurd input sizes).
    #[error("sealing failed: the value is too large")]
    Seal,
    /// The sealed value names a key the key file does not hold.
    #[error(
        "sealed with key {id}, which the key file no longer holds: add that key back to the key \
         file (after the sealing key) or enter the credentials again"
    )]
    UnknownKey {
        /// The key id named by the sealed value.
        id: String,
    },
    /// The sealed value is not in the sealed format.
    #[error("sealed value is corrupt: {0}")]
    Corrupt(&'static str),
    /// The sealed value does not authenticate.
    #[error(
        "sealed value failed authentication: it was altered, or it was sealed for another place \
         (pair or side)"
    )]
    Authentication,
    /// The account could not be encoded, or its opened plaintext is not an account.
    #[error("sealed account: {0}")]
    Account(String),
}

/// The fleet's keys: the first seals, all open. `Debug` shows key ids only.
#[derive(Clone)]
pub struct FleetKeys {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKeys")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FleetKeys {
    /// Reads and parses the key file at `path`.
    pub fn load(path: &Path) -> Result<FleetKeys, SealError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SealError::KeyFileMissing {
                    path: shown.clone(),
                }
            } else {
                SealError::KeyFileUnreadable {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        let parsed = Self::parse_from(&text, &format!("fleet key file {shown}"));
        wipe(text.into_bytes());
        parsed
    }

    /// Parses key file text (see the module documentation).
    pub fn parse(text: &str) -> Result<FleetKeys, SealError> {
        Self::parse_from(text, "fleet keys")
    }

    fn parse_from(text: &str, origin: &str) -> Result<FleetKeys, SealError> {
        let malformed = |line, problem| SealError::MalformedLine {
            origin: origin.to_owned(),
            line,
            problem,
        };
        let mut keys = Vec::new();
        let mut lines_of_ids: Vec<(String, usize)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (Some(id), Some(encoded), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(malformed(
                    line,
                    "expected exactly two fields, a key id and a base64 key, separated by a space",
                ));
            };
            if !valid_id(id) {
                return Err(malformed(
                    line,
                    "the key id must be 1 to 32 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if let Some((_, first)) = lines_of_ids.iter().find(|(known, _)| known == id) {
                return Err(SealError::DuplicateKeyId {
                    origin: origin.to_owned(),
                    line,
                    first: *first,
                    id: id.to_owned(),
                });
            }
            let Ok(bytes) = BASE64.decode(encoded) else {
                return Err(malformed(
                    line,
                    "the key is not standard base64 (A-Z a-z 0-9 + / with = padding)",
                ));
            };
            if bytes.len() != KEY_LEN {
                let len = bytes.len();
                wipe(bytes);
                return Err(SealError::KeyLength {
                    origin: origin.to_owned(),
                    line,
                    id: id.to_owned(),
                    len,
                });
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| malformed(line, "the key has the wrong length"))?;
            wipe(bytes);
            lines_of_ids.push((id.to_owned(), line));
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(SealError::NoKey {
                origin: origin.to_owned(),
            });
        }
        Ok(FleetKeys { keys })
    }

    /// A fresh key file line, `"<id> <base64 of 32 random bytes>\n"`, the id `k` and 8 random hex
    /// digits (what `mailferry keygen` prints).
    pub fn generate_line() -> Result<String, SealError> {
        let mut id = [0u8; 4];
        random(&mut id)?;
        let mut key = [0u8; KEY_LEN];
        random(&mut key)?;
        let line = format!(
            "k{:02x}{:02x}{:02x}{:02x} {}\n",
            id[0],
            id[1],
            id[2],
            id[3],
            BASE64.encode(key)
        );
        key.fill(0);
        std::hint::black_box(&key);
        Ok(line)
    }

    /// Key ids, the sealing key first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Seals `plaintext` with the first key, bound to `aad` (which is not stored: the same `aad`
    /// must be given to [`FleetKeys::open`]).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let (id, cipher) = self.keys.first().ok_or(SealError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let id_len = u8::try_from(id.len()).map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.push(id_len);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed by [`FleetKeys::seal`] with any of the keys, given the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or(SealError::Corrupt("it is empty"))?;
        if version != VERSION {
            return Err(SealError::Corrupt(
                "unknown format version (written by a newer mailferry?)",
            ));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(SealError::Corrupt("it is too short"))?;
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > MAX_ID_LEN {
            return Err(SealError::Corrupt("its key id length is out of range"));
        }
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Corrupt("it is too short"));
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let id = std::str::from_utf8(id)
            .ok()
            .filter(|id| valid_id(id))
            .ok_or(SealError::Corrupt("its key id is not a valid key id"))?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or_else(|| SealError::UnknownKey { id: id.to_owned() })?;
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::Authentication)
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn random(buf: &mut [u8]) -> Result<(), SealError> {
    getrandom::fill(buf).map_err(|e| SealError::Random(e.to_string()))
}

/// Overwrites a buffer that held secret bytes before it is freed (best effort: `black_box` keeps
/// the writes from being optimised away).
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// The associated data of one pair side's sealed account: a sealed account opens only for the
/// pair and side it was sealed for. The side is the suffix and never holds `:`, so no two
/// (pair, side) share it.
fn account_aad(pair_id: &str, side: Side) -> Vec<u8> {
    format!("mailferry-account:v1:{pair_id}:{side}").into_bytes()
}

/// What a sealed account holds (serialised): no `Debug`, it holds secrets.
#[derive(Serialize)]
struct AccountOut<'a> {
    endpoint: &'a Endpoint,
    credentials: CredentialsOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum CredentialsOut<'a> {
    Password {
        password: &'a str,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        token_file: &'a Path,
    },
    #[serde(rename = "oauth2_token")]
    OAuth2Token {
        access_token: &'a str,
    },
    Admin {
        admin: &'a str,
        password: &'a str,
    },
}

/// What a sealed account holds (deserialised): no `Debug`, it holds secrets.
#[derive(Deserialize)]
struct AccountIn {
    endpoint: Endpoint,
    credentials: CredentialsIn,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum CredentialsIn {
    Password {
        password: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        token_file: PathBuf,
    },
    #[serde(rename = "oauth2_token")]
    OAuth2Token {
        access_token: String,
    },
    Admin {
        admin: String,
        password: String,
    },
}

/// Seals one pair side's endpoint and credentials for the store.
pub fn seal_account(
    keys: &FleetKeys,
    pair_id: &str,
    side: Side,
    endpoint: &Endpoint,
    creds: &Credentials,
) -> Result<Vec<u8>, SealError> {
    let credentials = match creds {
        Credentials::Password(secret) => CredentialsOut::Password {
            password: secret.expose(),
        },
        Credentials::OAuth2 { token_file } => CredentialsOut::OAuth2 { token_file },
        Credentials::OAuth2Token(token) => CredentialsOut::OAuth2Token {
            access_token: token.expose(),
        },
        Credentials::Admin { admin, secret } => CredentialsOut::Admin {
            admin,
            password: secret.expose(),
        },
    };
    // serde_json names the failing field, never its value.
    let plaintext = serde_json::to_vec(&AccountOut {
        endpoint,
        credentials,
    })
    .map_err(|e| SealError::Account(format!("cannot encode the account: {e}")))?;
    let sealed = keys.seal(&account_aad(pair_id, side), &plaintext);
    wipe(plaintext);
    sealed
}

/// Opens what [`seal_account`] sealed for the same pair and side.
pub fn open_account(
    keys: &FleetKeys,
    pair_id: &str,
    side: Side,
    sealed: &[u8],
) -> Result<(Endpoint, Credentials), SealError> {
    let plaintext = keys.open(&account_aad(pair_id, side), sealed)?;
    let parsed: Result<AccountIn, _> = serde_json::from_slice(&plaintext);
    wipe(plaintext);
    // The error's text could quote plaintext; only its position is kept.
    let account = parsed.map_err(|e| {
        SealError::Account(format!(
            "the opened value is not an account (column {})",
            e.column()
        ))
    })?;
    let creds = match account.credentials {
        CredentialsIn::Password { password } => Credentials::Password(Secret::new(password)),
        CredentialsIn::OAuth2 { token_file } => Credentials::OAuth2 { token_file },
        CredentialsIn::OAuth2Token { access_token } => {
            Credentials::OAuth2Token(Secret::new(access_token))
        }
        CredentialsIn::Admin { admin, password } => Credentials::Admin {
            admin,
            secret: Secret::new(password),
        },
    };
    Ok((account.endpoint, creds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_proto::task::TlsMode;

    const K1: &str = "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn endpoint() -> Endpoint {
        Endpoint {
            host: "imap.example.org".into(),
            port: 993,
            user: "alice".into(),
            tls: TlsMode::Implicit,
            ca_file: None,
            insecure_skip_verify: false,
            auth_mechanism: None,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let sealed = keys.seal(b"ctx", b"hello").expect("seal");
        assert_eq!(sealed[0], VERSION);
        assert_eq!(&sealed[2..4], b"k1");
        assert_eq!(keys.open(b"ctx", &sealed).expect("open"), b"hello");
        let again = keys.seal(b"ctx", b"hello").expect("seal");
        assert_ne!(sealed, again, "a fresh nonce per seal");
    }

    #[test]
    fn rotation_opens_with_an_older_key() {
        let old = FleetKeys::parse(K1).expect("keys");
        let sealed = old.seal(b"ctx", b"hello").expect("seal");
        let rotated = FleetKeys::parse(&format!("# new key first\n{K2}\n\n{K1}\n")).expect("keys");
        assert_eq!(rotated.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert_eq!(rotated.open(b"ctx", &sealed).expect("open"), b"hello");
        let resealed = rotated.seal(b"ctx", b"hello").expect("seal");
        assert_eq!(&resealed[2..4], b"k2", "the first key seals");
        let only_new = FleetKeys::parse(K2).expect("keys");
        let err = only_new.open(b"ctx", &sealed).expect_err("k1 is gone");
        assert!(matches!(&err, SealError::UnknownKey { id } if id == "k1"));
        assert!(
            err.to_string()
                .contains("sealed with key k1, which the key file no longer holds")
        );
    }

    #[test]
    fn wrong_aad_and_tampering_fail_authentication() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let sealed = keys.seal(b"ctx", b"hello").expect("seal");
        assert!(matches!(
            keys.open(b"other", &sealed),
            Err(SealError::Authentication)
        ));
        for i in (2 + 2)..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(keys.open(b"ctx", &bad), Err(SealError::Authentication)),
                "byte {i}"
            );
        }
        let mut bad_id = sealed.clone();
        bad_id[2] = b'z';
        assert!(matches!(
            keys.open(b"ctx", &bad_id),
            Err(SealError::UnknownKey { .. })
        ));
    }

    #[test]
    fn parse_errors_are_precise_and_never_quote_keys() {
        let short = "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "holds no key"),
            ("# only a comment\n\n".into(), "holds no key"),
            ("k1\n".into(), "line 1: expected exactly two fields"),
            (format!("{K1} extra"), "line 1: expected exactly two fields"),
            (format!("\n{K1}\nbad!id AAAA"), "line 3: the key id must be"),
            (
                format!("{}x {}", "a".repeat(32), &K1[3..]),
                "line 1: the key id",
            ),
            (
                "k1 not*base64".into(),
                "line 1: the key is not standard base64",
            ),
            (
                short.into(),
                "line 1: key k1 is 31 bytes, a fleet key is exactly 32",
            ),
            (
                format!("{K1}\n{K2}\n{K1}"),
                "line 3: key id k1 is already used on line 1",
            ),
        ];
        for (text, want) in cases {
            let err = FleetKeys::parse(&text).expect_err(&text);
            let shown = err.to_string();
            assert!(shown.contains(want), "{text:?}: {shown}");
            assert!(
                !shown.contains(&K1[3..13]) && !shown.contains(&K2[3..13]),
                "{shown}"
            );
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("fleet.keys");
        let err = FleetKeys::load(&missing).expect_err("missing");
        assert!(matches!(err, SealError::KeyFileMissing { .. }));
        assert!(err.to_string().contains("mailferry keygen"));
        let err = FleetKeys::load(dir.path()).expect_err("a directory");
        assert!(matches!(err, SealError::KeyFileUnreadable { .. }), "{err}");
        std::fs::write(&missing, "k1 AAAA\n").expect("write");
        let err = FleetKeys::load(&missing).expect_err("short key");
        assert!(err.to_string().starts_with(&format!(
            "fleet key file {}, line 1: key k1 is 3 bytes",
            missing.display()
        )));
        let line = FleetKeys::generate_line().expect("keygen");
        std::fs::write(&missing, &line).expect("write");
        let keys = FleetKeys::load(&missing).expect("generated line loads");
        let id = keys.ids().next().expect("one id");
        assert!(id.len() == 9 && id.starts_with('k'), "{id}");
        assert!(id[1..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(line, FleetKeys::generate_line().expect("keygen"));
    }

    #[test]
    fn no_panic_on_truncated_or_random_input() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let sealed = keys.seal(b"ctx", b"some plaintext").expect("seal");
        for n in 0..sealed.len() {
            assert!(keys.open(b"ctx", &sealed[..n]).is_err(), "prefix {n}");
        }
        let mut buf = [0u8; 96];
        for round in 0..500 {
            random(&mut buf).expect("random");
            let len = usize::from(buf[0]) % buf.len();
            if round % 2 == 0 {
                // Keep the header plausible so the deeper checks run too.
                buf[1] = VERSION;
                buf[2] = 2;
                buf[3] = b'k';
                buf[4] = b'1';
            }
            assert!(keys.open(b"ctx", &buf[1..1 + len]).is_err());
            assert!(open_account(&keys, "p", Side::Source, &buf[1..1 + len]).is_err());
            let _ = FleetKeys::parse(&String::from_utf8_lossy(&buf[..len]));
        }
    }

    #[test]
    fn accounts_round_trip_and_stay_in_their_place() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let all = [
            Credentials::Password(Secret::new("pw-hunter2")),
            Credentials::OAuth2 {
                token_file: PathBuf::from("/run/secrets/token"),
            },
            Credentials::Admin {
                admin: "master".into(),
                secret: Secret::new("pw-admin-42"),
            },
            Credentials::OAuth2Token(Secret::new("ya29.access-token")),
        ];
        for creds in all {
            let sealed =
                seal_account(&keys, "pair-1", Side::Source, &endpoint(), &creds).expect("seal");
            let (ep, back) = open_account(&keys, "pair-1", Side::Source, &sealed).expect("open");
            assert_eq!(ep, endpoint());
            assert_eq!(format!("{back:?}"), format!("{creds:?}"));
            match (&creds, &back) {
                (Credentials::Password(a), Credentials::Password(b)) => assert_eq!(a, b),
                (
                    Credentials::Admin { admin, secret },
                    Credentials::Admin {
                        admin: a2,
                        secret: s2,
                    },
                ) => assert!(admin == a2 && secret == s2),
                (Credentials::OAuth2 { token_file }, Credentials::OAuth2 { token_file: t2 }) => {
                    assert_eq!(token_file, t2)
                }
                (Credentials::OAuth2Token(a), Credentials::OAuth2Token(b)) => assert_eq!(a, b),
                _ => panic!("variant changed"),
            }
            for (pair, side) in [("pair-1", Side::Target), ("pair-2", Side::Source)] {
                assert!(matches!(
                    open_account(&keys, pair, side, &sealed),
                    Err(SealError::Authentication)
                ));
            }
        }
    }

    /// A login mechanism is sealed with its endpoint; without one the encoding is unchanged.
    #[test]
    fn a_login_mechanism_travels_with_the_endpoint() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let creds = Credentials::Password(Secret::new("pw"));
        let mut ep = endpoint();
        ep.auth_mechanism = Some(mailferry_proto::task::AuthMechanism::Login);
        let sealed = seal_account(&keys, "p", Side::Source, &ep, &creds).expect("seal");
        let (back, _) = open_account(&keys, "p", Side::Source, &sealed).expect("open");
        assert_eq!(back, ep);
        let json = serde_json::to_string(&endpoint()).expect("json");
        assert!(!json.contains("auth_mechanism"), "{json}");
    }

    /// Accounts sealed before a credential kind was added still open: the encoding only grows.
    #[test]
    fn accounts_sealed_in_the_first_encoding_still_open() {
        let keys = FleetKeys::parse(K1).expect("keys");
        let aad = account_aad("pair-1", Side::Target);
        let endpoint_json = r#"{"host":"imap.example.org","port":993,"user":"alice","tls":"implicit","ca_file":null,"insecure_skip_verify":false}"#;
        for (creds, want) in [
            (r#"{"kind":"password","password":"pw-1"}"#, "Password"),
            (r#"{"kind":"oauth2","token_file":"/run/t"}"#, "OAuth2 {"),
            (
                r#"{"kind":"admin","admin":"master","password":"pw-2"}"#,
                "Admin {",
            ),
        ] {
            let plaintext = format!(r#"{{"endpoint":{endpoint_json},"credentials":{creds}}}"#);
            let sealed = keys.seal(&aad, plaintext.as_bytes()).expect("seal");
            let (ep, back) = open_account(&keys, "pair-1", Side::Target, &sealed).expect(creds);
            assert_eq!(ep, endpoint());
            assert!(format!("{back:?}").starts_with(want), "{back:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let keys = FleetKeys::parse(&format!("{K1}\n{K2}")).expect("keys");
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && shown.contains("k2"), "{shown}");
        assert!(
            !shown.contains(&K1[3..13]) && !shown.contains(&K2[3..13]),
            "{shown}"
        );
        // No key byte sequence either (K1's key is the bytes 0..32).
        assert!(!shown.contains("[0, 1, 2, 3"), "{shown}");
        let creds = Credentials::Password(Secret::new("pw-hunter2"));
        let sealed = seal_account(&keys, "p", Side::Target, &endpoint(), &creds).expect("seal");
        assert!(!sealed.windows(10).any(|w| w == b"pw-hunter2"));
        let token = Credentials::OAuth2Token(Secret::new("ya29.tokenvalue"));
        let sealed_token =
            seal_account(&keys, "p", Side::Target, &endpoint(), &token).expect("seal");
        assert!(!sealed_token.windows(8).any(|w| w == b"ya29.tok"));
        let opened = open_account(&keys, "p", Side::Target, &sealed_token).expect("open");
        assert!(!format!("{opened:?}").contains("ya29"));
        let opened = open_account(&keys, "p", Side::Target, &sealed).expect("open");
        assert!(!format!("{opened:?}").contains("hunter2"));
        let err = open_account(&keys, "p", Side::Source, &sealed).expect_err("wrong side");
        assert!(!format!("{err:?} {err}").contains("hunter2"));
    }
}
