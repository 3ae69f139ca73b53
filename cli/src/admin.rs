//! The admin HTTP port of a fleet process: `/live` (the process answers: 200), `/ready` (200
//! once it is connected and serving, 503 before and while draining) and `/metrics` (the
//! Prometheus text format of the process's recorder). A few lines of HTTP/1.1 on a TcpListener:
//! probes and scrapers need nothing more, and the process keeps a single admin listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Renders the metrics page (the Prometheus handle's `render`).
pub type Metrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds the admin port; the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--admin-listen {addr}: {e}"))
}

/// A Prometheus handle as the `/metrics` page; each scrape also runs the recorder's upkeep.
pub fn prometheus(handle: metrics_exporter_prometheus::PrometheusHandle) -> Metrics {
    Arc::new(move || {
        handle.run_upkeep();
        handle.render()
    })
}

/// Serves the admin routes until the process exits; `ready` decides `/ready`.
pub fn spawn(listener: TcpListener, ready: watch::Receiver<bool>, metrics: Metrics) {
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let ready = *ready.borrow();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut n = 0;
                // Read the request head (bounded); a slow or silent client is dropped.
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let (code, content_type, body) = route(&buf[..n], ready, metrics.as_ref());
                let head = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
}

/// The answer to a request head: status line text, content type and body.
fn route(
    head: &[u8],
    ready: bool,
    metrics: &(dyn Fn() -> String + Send + Sync),
) -> (&'static str, &'static str, String) {
    let head = String::from_utf8_lossy(head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let method = words.next().unwrap_or("");
    // A scraper may add a query string (`/metrics?name[]=...`): the route is the path alone.
    let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
    let text = "text/plain";
    if method != "GET" {
        return ("405 Method Not Allowed", text, "only GET\n".into());
    }
    match path {
        "/live" => ("200 OK", text, "live\n".into()),
        "/ready" if ready => ("200 OK", text, "ready\n".into()),
        "/ready" => ("503 Service Unavailable", text, "not ready\n".into()),
        "/metrics" => ("200 OK", PROMETHEUS_TEXT, metrics()),
        _ => (
            "404 Not Found",
            text,
            "not found: try /live, /ready or /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        "# TYPE mailferry_messages_copied_total counter\nmailferry_messages_copied_total 3\n".into()
    }

    #[test]
    fn routes_answer_by_path_and_readiness() {
        let cases: &[(&str, bool, &str, &str)] = &[
            ("GET /live HTTP/1.1\r\n\r\n", false, "200 OK", "live\n"),
            ("GET /ready HTTP/1.1\r\n\r\n", true, "200 OK", "ready\n"),
            (
                "GET /ready HTTP/1.1\r\n\r\n",
                false,
                "503 Service Unavailable",
                "not ready\n",
            ),
            (
                "GET /metrics?x=1 HTTP/1.1\r\n\r\n",
                false,
                "200 OK",
                "mailferry_messages_copied_total 3",
            ),
            (
                "GET /nope HTTP/1.1\r\n\r\n",
                true,
                "404 Not Found",
                "/metrics",
            ),
            (
                "POST /live HTTP/1.1\r\n\r\n",
                true,
                "405 Method Not Allowed",
                "only GET",
            ),
            ("", true, "405 Method Not Allowed", "only GET"),
        ];
        for (head, ready, code, body) in cases {
            let (c, _, b) = route(head.as_bytes(), *ready, &page);
            assert_eq!(c, *code, "{head:?}");
            assert!(b.contains(body), "{head:?}: {b:?}");
        }
        let (_, content_type, _) = route(b"GET /metrics HTTP/1.1\r\n\r\n", true, &page);
        assert_eq!(content_type, PROMETHEUS_TEXT);
    }

    /// `GET path` on a real socket: status code, headers and body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8(buf).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status");
        (code, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn the_admin_port_serves_probes_and_metrics() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (ready_tx, ready_rx) = watch::channel(false);
        spawn(listener, ready_rx, Arc::new(page));
        assert_eq!(get(addr, "/live").await.0, 200);
        assert_eq!(get(addr, "/ready").await.0, 503);
        ready_tx.send(true).expect("send");
        assert_eq!(get(addr, "/ready").await.0, 200);
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(head.contains(PROMETHEUS_TEXT), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(body, page());
        assert_eq!(get(addr, "/other").await.0, 404);
    }
}
