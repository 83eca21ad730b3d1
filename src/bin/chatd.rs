//! `chatd`: the chat server. Parses arguments, sets up logging and runs the library's server.

use std::ffi::OsString;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing_subscriber::EnvFilter;

use chatd::config::file::{self, LoadError};
use chatd::config::reload::{self, Reload};
use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Vec<OsString> = std::env::args_os().collect();
    if cli.get(1).is_some_and(|a| a == "hash-password") {
        return hash_password(&cli[1..]);
    }
    let args = match file::load(&cli) {
        Ok(args) => args,
        // Usage errors exit 2 and `--help` 0, as clap always did.
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("chatd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match serve(cli, args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, not a debug dump: this is what a person starting the server reads.
            eprintln!("chatd: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `chatd hash-password`: prints the hash of a password for `--oper NAME=PHC`.
fn hash_password(cli: &[OsString]) -> std::process::ExitCode {
    use chatd::auth::hash_password::{run, HashPasswordArgs};
    use clap::Parser;
    let args = HashPasswordArgs::try_parse_from(cli).unwrap_or_else(|e| e.exit());
    match run(&args) {
        Ok(phc) => {
            println!("{phc}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatd hash-password: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(cli: Vec<OsString>, args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `--http` alone is a server too: the page and its WebSocket members.
    if args.tcp.is_none()
        && args.udp.is_none()
        && args.tls.is_none()
        && args.http.is_none()
        && args.irc.is_none()
        && args.ircs.is_none()
    {
        anyhow::bail!(
            "nothing to serve: give --tcp PORT, --udp PORT, --tls PORT, --http PORT, --irc PORT and/or --ircs PORT (see --help)"
        );
    }
    reload::check(&args).map_err(anyhow::Error::msg)?;
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
    let hangups = Arc::new(Notify::new());
    let signal = shutdown_signal(Arc::clone(&hangups))?;
    let listeners = Listeners::bind(&args).await?;
    let (reloads, reloaded) = mpsc::unbounded_channel();
    tokio::spawn(reload_on_hangup(cli, args, hangups, reloads));
    server::serve_reloading(config, store, listeners, signal, Some(reloaded)).await;
    Ok(())
}

/// The log filter: `RUST_LOG` (default `info`), with the NATS client's own lines at `warn`
/// unless `RUST_LOG` names it: it logs every event at info, one line per reconnection attempt
/// during an outage, which chatd already reports once (src/cluster/outage.rs).
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let rust_log = rust_log.filter(|r| !r.trim().is_empty()).unwrap_or("info");
    let filter = EnvFilter::try_new(rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    if rust_log.contains("async_nats") {
        return filter;
    }
    match "async_nats=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// On each SIGHUP, reads the `--config` file again (with the same command line, which still
/// wins) and hands the server the new configuration with every key that changed, which it logs
/// once applied. A file that no longer loads is logged and the running configuration kept.
async fn reload_on_hangup(
    cli: Vec<OsString>,
    mut running: ServerArgs,
    hangups: Arc<Notify>,
    reloads: mpsc::UnboundedSender<Reload>,
) {
    loop {
        hangups.notified().await;
        if running.config.is_none() {
            tracing::info!("SIGHUP received; no --config file to reload");
            continue;
        }
        let cli = cli.clone();
        // File reading and parsing are blocking, if brief.
        let loaded = tokio::task::spawn_blocking(move || {
            let next = file::load(&cli).map_err(|e| e.to_string())?;
            reload::check(&next)?;
            Ok::<_, String>(next)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let next = match loaded {
            Ok(next) => next,
            Err(e) => {
                let e = e
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                tracing::error!("config reload failed; the running configuration is kept: {e}");
                continue;
            }
        };
        let (effective, changes) = reload::plan(&running, &next);
        let reload = Reload {
            config: effective.config(),
            changes,
        };
        if reloads.send(reload).is_err() {
            return;
        }
        running = effective;
    }
}

/// Completes on any signal whose default action would end the process (Ctrl-C, SIGTERM, SIGQUIT,
/// SIGUSR1, ...), so each of them gets the graceful shutdown with its notice instead of killing the
/// server mid-sentence. SIGHUP wakes `hangups` (the config reload) instead. The
/// handlers are installed before this returns (not on first poll), so a signal that arrives right
/// after the server says it is listening is not lost.
fn shutdown_signal(hangups: Arc<Notify>) -> anyhow::Result<impl std::future::Future<Output = ()>> {
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
                    hangups.notify_one();
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
        let _ = hangups;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
