//! The `chatd` command line: help, version, and serving one transport or both.
use std::process::{Command, Stdio};

use chatd::config::ServerArgs;
use chatd::server::Listeners;

fn chatd(args: &[&str]) -> std::process::Output {
    // These invocations exit at once; a hang would be a bug, and the harness's own timeout of the
    // test binary is the bound (no server is started).
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run chatd")
}

#[test]
fn help_lists_the_options_and_version_prints_the_version() {
    let help = chatd(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--tcp",
        "--udp",
        "--bind",
        "--motd",
        "--heartbeat",
        "--max-line",
        "--rate",
    ] {
        assert!(
            text.contains(option),
            "--help should mention {option}:\n{text}"
        );
    }
    let version = chatd(&["--version"]);
    assert!(version.status.success());
    // The commit comes from git at build time (build.rs), "unknown" outside a checkout.
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("chatd {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// The sections of a help text: each heading (a line ending in ':' at the margin) and the lines
/// under it.
fn sections(help: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut open = false;
    for line in help.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            // Text at the margin ends a section; a heading starts one.
            open = line.ends_with(':');
            if open {
                sections.push((line.trim_end_matches(':').to_string(), Vec::new()));
            }
        } else if let (true, Some((_, lines))) = (open, sections.last_mut()) {
            lines.push(line.to_string());
        }
    }
    sections
}

#[test]
fn short_help_is_one_line_per_flag_under_its_heading() {
    use chatd::config::heading;
    use clap::CommandFactory;
    let out = chatd(&["-h"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let sections = sections(&help);
    let headings: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
    // clap's own -h and -V stay under "Options"; every chatd flag is under one of ours, in order.
    assert_eq!(headings[0], "Options", "{help}");
    assert_eq!(headings[1..], heading::ALL, "{help}");
    let flags = ServerArgs::command();
    for arg in flags.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long} ");
        let flag_alone = format!("--{long}");
        let under: Vec<&str> = sections
            .iter()
            .filter(|(_, lines)| {
                lines.iter().any(|l| {
                    let l = l.trim_start();
                    l.starts_with(&flag) || l == flag_alone
                })
            })
            .map(|(h, _)| h.as_str())
            .collect();
        let expected = arg.get_help_heading().unwrap_or("Options");
        assert_eq!(under, [expected], "--{long} in -h:\n{help}");
        if expected != "Options" {
            assert!(
                heading::ALL.contains(&expected),
                "--{long} under {expected}"
            );
        }
    }
    // One line per flag: no line under a heading is a continuation of the one before.
    for (heading, lines) in &sections {
        for line in lines {
            assert!(
                line.trim_start().starts_with('-'),
                "{heading}: a flag's short help runs over one line: {line:?}"
            );
        }
    }
}

#[test]
fn long_help_explains_each_flag_in_paragraphs() {
    let short = String::from_utf8_lossy(&chatd(&["-h"]).stdout).to_string();
    let long = chatd(&["--help"]);
    assert!(long.status.success());
    let long = String::from_utf8_lossy(&long.stdout);
    // The long text of --sendq is only in --help.
    let detail = "send buffer is capped";
    assert!(long.contains(detail), "{long}");
    assert!(!short.contains(detail), "{short}");
    // Same headings, in the same order.
    let names =
        |text: &str| -> Vec<String> { sections(text).into_iter().map(|(h, _)| h).collect() };
    assert_eq!(names(&long)[1..], names(&short)[1..]);
    // Wrapped for a reader (clap wraps at 100 columns when not on a terminal).
    assert!(long.lines().all(|l| l.chars().count() <= 100), "{long}");
}

#[test]
fn without_a_transport_it_says_what_to_give_and_fails() {
    let out = chatd(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "chatd: nothing to serve: give --tcp PORT, --udp PORT, --tls PORT, --http PORT, --irc PORT and/or --ircs PORT (see --help)"
    );
}

#[tokio::test]
async fn either_flag_alone_serves_only_that_transport() {
    use tokio::io::AsyncReadExt;
    let timeout = std::time::Duration::from_secs(5);

    let args: ServerArgs = "--tcp 0 --bind 127.0.0.1".parse().expect("args");
    let tcp_only = Listeners::bind(&args).await.expect("bind");
    assert!(tcp_only.tcp_addr().is_some() && tcp_only.udp_addr().is_none());
    // And a TCP-only server really serves: a client is welcomed.
    let addr = tcp_only.tcp_addr().expect("tcp");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chatd::server::run(args.config(), tcp_only, async move {
        let _ = stopped.await;
    }));
    let mut client = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut welcome = [0u8; 2];
    tokio::time::timeout(timeout, client.read_exact(&mut welcome))
        .await
        .expect("welcome in time")
        .expect("read");
    assert_eq!(&welcome, b"* ");
    let _ = stop.send(());
    tokio::time::timeout(timeout, server)
        .await
        .expect("server stops in time")
        .expect("server task")
        .expect("server runs");

    let args: ServerArgs = "--udp 0 --bind 127.0.0.1".parse().expect("args");
    let udp_only = Listeners::bind(&args).await.expect("bind");
    assert!(udp_only.udp_addr().is_some() && udp_only.tcp_addr().is_none());
}

/// `chatc 127.0.0.1` (no port) asks for the port instead of calling the address invalid.
#[test]
fn chatc_without_a_port_asks_for_one() {
    for (given, host) in [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("localhost", "localhost"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_chatc"))
            .arg(given)
            .stdin(Stdio::null())
            .output()
            .expect("run chatc");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{given} has no :PORT; give HOST:PORT, e.g. {host}:PORT"
            )) && !err.contains("invalid socket address"),
            "{err}"
        );
    }
}

/// `chatd hash-password` reads the password from a pipe and prints a hash that verifies it (and
/// only it); an empty password is refused.
#[test]
fn hash_password_prints_a_phc_string_that_verifies() {
    use chatd::auth::password::verify;
    use chatd::protocol::moderation::Secret;
    use std::io::Write;
    let run = |input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args([
                "hash-password",
                "--argon2-memory",
                "64",
                "--argon2-passes",
                "1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chatd hash-password");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write the password");
        child.wait_with_output().expect("chatd hash-password ends")
    };
    let out = run(b"correct horse\n");
    assert!(out.status.success(), "{out:?}");
    let phc = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    assert!(verify(&phc, &Secret::new("correct horse")));
    assert!(!verify(&phc, &Secret::new("correct horse\n")));
    assert!(!verify(&phc, &Secret::new("wrong")));
    // And the server takes it: `--oper root=PHC` parses.
    let args: Result<ServerArgs, _> = format!("--tcp 0 --oper root={phc}").parse();
    assert!(args.is_ok(), "{args:?}");

    let empty = run(b"\n");
    assert_eq!(empty.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr).trim(),
        "chatd hash-password: an empty password"
    );
}
