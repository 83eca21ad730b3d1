//! `chatd`: the chat server. Parses arguments, sets up logging and runs the library's server.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServerArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
    let listeners = Listeners::bind(&args).await?;
    server::run(args.config(), listeners, shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
