//! Logging in: with a password (AUTHENTICATE PLAIN or LOGIN), as an administrator for another
//! user (PLAIN with an authorization identity), or with an OAuth 2.0 access token (OAUTHBEARER
//! or XOAUTH2); the mechanism the endpoint names, or the one the server's capabilities suggest.
//!
//! A refusal says what the server said and what to do; a login the server never answers says
//! so, with the mechanism it hung on, rather than a bare timeout. Nothing here logs a secret.

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{AuthMechanism, Side};

use super::{Arg, Completion, Connection, astring};
use crate::imap::error::ImapResult;
use crate::imap::wire::{Response, Status, Value};

impl Connection {
    /// Logs in with a password: AUTHENTICATE PLAIN when offered (any byte in the password is
    /// safe there), LOGIN otherwise.
    pub async fn login(&mut self, user: &str, password: &str) -> ImapResult<()> {
        self.login_as(user, None, password, None).await
    }

    /// Logs in as `user`, or, with `admin`, as the administrator `admin` acting for `user`
    /// (SASL PLAIN with an authorization identity, RFC 4616 §2; Dovecot master users), by
    /// `mechanism` when one is named, else by AUTHENTICATE PLAIN where offered and LOGIN
    /// otherwise.
    pub async fn login_as(
        &mut self,
        user: &str,
        admin: Option<&str>,
        password: &str,
        mechanism: Option<AuthMechanism>,
    ) -> ImapResult<()> {
        if self.capabilities.is_empty() {
            self.refresh_capabilities().await?;
        }
        let flag = mechanism_flag(self.side);
        let mechanism = match mechanism {
            Some(m @ (AuthMechanism::Login | AuthMechanism::Plain)) => m,
            Some(m) => {
                return Err(self.err(
                    ErrorKind::Config,
                    format!("{flag} {m} logs in with an OAuth 2.0 access token, not a password; use login or plain"),
                ));
            }
            None if self.has_capability("AUTH=PLAIN") => AuthMechanism::Plain,
            None if admin.is_some() => {
                return Err(self.err(
                    ErrorKind::Config,
                    "the server does not offer AUTHENTICATE PLAIN, which an administrator login (--src-authuser / --dst-authuser) needs".into(),
                ));
            }
            None => AuthMechanism::Login,
        };
        if [user, admin.unwrap_or_default(), password]
            .iter()
            .any(|s| s.contains('\0'))
        {
            // LOGIN's strings cannot hold NUL (RFC 3501 §9, CHAR8), and PLAIN uses NUL to
            // separate its fields (RFC 4616 §2).
            return Err(self.err(
                ErrorKind::Config,
                "the user name or password contains a NUL byte, which no IMAP login can carry; check the password file".into(),
            ));
        }
        let done = match mechanism {
            AuthMechanism::Login => {
                if admin.is_some() {
                    return Err(self.err(
                        ErrorKind::Config,
                        format!("{flag} login cannot log in as an administrator acting for another user; use plain"),
                    ));
                }
                if self.has_capability("LOGINDISABLED") {
                    // RFC 3501 §6.2.3: a client must not send LOGIN when LOGINDISABLED is
                    // advertised.
                    return Err(self.err(
                        ErrorKind::Config,
                        "the server refuses LOGIN on this connection (LOGINDISABLED); use TLS (imaps:// or STARTTLS)".into(),
                    ));
                }
                // RFC 3501 §6.2.3: user name and password are astrings; each is quoted when it
                // can be and sent as a literal otherwise (8-bit, CR, LF), so any byte but NUL
                // arrives as typed.
                let args = [
                    Arg::text("LOGIN "),
                    astring(user),
                    Arg::text(" "),
                    astring(password),
                ];
                self.trace_secret(true);
                let done = self.run_args(&args).await;
                self.trace_secret(false);
                self.answered(done, "LOGIN")?
            }
            _ => {
                // authzid NUL authcid NUL password; without an administrator the authzid is
                // empty.
                let (authzid, authcid) = match admin {
                    Some(a) => (user, a),
                    None => ("", user),
                };
                let mut sasl =
                    Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
                sasl.extend_from_slice(authzid.as_bytes());
                sasl.push(0);
                sasl.extend_from_slice(authcid.as_bytes());
                sasl.push(0);
                sasl.extend_from_slice(password.as_bytes());
                let done = self.sasl("PLAIN", &base64(&sasl), "").await;
                self.answered(done, "AUTHENTICATE PLAIN")?
            }
        };
        self.logged_in(done, mechanism, "check the user name and password")
            .await
    }

    /// Logs in with an OAuth 2.0 access token: by `mechanism` when one is named, else
    /// OAUTHBEARER (RFC 7628) where offered and XOAUTH2 (Google's and Microsoft's mechanism)
    /// otherwise. A refused token's error ends with `advice`, which says how a fresh token
    /// reaches this login (a file, or the fleet API).
    pub async fn login_oauth2(
        &mut self,
        user: &str,
        token: &str,
        (host, port): (&str, u16),
        advice: &str,
        mechanism: Option<AuthMechanism>,
    ) -> ImapResult<()> {
        if self.capabilities.is_empty() {
            self.refresh_capabilities().await?;
        }
        let mechanism = match mechanism {
            Some(m) if m.takes_token() => m,
            Some(m) => {
                return Err(self.err(
                    ErrorKind::Config,
                    format!(
                        "{} {m} logs in with a password, not an OAuth 2.0 access token; use xoauth2 or oauthbearer",
                        mechanism_flag(self.side)
                    ),
                ));
            }
            None if self.has_capability("AUTH=OAUTHBEARER") => AuthMechanism::Oauthbearer,
            None if self.has_capability("AUTH=XOAUTH2") => AuthMechanism::Xoauth2,
            None => {
                return Err(self.err(
                    ErrorKind::Config,
                    "the server offers neither OAUTHBEARER nor XOAUTH2; log in with a password instead"
                        .into(),
                ));
            }
        };
        let done = if mechanism == AuthMechanism::Oauthbearer {
            // RFC 7628 §3.1: gs2 header with the user (`,` and `=` escaped), then key/values.
            let authzid = user.replace('=', "=3D").replace(',', "=2C");
            let msg = format!(
                "n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
            );
            // RFC 7628 §3.2.3: after an error challenge the client sends %x01.
            let done = self
                .sasl("OAUTHBEARER", &base64(msg.as_bytes()), "AQ==")
                .await;
            self.answered(done, "AUTHENTICATE OAUTHBEARER")?
        } else {
            let msg = format!("user={user}\x01auth=Bearer {token}\x01\x01");
            // After the JSON error challenge the client sends an empty response.
            let done = self.sasl("XOAUTH2", &base64(msg.as_bytes()), "").await;
            self.answered(done, "AUTHENTICATE XOAUTH2")?
        };
        self.logged_in(done, mechanism, advice).await
    }

    /// The login command's completion, or its failure with the real cause: a server that
    /// never answers the login is named as such, with the way round a broken mechanism.
    fn answered(&self, done: ImapResult<Completion>, command: &str) -> ImapResult<Completion> {
        done.map_err(|e| {
            if e.kind != ErrorKind::Transient || !e.message.contains("stopped responding") {
                return e;
            }
            let other = match command {
                "LOGIN" => "plain",
                _ => "login",
            };
            self.err(
                ErrorKind::Transient,
                format!(
                    "the server stopped responding to {command} (nothing for {}s); if it cannot do {command}, try {} {other}",
                    self.opts.timeout.as_secs(),
                    mechanism_flag(self.side)
                ),
            )
        })
    }

    async fn logged_in(
        &mut self,
        done: Completion,
        mechanism: AuthMechanism,
        advice: &str,
    ) -> ImapResult<()> {
        match done.status {
            Status::Ok => {
                if let Some(c) = done.code.filter(|c| c.name == "CAPABILITY") {
                    self.capabilities = c.args.iter().filter_map(Value::as_text).collect();
                } else {
                    self.refresh_capabilities().await?;
                }
                Ok(())
            }
            _ => {
                let code = done.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
                let kind = match code {
                    "UNAVAILABLE" | "INUSE" => ErrorKind::Throttled,
                    _ => ErrorKind::Auth,
                };
                let why = if done.text.is_empty() {
                    code.to_owned()
                } else {
                    done.text.clone()
                };
                let hint = crate::imap::error::throttle_hint(&done.text);
                let e = if kind == ErrorKind::Throttled || hint.is_some() {
                    self.err(
                        kind,
                        format!(
                            "the server refused the login for now ({why}); it asked to slow down"
                        ),
                    )
                } else if done.status == Status::Bad {
                    // BAD: the server did not take the command itself, so the password was
                    // never judged; another mechanism may get through.
                    let other = match mechanism {
                        AuthMechanism::Login => "plain",
                        AuthMechanism::Plain => "login",
                        AuthMechanism::Xoauth2 => "oauthbearer",
                        AuthMechanism::Oauthbearer => "xoauth2",
                    };
                    self.err(
                        kind,
                        format!(
                            "the server rejected the {} login as a bad command ({why}); try {} {other}",
                            mechanism.name().to_ascii_uppercase(),
                            mechanism_flag(self.side)
                        ),
                    )
                } else {
                    self.err(kind, format!("login refused ({why}); {advice}"))
                };
                Err(match hint {
                    Some(hint) => e.throttled(hint),
                    None if kind == ErrorKind::Throttled => e.throttled(None),
                    None => e,
                })
            }
        }
    }

    /// One SASL exchange (RFC 3501 §6.2.2, RFC 4959 SASL-IR): the initial response inline when
    /// the server takes it, else after the first `+`; any further challenge (an error report,
    /// as XOAUTH2 and OAUTHBEARER send) is answered with `ack` so the server can say NO.
    async fn sasl(&mut self, mech: &str, initial: &str, ack: &str) -> ImapResult<Completion> {
        self.trace_secret(true);
        let done = self.sasl_exchange(mech, initial, ack).await;
        self.trace_secret(false);
        done
    }

    /// Hides what the client sends from the protocol trace while `on` (a login's secrets).
    fn trace_secret(&mut self, on: bool) {
        if let Some(t) = self.tracer.as_mut() {
            t.secret = on;
        }
    }

    async fn sasl_exchange(
        &mut self,
        mech: &str,
        initial: &str,
        ack: &str,
    ) -> ImapResult<Completion> {
        let inline = self.has_capability("SASL-IR");
        let tag = if inline {
            self.send_line(&format!("AUTHENTICATE {mech} {initial}"))
                .await?
        } else {
            self.send_line(&format!("AUTHENTICATE {mech}")).await?
        };
        let mut sent_initial = inline;
        let mut challenges = 0;
        while challenges < 8 {
            match self.read_response().await? {
                Response::Continue(_) => {
                    challenges += 1;
                    let reply = if sent_initial { ack } else { initial };
                    sent_initial = true;
                    let mut line = reply.as_bytes().to_vec();
                    line.extend_from_slice(b"\r\n");
                    if let Some(t) = &self.tracer {
                        t.client(&[crate::imap::trace::Sent::Text(reply)]);
                    }
                    self.write(&line).await?;
                    self.flush().await?;
                }
                Response::UntaggedStatus {
                    status: Status::Bye,
                    code,
                    text,
                } => return Err(self.bye_error(code.as_ref(), &text)),
                other => {
                    if let Some(done) = self.completion_for(&tag, other, &mut Vec::new()) {
                        return Ok(done);
                    }
                }
            }
        }
        Err(self.err(
            ErrorKind::Protocol,
            format!("the server kept challenging AUTHENTICATE {mech}"),
        ))
    }
}

/// The flag that names one side's login mechanism, for advice in messages.
fn mechanism_flag(side: Side) -> &'static str {
    match side {
        Side::Source => "--src-auth-mechanism",
        Side::Target => "--dst-auth-mechanism",
    }
}

/// Standard base64 (RFC 4648 §4) with padding, for SASL.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
    }
}
