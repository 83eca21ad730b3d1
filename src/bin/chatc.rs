//! `chatc`: the bundled chatd client. Sends stdin line by line and prints what
//! the server sends; `chatc scan` finds servers. All the work is in [`chatd::client`].

use std::process::ExitCode;
use std::time::Duration;

use chatd::client::{self, ClientConfig, Exit, Transport};
use chatd::config::parse_duration_in;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Chat with a chatd server over TCP, TLS or UDP: lines read from stdin are sent,
/// lines from the server are printed. `/quit` or end of input leaves.
#[derive(Debug, Parser)]
#[command(
    name = "chatc",
    version,
    after_help = "To find servers on a network: chatc scan --help"
)]
struct Args {
    /// Server address as HOST:PORT.
    server: String,
    /// Speak UDP instead of TCP.
    #[arg(long, conflicts_with = "tls")]
    udp: bool,
    /// Speak TLS over TCP (a server's `--tls` port), checking its certificate against the
    /// system's trust store.
    #[arg(long)]
    tls: bool,
    /// With --tls: trust only the CA certificates in this PEM file (a private CA, or a server's
    /// own self-signed certificate).
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    ca: Option<std::path::PathBuf>,
    /// With --tls: do not check the certificate at all (a `--self-signed` server in
    /// development). Anyone on the path could read and change the chat.
    #[arg(long, requires = "tls")]
    insecure: bool,
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
    /// Colour names and notices: `auto` (when stdout is a terminal and NO_COLOR is not set),
    /// `always` or `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    color: client::paint::ColorChoice,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, (client::MIN_HEARTBEAT, client::MAX_HEARTBEAT))
}

/// Find chatd servers: ask every target for its server info and list those that answer.
#[derive(Debug, Parser)]
#[command(name = "chatc scan", bin_name = "chatc scan", version)]
struct ScanArgs {
    /// Addresses to ask: `192.168.1.7`, `192.168.110.1-40` (a range of the last octet),
    /// `10.0.0.0/28` (at most a /16), each optionally with `:PORT`; IPv6 one at a time
    /// (`::1`, `[::1]:9001`).
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    /// Port for targets that do not give one.
    #[arg(long, default_value_t = 9001, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Ask over UDP (`#info#`, without joining) instead of TCP (`/info`).
    #[arg(long)]
    udp: bool,
    /// How long each target has to answer (10ms to 1m).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_scan_timeout)]
    timeout: Duration,
    /// Most targets asked at once (1 to 4096).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Print one JSON object per answering server, one per line, instead of a table.
    #[arg(long)]
    json: bool,
    /// Also name the two servers most alike in these numeric meta fields (comma-separated).
    #[arg(long, value_name = "F1,F2,...", value_delimiter = ',')]
    similar: Vec<String>,
}

fn parse_scan_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, (Duration::from_millis(10), Duration::from_secs(60)))
}

/// Exit status of `chatc scan`: 0 when a server answered, 1 when none did, 2 on bad arguments.
fn scan_main(argv: Vec<std::ffi::OsString>) -> ExitCode {
    use chatd::client::scan;
    use std::io::{IsTerminal, Write};
    let args = ScanArgs::parse_from(argv);
    let targets = match client::targets::expand(&args.targets, args.port) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("chatc scan: {e}");
            return ExitCode::from(2);
        }
    };
    if args.similar.iter().any(|f| f.trim().is_empty()) {
        eprintln!("chatc scan: --similar takes field names separated by commas");
        return ExitCode::from(2);
    }
    let options = scan::ScanOptions {
        targets,
        udp: args.udp,
        timeout: args.timeout,
        concurrency: args.concurrency as usize,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Drawn on stderr, and only when it is a terminal: piped output stays clean.
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(options.targets.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = rt.block_on(scan::scan(&options, || bar.inc(1)));
    bar.finish_and_clear();
    let mut out = if args.json {
        scan::json_lines(&report)
    } else {
        scan::table(&report)
    };
    if !args.similar.is_empty() {
        let fields: Vec<String> = args.similar.iter().map(|f| f.trim().to_string()).collect();
        let found = scan::similar(&report, &fields);
        out.push_str(&if args.json {
            scan::similar_json(&report, &fields, &found)
        } else {
            scan::similar_text(&report, &fields, &found)
        });
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    if report.found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "scan") {
        argv.remove(0);
        return scan_main(argv);
    }
    let args = Args::parse_from(argv);
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
    cfg.tls = match (args.tls, args.ca, args.insecure) {
        (false, _, _) => None,
        (true, Some(ca), _) => Some(client::tls::Verify::Ca(ca)),
        (true, None, true) => {
            eprintln!("{}", client::tls::INSECURE_WARNING);
            Some(client::tls::Verify::Insecure)
        }
        (true, None, false) => Some(client::tls::Verify::SystemRoots),
    };

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
    use std::io::IsTerminal;
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let no_color = std::env::var("NO_COLOR").ok();
    let colour = args.color.colour(stdout_is_terminal, no_color.as_deref());
    let editor =
        stdout_is_terminal && std::io::stdin().is_terminal() && client::terminal::supported();
    let result = if editor {
        client::terminal::run(&rt, cfg, colour)
    } else if colour {
        rt.block_on(client::terminal::run_painted(
            cfg,
            tokio::io::stdin(),
            tokio::io::stdout(),
        ))
    } else {
        // Pipes: exactly the plain client scripts rely on.
        rt.block_on(client::run(cfg, tokio::io::stdin(), tokio::io::stdout()))
    };
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
