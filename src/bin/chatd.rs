//! `chatd`: the chat server. Parses arguments, sets up logging and runs the library's server.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match serve(ServerArgs::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, not a debug dump: this is what a person starting the server reads.
            eprintln!("chatd: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if args.tcp.is_none() && args.udp.is_none() {
        anyhow::bail!("nothing to serve: give --tcp PORT and/or --udp PORT (see --help)");
    }
    chatd::info::check_meta(&args.meta).map_err(anyhow::Error::msg)?;
    match server::raise_fd_limit() {
        Ok((old, new)) if new > old => {
            tracing::info!(old, new, "raised the open-file limit to the hard limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let config = args.config();
    // Before binding: a database that cannot be opened is a startup error, not a later surprise.
    let store = server::open_store(&config)?;
    let signal = shutdown_signal()?;
    let listeners = Listeners::bind(&args).await?;
    server::serve(config, store, listeners, signal).await;
    Ok(())
}

/// Completes on any signal whose default action would end the process (Ctrl-C, SIGTERM, SIGQUIT,
/// SIGUSR1, ...), so each of them gets the graceful shutdown with its notice instead of killing the
/// server mid-sentence. SIGHUP is logged and ignored until there is configuration to reload. The
/// handlers are installed before this returns (not on first poll), so a signal that arrives right
/// after the server says it is listening is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use std::task::Poll;
        use tokio::signal::unix::{signal, SignalKind};
        // The faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, ...) are left alone: they mean a bug, and
        // there is nothing graceful left to do. SIGPIPE is already ignored by the Rust runtime.
        let kinds = [
            ("SIGINT", SignalKind::interrupt()),
            ("SIGTERM", SignalKind::terminate()),
            ("SIGQUIT", SignalKind::quit()),
            ("SIGUSR1", SignalKind::user_defined1()),
            ("SIGUSR2", SignalKind::user_defined2()),
            ("SIGALRM", SignalKind::alarm()),
            ("SIGIO", SignalKind::io()),
            ("SIGXCPU", SignalKind::from_raw(libc::SIGXCPU)),
            ("SIGVTALRM", SignalKind::from_raw(libc::SIGVTALRM)),
            ("SIGPROF", SignalKind::from_raw(libc::SIGPROF)),
            #[cfg(target_os = "linux")]
            ("SIGPWR", SignalKind::from_raw(libc::SIGPWR)),
        ];
        let mut stops = Vec::with_capacity(kinds.len());
        for (name, kind) in kinds {
            stops.push((name, signal(kind)?));
        }
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            let name = std::future::poll_fn(|cx| {
                // A hangup (the terminal closed, or a reload request) is not a reason to stop.
                while let Poll::Ready(Some(())) = hangup.poll_recv(cx) {
                    tracing::info!("SIGHUP received; ignored (nothing to reload)");
                }
                for (name, stop) in &mut stops {
                    if stop.poll_recv(cx).is_ready() {
                        return Poll::Ready(*name);
                    }
                }
                Poll::Pending
            })
            .await;
            tracing::info!(signal = name, "signal received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
