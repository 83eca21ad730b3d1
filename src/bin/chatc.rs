//! `chatc`: the bundled chatd client. Sends stdin line by line and prints what
//! the server sends; all the work is in [`chatd::client`].

use std::process::ExitCode;
use std::time::Duration;

use chatd::client::{self, ClientConfig, Exit, Transport};
use chatd::config::parse_duration_in;
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
    /// UDP heartbeat interval, e.g. 5s or 300ms (100ms to 1h).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    heartbeat: Duration,
    /// Longest input line sent, in bytes (1 to 65000); longer lines are skipped with a notice.
    #[arg(long, value_name = "BYTES", default_value_t = client::DEFAULT_MAX_LINE as u32,
          value_parser = clap::value_parser!(u32).range(1..=client::MAX_LINE_LIMIT as i64))]
    max_line: u32,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, (client::MIN_HEARTBEAT, client::MAX_HEARTBEAT))
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
    cfg.max_line = args.max_line as usize;

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
