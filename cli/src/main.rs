//! The `mailferry` binary: parse arguments, start logging, run the command, exit with a code
//! that scripts can rely on (README, "Exit codes"). No migration logic lives here.

mod admin;
mod args;
mod batch;
mod ctl;
mod embedded;
mod endpoint;
mod fleet_config;
mod output;
mod progress;
mod roles;

use clap::Parser;
use tokio::sync::watch;

/// Exit codes.
pub mod exit {
    /// Everything copied or already present.
    pub const OK: i32 = 0;
    /// Usage or configuration error; nothing ran.
    pub const USAGE: i32 = 2;
    /// Finished, but some messages failed (check: problems that would make migrate fail).
    pub const FAILURES: i32 = 3;
    /// Authentication failed.
    pub const AUTH: i32 = 4;
    /// Connection or TLS failure.
    pub const CONNECT: i32 = 5;
    /// Other fatal error.
    pub const FATAL: i32 = 6;
    /// Interrupted.
    pub const INTERRUPTED: i32 = 130;
}

fn main() {
    // One process-wide TLS provider (ring) for every client: IMAP, Redis, RabbitMQ, gRPC.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = args::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        )
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(exit::FATAL);
        }
    };
    let code = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("stopping: finishing the batches in hand (interrupt again to stop at once)");
            let _ = stop_tx.send(true);
            wait_for_signal().await;
            // Safe at any moment: the next run decides from the target's contents.
            std::process::exit(exit::INTERRUPTED);
        });
        // A service stopped by SIGTERM has done what was asked: its own code stands.
        let service = matches!(
            cli.command,
            args::Command::Coordinator(_) | args::Command::Worker(_)
        );
        let code = match cli.command {
            args::Command::Check(a) => embedded::check(a, stop_rx.clone()).await,
            args::Command::Migrate(a) => embedded::migrate(a, stop_rx.clone()).await,
            args::Command::Coordinator(a) => roles::coordinator(a, stop_rx.clone()).await,
            args::Command::Worker(a) => roles::worker(a, stop_rx.clone()).await,
            args::Command::Keygen => roles::keygen(),
            args::Command::Ctl(a) => ctl::run(a, stop_rx.clone()).await,
        };
        if *stop_rx.borrow() && !service {
            exit::INTERRUPTED
        } else {
            code
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
