//! `chatc`: the bundled chatd client. Sends stdin line by line and prints what
//! the server sends; all the work is in [`chatd::client`].

use std::process::ExitCode;
use std::time::Duration;

use chatd::client::{self, ClientConfig, Exit, Transport};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Chat with a chatd server over TCP or UDP: lines read from stdin are sent,
/// lines from the server are printed. `/quit` or end of input leaves.
#[derive(Debug, Parser)]
#[command(name = "chatc", version)]
struct Args {
    /// Server address as HOST:PORT.
    server: String,
    /// Speak UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Name to take on join.
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
    /// UDP heartbeat interval, e.g. 5s or 300ms.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    heartbeat: Duration,
    /// Longest input line sent, in bytes; longer lines are skipped with a notice.
    #[arg(long, value_name = "BYTES", default_value_t = client::DEFAULT_MAX_LINE,
          value_parser = clap::value_parser!(usize))]
    max_line: usize,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut cfg = ClientConfig::new(
        args.server,
        if args.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        },
    );
    cfg.nick = args.nick;
    cfg.heartbeat = args.heartbeat;
    cfg.max_line = args.max_line;

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(client::run(cfg, tokio::io::stdin(), tokio::io::stdout()));
    // Stdin is read by a blocking thread whose read cannot be cancelled: when
    // the server goes away while a terminal is idle, waiting for that thread
    // would hang until the user pressed enter.
    rt.shutdown_background();

    match result {
        Ok(exit) if exit.is_clean() => ExitCode::SUCCESS,
        Ok(exit) => {
            let why = match exit {
                Exit::ServerClosed => "server closed the connection",
                Exit::ServerShuttingDown => "server is shutting down",
                Exit::ServerUnreachable => "server unreachable (connection refused)",
                Exit::InputEnded | Exit::Quit => "session ended",
            };
            eprintln!("chatc: {why}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chatc: {:#}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}
