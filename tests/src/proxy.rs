//! A byte-transparent TCP proxy in front of a real server that can cut one connection once,
//! after a number of bytes in one direction: the "connection dropped mid-FETCH" (server to
//! client) and "dropped mid-APPEND" (client to server) cases.
//!
//! It listens on `127.0.0.1:0` and forwards every byte unchanged, so plain IMAP and STARTTLS
//! both pass (the test certificate names `127.0.0.1`). After its one cut it forwards normally,
//! so a client that reconnects must resume. It must not look into the bytes; tests decide
//! where to cut by counting. Everything stops when the [`Proxy`] is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The direction whose bytes are counted for a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What the server sends (FETCH results).
    ServerToClient,
    /// What the client sends (APPEND literals).
    ClientToServer,
}

/// Which connection a cut applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Only the k-th connection accepted (1-based).
    Nth(usize),
    /// The first connection whose count passes the threshold, whichever it is.
    FirstPassing,
}

/// Cut one connection once, after `after_bytes` bytes in `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The direction counted.
    pub direction: Direction,
    /// Bytes forwarded in that direction before the connection is closed both ways.
    pub after_bytes: u64,
    /// Which connection.
    pub which: Which,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    cut_done: AtomicBool,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running proxy; stops (listener and every connection) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream_port`, with an optional cut.
    pub async fn start(upstream_port: u16, cut: Option<Cut>) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let index = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let shared = shared.clone();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    relay(client, server, index, cut, &shared).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Proxy {
            addr,
            counters,
            task,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Whether the cut has happened.
    pub fn cut_done(&self) -> bool {
        self.counters.cut_done.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far: (client to server, server to client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counters.bytes_up.load(Ordering::SeqCst),
            self.counters.bytes_down.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards both ways until either side closes or the cut fires; then both sockets are
/// dropped (closed) together.
async fn relay(client: TcpStream, server: TcpStream, index: usize, cut: Option<Cut>, c: &Counters) {
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let cut_for = |d: Direction| cut.filter(|k| k.direction == d);
    let up = pump(
        client_r,
        server_w,
        index,
        cut_for(Direction::ClientToServer),
        c,
        &c.bytes_up,
    );
    let down = pump(
        server_r,
        client_w,
        index,
        cut_for(Direction::ServerToClient),
        c,
        &c.bytes_down,
    );
    // Whichever direction ends first (EOF, error or cut) ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    index: usize,
    cut: Option<Cut>,
    c: &Counters,
    total: &AtomicU64,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut seen: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        let eligible = cut.filter(|k| match k.which {
            Which::Nth(k) => k == index,
            Which::FirstPassing => true,
        });
        if let Some(k) = eligible
            && !c.cut_done.load(Ordering::SeqCst)
            && seen + n as u64 > k.after_bytes
            && c.cut_done
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let keep = usize::try_from(k.after_bytes.saturating_sub(seen)).unwrap_or(n);
            let _ = to.write_all(chunk.get(..keep).unwrap_or_default()).await;
            total.fetch_add(keep as u64, Ordering::SeqCst);
            return;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
        seen += n as u64;
        total.fetch_add(n as u64, Ordering::SeqCst);
    }
}
