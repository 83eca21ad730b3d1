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

/// Completes on Ctrl-C or SIGTERM. The handlers are installed before this returns (not on first
/// poll), so a signal that arrives right after the server says it is listening is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
