//! `chatc`: the bundled chatd client. Sends stdin line by line and prints what
//! the server sends; `chatc scan` finds servers. All the work is in [`chatd::client`].

use std::process::ExitCode;

use chatd::client::args::{Args, ScanArgs};
use chatd::client::{self, ClientConfig, Exit, Transport};
use clap::Parser;
use tracing_subscriber::EnvFilter;

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
