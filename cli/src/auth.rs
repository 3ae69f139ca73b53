//! `--src-auth-mechanism` / `--dst-auth-mechanism` (and the `src_auth_mechanism`,
//! `dst_auth_mechanism` columns of `--batch`): the name of a login mechanism, and whether it can
//! log in with the credentials the other flags give that side. Every problem is a sentence that
//! names the flag (or column) and says what to do; none holds a secret.

use mailferry_proto::task::AuthMechanism;

/// How one side's credentials are given, as far as the mechanism cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// A password of the user.
    Password,
    /// An administrator's password, for the user (`--src-authuser`).
    Admin,
    /// An OAuth 2.0 access token (`--src-oauth2-token-file`).
    Token,
}

/// The mechanism a flag or column names, or why it names none.
pub fn parse(value: &str) -> Result<AuthMechanism, String> {
    AuthMechanism::from_name(value).ok_or_else(|| {
        let names: Vec<&str> = AuthMechanism::ALL.iter().map(|m| m.name()).collect();
        format!(
            "{:?} is not a login mechanism: use {}",
            crate::input::shown(value),
            names.join(", ")
        )
    })
}

/// Why `mechanism` cannot log in with what `given` is, if it cannot. `side` is the flag prefix
/// (`--src`, `--dst`); the sentence starts with the mechanism's flag.
pub fn misfit(side: &str, mechanism: AuthMechanism, given: Given) -> Option<String> {
    let flag = format!("{side}-auth-mechanism {mechanism}");
    match (mechanism, given) {
        (AuthMechanism::Login, Given::Admin) => Some(format!(
            "{flag} and {side}-authuser exclude each other: the LOGIN command cannot log in as an administrator acting for another user; use plain (or leave {side}-auth-mechanism out)"
        )),
        (m, Given::Password | Given::Admin) if m.takes_token() => Some(format!(
            "{flag} logs in with an OAuth 2.0 access token: give it in {side}-oauth2-token-file, or use login or plain with a password"
        )),
        (m, Given::Token) if !m.takes_token() => Some(format!(
            "{flag} and {side}-oauth2-token-file exclude each other: {} logs in with a password; use xoauth2 or oauthbearer (or leave {side}-auth-mechanism out)",
            m.name().to_ascii_uppercase()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_without_case_and_bad_ones_list_the_choices() {
        assert_eq!(parse("LOGIN"), Ok(AuthMechanism::Login));
        assert_eq!(parse(" plain "), Ok(AuthMechanism::Plain));
        assert_eq!(parse("OAuthBearer"), Ok(AuthMechanism::Oauthbearer));
        let e = parse("cram-md5").unwrap_err();
        assert!(
            e.contains("cram-md5") && e.contains("login, plain, xoauth2, oauthbearer"),
            "{e}"
        );
    }

    #[test]
    fn impossible_combinations_are_named() {
        use AuthMechanism::*;
        let fits = |m, g| misfit("--src", m, g).is_none();
        assert!(fits(Login, Given::Password) && fits(Plain, Given::Password));
        assert!(fits(Plain, Given::Admin) && !fits(Login, Given::Admin));
        assert!(fits(Xoauth2, Given::Token) && fits(Oauthbearer, Given::Token));
        assert!(!fits(Plain, Given::Token) && !fits(Login, Given::Token));
        assert!(!fits(Xoauth2, Given::Password) && !fits(Oauthbearer, Given::Admin));
        let e = misfit("--dst", Login, Given::Admin).unwrap_or_default();
        assert!(
            e.starts_with("--dst-auth-mechanism login and --dst-authuser"),
            "{e}"
        );
    }
}
