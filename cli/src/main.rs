//! The `mailferry` binary: parse arguments, start logging (and trace export, `telemetry`), run
//! the command, flush, exit with a code that scripts can rely on (README, "Exit codes"). No
//! migration logic lives here.

mod admin;
mod args;
mod auth;
mod ctl;
mod embedded;
mod fleet_config;
mod output;
mod preflight;
mod progress;
mod roles;
mod telemetry;

use mailferry_cli::{batch, endpoint, input};

use clap::{CommandFactory, FromArgMatches};
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
    /// Finished for today: some mail waits for the target's daily upload budget (given only
    /// when nothing worse happened).
    pub const DEFERRED: i32 = 9;
    /// Interrupted.
    pub const INTERRUPTED: i32 = 130;

    /// The exit code of several outcomes: the worst, where a deferral counts only when all
    /// else went well.
    pub fn worst(codes: impl IntoIterator<Item = i32>) -> i32 {
        let mut deferred = false;
        let mut worst = OK;
        for c in codes {
            if c == DEFERRED {
                deferred = true;
            } else {
                worst = worst.max(c);
            }
        }
        if worst == OK && deferred {
            DEFERRED
        } else {
            worst
        }
    }
}

fn main() {
    // One process-wide TLS provider (ring) for every client: IMAP, Redis, RabbitMQ, gRPC.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cli, log_format) = parse();
    // At least two workers: the trace exporter's thread waits on this runtime (telemetry.rs).
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
        let (telemetry, error) = telemetry::init(log_format, service_name(&cli.command));
        if let Some(e) = error {
            eprintln!("warning: traces are not exported: {e}");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopping = match &cli.command {
            // A run on this machine stops within a second or two, whatever it waits on.
            args::Command::Check(_) | args::Command::Migrate(_) => format!(
                "stopping: work in hand gets {}s to finish, the rest is left to the next run (interrupt again to stop at once)",
                embedded::INTERRUPT_GRACE.as_secs()
            ),
            _ => "stopping: finishing the batches in hand (interrupt again to stop at once)".into(),
        };
        tokio::spawn(async move {
            wait_for_signal().await;
            // On a terminal the progress line has no line end yet: end it first.
            let fresh_line = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                "\n"
            } else {
                ""
            };
            eprintln!("{fresh_line}{stopping}");
            let _ = stop_tx.send(true);
            wait_for_signal().await;
            // Safe at any moment: the next run decides from the target's contents.
            std::process::exit(exit::INTERRUPTED);
        });
        // A service stopped by SIGTERM has done what was asked: its own code stands.
        // So has `migrate --sync-every` stopped between passes (a pass it interrupts says so in
        // its own code).
        let service = match &cli.command {
            args::Command::Coordinator(_) | args::Command::Worker(_) => true,
            args::Command::Migrate(a) => a.sync_every.is_some(),
            _ => false,
        };
        let code = match cli.command {
            args::Command::Check(a) => embedded::check(a, stop_rx.clone()).await,
            args::Command::Migrate(a) => embedded::migrate(a, stop_rx.clone()).await,
            args::Command::Coordinator(a) => roles::coordinator(a, stop_rx.clone()).await,
            args::Command::Worker(a) => roles::worker(a, stop_rx.clone()).await,
            args::Command::Keygen => roles::keygen(),
            args::Command::Ctl(a) => ctl::run(a, stop_rx.clone()).await,
        };
        telemetry.shutdown().await;
        if *stop_rx.borrow() && !service {
            exit::INTERRUPTED
        } else {
            code
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

/// The arguments, and `--log-format` (`MAILFERRY_LOG_FORMAT`): a global flag added to the
/// command line here, where logging is set up, so that every subcommand takes it.
fn parse() -> (args::Cli, telemetry::LogFormat) {
    let command = args::Cli::command().arg(
        clap::Arg::new("log_format")
            .long("log-format")
            .env("MAILFERRY_LOG_FORMAT")
            .global(true)
            .value_name("FORMAT")
            .value_parser(clap::builder::EnumValueParser::<telemetry::LogFormat>::new())
            .default_value("text")
            .help("Log lines on stderr as text or as JSON objects, one per line"),
    );
    let matches = command.get_matches();
    let format = matches
        .get_one::<telemetry::LogFormat>("log_format")
        .copied()
        .unwrap_or_default();
    match args::Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, format),
        Err(e) => e.exit(),
    }
}

/// The `service.name` of this process's traces (unless `OTEL_SERVICE_NAME` says otherwise).
fn service_name(command: &args::Command) -> &'static str {
    match command {
        args::Command::Coordinator(_) => "mailferry-coordinator",
        args::Command::Worker(_) => "mailferry-worker",
        args::Command::Ctl(_) => "mailferry-ctl",
        args::Command::Check(_) | args::Command::Migrate(_) | args::Command::Keygen => "mailferry",
    }
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
