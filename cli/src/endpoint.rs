//! Endpoint URLs: `imaps://USER@HOST[:PORT]` and `imap://USER@HOST[:PORT]`.

use mailferry_proto::task::TlsMode;

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// TLS mode implied by the scheme.
    pub tls: TlsMode,
    /// Login name (percent-decoded).
    pub user: String,
    /// Password given in the URL (discouraged).
    pub password: Option<String>,
    /// Host.
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
}

/// Parses an endpoint URL. Errors are sentences for people and never contain the password.
pub fn parse(url: &str, flag: &str) -> Result<EndpointUrl, String> {
    let (tls, rest, default_port) = if let Some(r) = url.strip_prefix("imaps://") {
        (TlsMode::Implicit, r, 993)
    } else if let Some(r) = url.strip_prefix("imap://") {
        (TlsMode::Starttls, r, 143)
    } else {
        return Err(format!(
            "{flag} must look like imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let Some(at) = rest.rfind('@') else {
        return Err(format!("{flag} has no user: write imaps://USER@HOST"));
    };
    let (userinfo, hostport) = (&rest[..at], &rest[at + 1..]);
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (
            u,
            Some(percent_decode(p).ok_or_else(|| {
                format!("{flag}: the password in the URL is not valid percent-encoding")
            })?),
        ),
        None => (userinfo, None),
    };
    let user = percent_decode(user)
        .ok_or_else(|| format!("{flag}: the user name is not valid percent-encoding"))?;
    if user.is_empty() {
        return Err(format!("{flag} has an empty user name"));
    }
    check_user(&user).map_err(|e| format!("{flag}: {e}"))?;
    let (host, port) = split_host_port(hostport)
        .ok_or_else(|| format!("{flag}: {hostport:?} is not HOST or HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("{flag} has no host"));
    }
    check_host(&host).map_err(|e| format!("{flag}: {e}"))?;
    Ok(EndpointUrl {
        tls,
        user,
        password,
        host,
        port: port.unwrap_or(default_port),
    })
}

/// A user name as IMAP can carry it: no control characters (a CR/LF would end the LOGIN line
/// and start another command; a NUL ends SASL PLAIN's field). The error never echoes it raw.
pub fn check_user(user: &str) -> Result<(), String> {
    if user.chars().any(char::is_control) {
        return Err(format!(
            "the user name \"{}\" holds a control character (CR, LF, NUL, ...); no IMAP login has one",
            crate::input::shown(user)
        ));
    }
    if user.len() > 1024 {
        return Err("the user name is longer than 1024 bytes".into());
    }
    Ok(())
}

/// A host name or address: no white space, control characters, `/`, `@`, brackets or `%`, a
/// `:` only in an IPv6 address, at most 253 bytes (as the API's edge checks). The error never
/// echoes control characters raw.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.len() > 253
        || host.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']' | '%')
        })
        || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err())
    {
        return Err(format!(
            "\"{}\" is not a host name or address",
            crate::input::shown(host)
        ));
    }
    Ok(())
}

/// `HOST`, `HOST:PORT`, `[IPv6]` or `[IPv6]:PORT`; a port is 1 to 65535 in decimal digits.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_number(p)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), Some(port_number(p)?))),
        None => Some((s.to_owned(), None)),
    }
}

/// A TCP port as written in a URL: digits only (`parse` alone takes "+993"), never 0.
fn port_number(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                // `from_str_radix` alone would take "%+f" as 0x0f.
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// With `--batch`: `imaps://HOST[:PORT]` or `imap://HOST[:PORT]`, the TLS mode and default
/// host of every record (users come from the file).
pub fn parse_host(url: &str, flag: &str) -> Result<EndpointUrl, String> {
    let usage = || {
        format!(
            "with --batch, {flag} must look like imaps://HOST[:PORT] or imap://HOST[:PORT] (users come from the file)"
        )
    };
    let (tls, rest, default_port) = if let Some(r) = url.strip_prefix("imaps://") {
        (TlsMode::Implicit, r, 993)
    } else if let Some(r) = url.strip_prefix("imap://") {
        (TlsMode::Starttls, r, 143)
    } else {
        return Err(usage());
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') || rest.is_empty() {
        return Err(usage());
    }
    let (host, port) = split_host_port(rest).ok_or_else(usage)?;
    if host.is_empty() {
        return Err(usage());
    }
    check_host(&host).map_err(|e| format!("{flag}: {e}"))?;
    Ok(EndpointUrl {
        tls,
        user: String::new(),
        password: None,
        host,
        port: port.unwrap_or(default_port),
    })
}

/// Whether a host is on the loopback interface.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_users_and_ports() {
        let e = parse("imaps://alice@old.example.net", "--src").unwrap();
        assert_eq!(
            (e.tls, e.user.as_str(), e.host.as_str(), e.port),
            (TlsMode::Implicit, "alice", "old.example.net", 993)
        );
        let e = parse("imap://alice%40example.org@127.0.0.1:1143", "--src").unwrap();
        assert_eq!(
            (e.tls, e.user.as_str(), e.port),
            (TlsMode::Starttls, "alice@example.org", 1143)
        );
        let e = parse("imaps://bob@corp.example@[::1]:993", "--dst").unwrap();
        assert_eq!(
            (e.user.as_str(), e.host.as_str()),
            ("bob@corp.example", "::1")
        );
        let e = parse("imaps://u:p%21ss@h", "--dst").unwrap();
        assert_eq!(e.password.as_deref(), Some("p!ss"));
    }

    #[test]
    fn rejects_bad_urls_without_echoing_passwords() {
        for bad in [
            "http://a@b",
            "imaps://host",
            "imaps://@host",
            "imaps://a@host:99999",
            "imaps://a@",
            "imaps://a@h:x",
            "imaps://a@h:0",
            "imaps://a@h:+993",
            "imaps://a%+f@h",
        ] {
            assert!(parse(bad, "--src").is_err(), "{bad}");
        }
        let err = parse("imaps://u:secret%zz@h", "--src").unwrap_err();
        assert!(!err.contains("secret"));
    }

    #[test]
    fn control_characters_in_users_and_hosts_are_refused_and_never_echoed() {
        for bad in [
            "imaps://a%0d%0aA1%20DELETE%20INBOX@h",
            "imaps://a%00b@h",
            "imaps://a%0Ab@h",
            "imaps://a@h\nx",
            "imaps://a@h x",
            "imaps://a\r\nb@h",
            "imaps://a@[h]x]:993",
            "imaps://a@[not:v6]",
        ] {
            let e = parse(bad, "--src").expect_err(bad);
            assert!(!e.contains(['\r', '\n', '\0']), "{bad}: {e:?}");
        }
        let e = parse("imaps://a%0d%0ab@h", "--src").unwrap_err();
        assert!(e.contains("control character"), "{e}");
        assert!(parse_host("imaps://h\r\n", "--src").is_err());
    }

    #[test]
    fn batch_urls_carry_no_user() {
        let e = parse_host("imap://127.0.0.1:1143", "--src").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (TlsMode::Starttls, "127.0.0.1", 1143)
        );
        assert_eq!(
            parse_host("imaps://mail.example.org", "--dst")
                .unwrap()
                .port,
            993
        );
        for bad in ["imaps://a@h", "imaps://", "h:1", "imap://h:x"] {
            assert!(parse_host(bad, "--src").is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(
            is_loopback("127.0.0.1")
                && is_loopback("::1")
                && is_loopback("localhost")
                && is_loopback("127.3.4.5")
        );
        assert!(!is_loopback("example.org") && !is_loopback("10.0.0.1"));
    }
}
