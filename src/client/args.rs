//! `chatc`'s command line: the clap definitions of `chatc` and `chatc scan`, kept in the library
//! so tests (and tools that generate help or man pages) see the very parser the binary uses.

use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::config::parse_duration_in;

/// Chat with a chatd server over TCP, TLS or UDP: lines read from stdin are sent,
/// lines from the server are printed. `/quit` or end of input leaves.
#[derive(Debug, Parser)]
#[command(
    name = "chatc",
    version = crate::VERSION,
    after_help = "To find servers on a network: chatc scan --help"
)]
pub struct Args {
    /// Server address as HOST:PORT.
    pub server: String,
    /// Speak UDP instead of TCP.
    #[arg(long, conflicts_with = "tls")]
    pub udp: bool,
    /// Speak TLS over TCP (a server's `--tls` port), checking its certificate against the
    /// system's trust store.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: trust only the CA certificates in this PEM file (a private CA, or a server's
    /// own self-signed certificate).
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    pub ca: Option<std::path::PathBuf>,
    /// With --tls: do not check the certificate at all (a `--self-signed` server in
    /// development). Anyone on the path could read and change the chat.
    #[arg(long, requires = "tls")]
    pub insecure: bool,
    /// Name to take on join.
    #[arg(long, value_name = "NAME")]
    pub nick: Option<String>,
    /// UDP heartbeat interval, e.g. 5s or 300ms (100ms to 1h).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    pub heartbeat: Duration,
    /// Longest input line sent, in bytes (1 to 65000); longer lines are skipped with a notice.
    #[arg(long, value_name = "BYTES", default_value_t = super::DEFAULT_MAX_LINE as u32,
          value_parser = clap::value_parser!(u32).range(1..=super::MAX_LINE_LIMIT as i64))]
    pub max_line: u32,
    /// Colour names and notices: `auto` (when stdout is a terminal and NO_COLOR is not set),
    /// `always` or `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: super::paint::ColorChoice,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, (super::MIN_HEARTBEAT, super::MAX_HEARTBEAT))
}

/// Find chatd servers: ask every target for its server info and list those that answer.
#[derive(Debug, Parser)]
#[command(name = "chatc scan", bin_name = "chatc scan", version = crate::VERSION)]
pub struct ScanArgs {
    /// Addresses to ask: `192.168.1.7`, `192.168.110.1-40` (a range of the last octet),
    /// `10.0.0.0/28` (at most a /16), each optionally with `:PORT`; IPv6 one at a time
    /// (`::1`, `[::1]:9001`).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Port for targets that do not give one.
    #[arg(long, default_value_t = 9001, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Ask over UDP (`#info#`, without joining) instead of TCP (`/info`).
    #[arg(long)]
    pub udp: bool,
    /// How long each target has to answer (10ms to 1m).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_scan_timeout)]
    pub timeout: Duration,
    /// Most targets asked at once (1 to 4096).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Print one JSON object per answering server, one per line, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also name the two servers most alike in these numeric meta fields (comma-separated).
    #[arg(long, value_name = "F1,F2,...", value_delimiter = ',')]
    pub similar: Vec<String>,
}

fn parse_scan_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, (Duration::from_millis(10), Duration::from_secs(60)))
}

/// `chatc` with `scan` as a subcommand: how the shell completions and the man page see it (the
/// binary itself looks for `scan` first, so a server named `scan` stays reachable as `scan:PORT`).
pub fn command() -> clap::Command {
    Args::command()
        .args_conflicts_with_subcommands(true)
        .subcommand(ScanArgs::command().name("scan").bin_name("chatc scan"))
}
