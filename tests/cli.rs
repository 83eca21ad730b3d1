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
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("chatd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn without_a_transport_it_says_what_to_give_and_fails() {
    let out = chatd(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "chatd: nothing to serve: give --tcp PORT, --udp PORT, --tls PORT and/or --http PORT (see --help)"
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
