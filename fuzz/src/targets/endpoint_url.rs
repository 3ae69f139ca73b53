//! `mailferry_cli::endpoint`: the `--src`/`--dst` URLs (`imaps://USER[:PASSWORD]@HOST[:PORT]`)
//! and the `--batch` host URLs. Checks that what is accepted is usable (a user without control
//! characters, a host as `check_host` allows, a port that is not 0),
//! that an accepted URL written back reads the same, and that no error repeats the password.

use mailferry_cli::endpoint::{EndpointUrl, check_host, parse, parse_host};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "endpoint_url",
    about: "mailferry_cli::endpoint: --src/--dst and --batch host URLs",
    run,
    dictionaries: &[URL, dict::NUMBERS],
    generate: None,
    max_len: 4 * 1024,
    hidden: false,
};

/// URL syntax.
const URL: &[&[u8]] = &[
    b"imaps://",
    b"imap://",
    b"@",
    b":",
    b"[",
    b"]",
    b"[::1]",
    b"%",
    b"%40",
    b"%0d%0a",
    b"%00",
    b"%zz",
    b"/",
    b"127.0.0.1",
    b":993",
    b":0",
    b":65536",
    b" ",
    b"\r\n",
];

fn run(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    match parse(url, "--src") {
        Ok(e) => {
            usable(&e);
            assert!(!e.user.is_empty());
            let again = parse(&written_back(&e, true), "--src").expect("written back");
            assert_eq!(again, e, "{url:?}");
        }
        Err(message) => {
            if let Some(password) = raw_password(url) {
                assert!(!message.contains(password), "{message:?} repeats the password");
            }
        }
    }
    if let Ok(e) = parse_host(url, "--src") {
        usable(&e);
        assert!(e.user.is_empty() && e.password.is_none());
        let again = parse_host(&written_back(&e, false), "--src").expect("written back");
        assert_eq!(again, e, "{url:?}");
    }
}

fn usable(e: &EndpointUrl) {
    assert!(!e.user.chars().any(char::is_control), "user {:?}", e.user);
    assert!(!e.host.is_empty() && e.host.len() <= 253, "host {:?}", e.host);
    assert!(
        !e.host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/'),
        "host {:?}",
        e.host
    );
    assert_eq!(check_host(&e.host), Ok(()));
    assert_ne!(e.port, 0);
}

/// The URL of a parsed endpoint: user and password percent-encoded whole, the host bracketed.
fn written_back(e: &EndpointUrl, with_user: bool) -> String {
    let scheme = match e.tls {
        mailferry_proto::task::TlsMode::Implicit => "imaps",
        _ => "imap",
    };
    let mut out = format!("{scheme}://");
    if with_user {
        out.push_str(&encoded(&e.user));
        if let Some(p) = &e.password {
            out.push(':');
            out.push_str(&encoded(p));
        }
        out.push('@');
    }
    out.push_str(&format!("[{}]:{}", e.host, e.port));
    out
}

fn encoded(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The password as written in the URL, when there is one long and distinct enough that finding
/// it in a message means the message repeats it (not a host or user that happens to contain it).
fn raw_password(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("imaps://")
        .or_else(|| url.strip_prefix("imap://"))?;
    let userinfo = &rest[..rest.rfind('@')?];
    let password = userinfo.split_once(':')?.1;
    (password.len() >= 8 && url.matches(password).count() == 1).then_some(password)
}
