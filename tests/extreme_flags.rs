//! Issue 10 §3: extreme but well-formed flag values. Each one either stops `chatd` / `chatc` at
//! once with a clear message naming the flag, or gives a server that works; never a panic.
mod common;

use std::time::Duration;

use chatd::config::Config;
use chatd::guard::limits::Rate;
use chatd::server::{self, Listeners};
use common::{spawn_chatd, TcpClient, UdpClient, TIMEOUT};

/// Runs `binary` with `args`, expecting it to refuse them: exit status 2 (clap's usage error)
/// within the timeout, and never a panic. Returns its stderr.
async fn refused(binary: &str, args: &[&str]) -> String {
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} was accepted: still running after {TIMEOUT:?}"))
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[tokio::test]
async fn values_that_used_to_panic_or_make_the_server_useless_are_refused_clearly() {
    let cases: &[(&[&str], &str)] = &[
        (&["--max-clients", "2305843009213693952"], "--max-clients"),
        (&["--heartbeat", "18446744073709551615s"], "--heartbeat"),
        (&["--heartbeat", "4611686018427387904s"], "--heartbeat"),
        (&["--rate", "1e-300", "--burst", "1"], "--rate"),
        (&["--max-clients", "0"], "--max-clients"),
        (&["--max-per-ip", "0"], "--max-per-ip"),
        (&["--sendq", "0"], "--sendq"),
        (&["--burst", "0"], "--burst"),
        (&["--burst", "4294967295"], "--burst"),
        (&["--rate", "1e309"], "--rate"),
        (&["--rate", "NaN"], "--rate"),
        (&["--flood-kick", "18446744073709551615s"], "--flood-kick"),
        (
            &["--idle-timeout", "18446744073709551615s"],
            "--idle-timeout",
        ),
        (&["--sendq", "18446744073709551615"], "--sendq"),
        (&["--heartbeat", "1ms"], "--heartbeat"),
        (&["--backlog", "18446744073709551615"], "--backlog"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["--tcp", "0", "--udp", "0", "--bind", "127.0.0.1"];
        args.extend_from_slice(flags);
        let stderr = refused(env!("CARGO_BIN_EXE_chatd"), &args).await;
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag),
            "{flags:?} should be refused naming {flag}:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn chatc_refuses_a_heartbeat_it_cannot_keep() {
    for flags in [
        ["--heartbeat", "18446744073709551615s"],
        ["--heartbeat", "0s"],
        ["--max-line", "0"],
        ["--max-line", "18446744073709551615"],
    ] {
        let mut args = vec!["--udp", "127.0.0.1:9"];
        args.extend_from_slice(&flags);
        let stderr = refused(env!("CARGO_BIN_EXE_chatc"), &args).await;
        assert!(
            stderr.contains("invalid value") && stderr.contains(flags[0]),
            "{flags:?}:\n{stderr}"
        );
    }
}

/// A TCP member and a UDP member hear each other on the server at `tcp` / `udp`.
async fn assert_relays(tcp: std::net::SocketAddr, udp: std::net::SocketAddr) {
    let mut member = TcpClient::connect(tcp).await;
    let peer = UdpClient::join(udp).await;
    member.expect(&format!("* {} joined", peer.name)).await;
    member.send("over tcp").await;
    assert_eq!(peer.recv().await, format!("<{}> over tcp", member.name));
    peer.send("over udp").await;
    assert_eq!(member.recv().await, format!("<{}> over udp", peer.name));
}

#[tokio::test]
async fn the_extremes_of_every_range_give_a_working_server() {
    let extremes: [&[&str]; 2] = [
        &[
            "--max-clients",
            "1000000",
            "--max-per-ip",
            "1000000",
            "--heartbeat",
            "1h",
            "--flood-kick",
            "24h",
            "--idle-timeout",
            "7days",
            "--rate",
            "0.01",
            "--burst",
            "1",
            "--sendq",
            "1073741824",
            "--backlog",
            "1000000",
        ],
        &[
            "--max-clients",
            "2",
            "--max-per-ip",
            "2",
            "--heartbeat",
            "100ms",
            "--flood-kick",
            "100ms",
            "--rate",
            "1000000",
            "--burst",
            "10000",
            "--sendq",
            "1024",
            "--backlog",
            "1",
        ],
    ];
    for flags in extremes {
        let (mut child, tcp, udp) = spawn_chatd(flags, None).await;
        assert_relays(tcp, udp).await;
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{flags:?}: chatd exited"
        );
        let _ = child.start_kill();
        let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
    }
}

#[tokio::test]
async fn the_library_survives_extreme_values_that_bypass_the_command_line() {
    // What used to panic: a float too large for a Duration on a member's second message (which
    // killed the UDP task for everyone), and overflowing deadlines for heartbeats and bans.
    let config = Config {
        rate: Rate::PerSecond(1e-300),
        burst: 1,
        heartbeat: Duration::MAX,
        flood_kick: Duration::MAX,
        idle_timeout: Some(Duration::MAX),
        max_clients: usize::MAX,
        ..Config::default()
    };
    let args: chatd::config::ServerArgs = "--tcp 0 --udp 0 --bind 127.0.0.1".parse().expect("args");
    let listeners = Listeners::bind(&args).await.expect("bind");
    let (tcp, udp) = (
        listeners.tcp_addr().expect("tcp"),
        listeners.udp_addr().expect("udp"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(config, listeners, async move {
        let _ = stopped.await;
    }));
    let mut member = TcpClient::connect(tcp).await;
    let first = UdpClient::join(udp).await;
    member.expect(&format!("* {} joined", first.name)).await;
    first.send("one").await;
    assert_eq!(member.recv().await, format!("<{}> one", first.name));
    first.send("two").await;
    assert_eq!(first.recv().await, "! slow down");
    // The UDP task is still serving everyone, newcomers included.
    let second = UdpClient::join(udp).await;
    member.expect(&format!("* {} joined", second.name)).await;
    second.send("still here").await;
    assert_eq!(member.recv().await, format!("<{}> still here", second.name));
    // And TCP members meet the same bucket without harm.
    member.send("a").await;
    member.send("b").await;
    assert_eq!(
        member.recv().await,
        "! slow down: your lines are being delayed"
    );
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("server stops in time")
        .expect("the server did not panic")
        .expect("the server ran");
}
