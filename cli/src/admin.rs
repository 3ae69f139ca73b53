//! The admin HTTP port of a fleet process: `/live` (the process answers: 200) and `/ready`
//! (200 once it is connected and serving, 503 before and while draining). A few lines of
//! HTTP/1.1 on a TcpListener: probes need nothing more.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Binds the admin port; the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--admin-listen {addr}: {e}"))
}

/// Serves probes until the process exits; `ready` decides `/ready`.
pub fn spawn(listener: TcpListener, ready: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let ready = *ready.borrow();
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
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("");
                let (code, body) = match path {
                    "/live" => ("200 OK", "live\n"),
                    "/ready" if ready => ("200 OK", "ready\n"),
                    "/ready" => ("503 Service Unavailable", "not ready\n"),
                    _ => ("404 Not Found", "not found: try /live or /ready\n"),
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
}
