//! A connection against scripted hostile servers on loopback: every size, depth and pace a
//! server decides is bounded where the bytes are read, and each refusal is an error of a kind
//! that says what happens next, never a crash, a hang or unbounded memory.
//!
//! Each server here is a few lines of raw bytes over a real socket: what a broken or malicious
//! server sends, not an IMAP implementation.

use std::future::Future;
use std::time::{Duration, Instant};

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{Endpoint, Side, TlsMode};
use mailferry_worker::imap::conn::{ConnectOptions, Connection};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Serves one connection with `script` on a free loopback port.
async fn serve<F, Fut>(script: F) -> u16
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            // A bound on every script: the test process never keeps a server for long.
            let _ = tokio::time::timeout(Duration::from_secs(60), script(stream)).await;
        }
    });
    port
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        user: "alice".into(),
        tls: TlsMode::None,
        ca_file: None,
        insecure_skip_verify: false,
        auth_mechanism: None,
    }
}

fn options(timeout_secs: u64) -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(timeout_secs),
        ..ConnectOptions::default()
    }
}

/// Reads one command line and returns its tag.
async fn read_tag(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).await.expect("a command line");
    line.split(' ').next().unwrap_or_default().to_owned()
}

/// A connection with 1 s of inactivity timeout and a progress floor of 100 bytes/s.
async fn connect_under_floor(port: u16) -> Connection {
    let opts = ConnectOptions {
        timeout: Duration::from_secs(1),
        min_rate: 100,
        ..ConnectOptions::default()
    };
    Connection::connect(&endpoint(port), Side::Source, &opts)
        .await
        .expect("the greeting arrives")
}

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n";

#[tokio::test]
async fn a_greeting_nested_ten_thousand_deep_is_a_protocol_error() {
    // Before the depth limit this aborted the process (stack overflow, exit 134).
    let port = serve(|mut s| async move {
        let mut g = b"* OK [CAPABILITY ".to_vec();
        g.extend(std::iter::repeat_n(b'(', 10_000));
        g.extend_from_slice(b"] hi\r\n");
        let _ = s.write_all(&g).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let e = Connection::connect(&endpoint(port), Side::Source, &options(5))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(e.message.contains("nested"), "{e}");
}

#[tokio::test]
async fn a_line_that_never_ends_is_refused_in_linear_time() {
    // 9 MB without a line end: refused past the 8 MiB line limit. Before, each read copied the
    // whole buffer (1.6 MB took 51 s) and the limit was 64 MiB.
    let port = serve(|mut s| async move {
        let _ = s.write_all(GREETING).await;
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..(9 * 16) {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let started = Instant::now();
    let mut c = Connection::connect(&endpoint(port), Side::Source, &options(20))
        .await
        .unwrap();
    let e = c.read_response().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(e.message.contains("line longer than"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_server_meets_the_progress_floor() {
    // One byte every 200 ms never lets the inactivity timeout fire; the floor (100 B/s after
    // 1 s of grace) ends the wait after about a second.
    let port = serve(|mut s| async move {
        let _ = s.write_all(GREETING).await;
        for _ in 0..300 {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let mut c = connect_under_floor(port).await;
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), c.read_response())
        .await
        .expect("the progress floor must end the wait")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("too slowly"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn small_answers_for_ever_meet_the_progress_floor() {
    // Complete untagged responses every 300 ms, the command never completed.
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let _ = read_tag(&mut r).await;
        for _ in 0..300 {
            if r.get_mut().write_all(b"* OK still busy\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let mut c = connect_under_floor(port).await;
    let e = tokio::time::timeout(Duration::from_secs(20), c.run("NOOP"))
        .await
        .expect("the progress floor must end the command")
        .unwrap_err();
    assert!(e.message.contains("too slowly"), "{e}");
}

#[tokio::test]
async fn literals_beyond_what_was_asked_are_refused_before_they_are_read() {
    // Twenty literals of 50 MB in one FETCH response grew the process to 1 GB before; the
    // allowance refuses the first one beyond it as it is announced.
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let tag = read_tag(&mut r).await;
        let mut head = b"* 1 FETCH (UID 1 BODY[] {52428800}\r\n".to_vec();
        head.truncate(head.len());
        let _ = r.get_mut().write_all(&head).await;
        let body = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            if r.get_mut().write_all(&body).await.is_err() {
                return;
            }
        }
        let _ = r
            .get_mut()
            .write_all(format!(")\r\n{tag} OK done\r\n").as_bytes())
            .await;
    })
    .await;
    let mut c = Connection::connect(&endpoint(port), Side::Source, &options(10))
        .await
        .unwrap();
    // A 1,000-byte message was asked for.
    c.expect_literals(1000 + 256 * 1024, 1000 + 256 * 1024);
    let tag = c.start_uid_fetch("1", "UID BODY.PEEK[]").await.unwrap();
    let e = c.next_fetch(&tag).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(e.message.contains("literal"), "{e}");
}

#[tokio::test]
async fn many_literals_in_one_unasked_response_are_refused() {
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let _ = read_tag(&mut r).await;
        let _ = r.get_mut().write_all(b"* 1 FETCH (").await;
        let body = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            let _ = r.get_mut().write_all(b"BODY[] {1048576}\r\n").await;
            if r.get_mut().write_all(&body).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut c = Connection::connect(&endpoint(port), Side::Source, &options(10))
        .await
        .unwrap();
    let e = c.run("NOOP").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(
        e.message.contains("more than 4194304 bytes of literals"),
        "{e}"
    );
}

#[tokio::test]
async fn a_login_answered_with_a_bare_lf_succeeds() {
    // A server that ends its tagged answer with LF alone; mailferry waited for CRLF until the
    // timeout and retried the login for ever.
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let tag = read_tag(&mut r).await;
        let _ = r.get_mut().write_all(b"+ \r\n").await;
        let mut sasl = String::new();
        let _ = r.read_line(&mut sasl).await;
        let _ = r
            .get_mut()
            .write_all(
                format!("{tag} OK AUTHENTICATE PLAIN authentication successful\n").as_bytes(),
            )
            .await;
        // Every later command (CAPABILITY after the login, then NOOP) gets LF-ended lines too.
        for _ in 0..4 {
            let tag = read_tag(&mut r).await;
            if tag.is_empty() {
                return;
            }
            let _ = r
                .get_mut()
                .write_all(format!("* 3 EXISTS\n{tag} OK done\n").as_bytes())
                .await;
        }
    })
    .await;
    let mut c = Connection::connect(&endpoint(port), Side::Source, &options(5))
        .await
        .unwrap();
    let started = Instant::now();
    c.login("alice", "secret").await.unwrap();
    let done = c.run("NOOP").await.unwrap();
    assert_eq!(done.untagged.len(), 1, "{done:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_untagged_flood_to_one_command_is_refused() {
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let _ = read_tag(&mut r).await;
        let line = b"* LIST () \"/\" \"a folder name of some length to fill the stream\"\r\n";
        let block: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 1024)
            .collect();
        // 70 MiB of LIST lines, never completed.
        for _ in 0..(70 * 1024 * 1024 / block.len() + 1) {
            if r.get_mut().write_all(&block).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut c = Connection::connect(&endpoint(port), Side::Source, &options(10))
        .await
        .unwrap();
    let e = c.run("LIST \"\" \"*\"").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(e.message.contains("untagged"), "{e}");
}

#[tokio::test]
async fn completions_of_commands_never_sent_are_not_kept() {
    // While waiting for `+`, a server sends completions for tags it made up; they are dropped,
    // and the real completion still arrives.
    let port = serve(|s| async move {
        let mut r = BufReader::new(s);
        let _ = r.get_mut().write_all(GREETING).await;
        let mut line = String::new();
        let _ = r.read_line(&mut line).await;
        let tag = line.split(' ').next().unwrap_or_default().to_owned();
        let mut junk = String::new();
        for i in 0..20_000 {
            junk.push_str(&format!(
                "x{i} OK nothing\r\nm{} OK later\r\n",
                1_000_000 + i
            ));
        }
        let _ = r.get_mut().write_all(junk.as_bytes()).await;
        let _ = r.get_mut().write_all(b"+ go\r\n").await;
        let mut lit = vec![0u8; 3];
        let _ = tokio::io::AsyncReadExt::read_exact(&mut r, &mut lit).await;
        let _ = r.read_line(&mut line).await;
        let _ = r
            .get_mut()
            .write_all(format!("{tag} OK [APPENDUID 1 1] done\r\n").as_bytes())
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut c = Connection::connect(&endpoint(port), Side::Target, &options(5))
        .await
        .unwrap();
    use mailferry_worker::imap::conn::Arg;
    let done = c
        .run_args(&[Arg::text("APPEND INBOX "), Arg::Literal(b"abc")])
        .await
        .unwrap();
    assert_eq!(done.code.map(|c| c.name), Some("APPENDUID".to_owned()));
}
