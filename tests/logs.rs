//! What the operator reads in chatd's log (the built binary's stderr): one info line per
//! connection and per leave, with transport, address, name and reason (`--private-logs` leaves
//! the address out), and a NATS outage logged once, not once per reconnection attempt.
mod common;

use std::net::SocketAddr;

use tokio::io::{BufReader, Lines};
use tokio::process::ChildStderr;

use common::{log_until, spawn_logged_chatd, TcpClient, UdpClient};

type Log = Lines<BufReader<ChildStderr>>;

/// A TCP member and the address the server sees it at (its welcome line says).
async fn tcp_member(server: SocketAddr) -> (TcpClient, String) {
    let mut client = TcpClient::connect_raw(server).await;
    let welcome = client.recv().await;
    client.name = common::name_from_welcome(&welcome);
    let addr = welcome
        .split(" (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no address in {welcome:?}"))
        .to_string();
    (client, addr)
}

async fn udp_port(log: &mut Log) -> SocketAddr {
    let line = log_until(log, "listening udp=").await;
    let addr = line.split("listening udp=").nth(1).unwrap_or_default();
    addr.trim().parse().expect("udp address")
}

#[tokio::test]
async fn each_connection_and_leave_is_one_info_line_with_transport_address_and_reason() {
    let (_chatd, tcp, _, mut log) = spawn_logged_chatd(&["--udp", "0"], "info").await;
    let udp = udp_port(&mut log).await;

    let (mut ann, ann_addr) = tcp_member(tcp).await;
    let line = log_until(&mut log, " connected ").await;
    assert!(line.contains(" INFO "), "{line}");
    for field in [
        "transport=tcp".to_string(),
        format!("addr={ann_addr}"),
        format!("name={}", ann.name),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }

    let bob = UdpClient::join(udp).await;
    let line = log_until(&mut log, " connected ").await;
    assert!(line.contains("transport=udp"), "{line}");
    assert!(line.contains(&format!("addr={}", bob.addr)), "{line}");

    // Leaving with /quit: the reason, not the member's words.
    bob.send("/quit see you").await;
    let line = log_until(&mut log, " left ").await;
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("transport=udp"), "{line}");
    assert!(line.contains(&format!("addr={}", bob.addr)), "{line}");
    assert!(line.contains("reason=\"quit\""), "{line}");
    assert!(!line.contains("see you"), "{line}");

    // Hanging up.
    ann.finish_sending().await;
    let line = log_until(&mut log, " left ").await;
    assert!(line.contains(&format!("addr={ann_addr}")), "{line}");
    assert!(line.contains(&format!("name={}", ann.name)), "{line}");
    assert!(line.contains("reason=\"closed\""), "{line}");
}

#[tokio::test]
async fn private_logs_leave_the_addresses_out() {
    let (_chatd, tcp, _, mut log) = spawn_logged_chatd(&["--private-logs"], "info").await;
    let (mut ann, ann_addr) = tcp_member(tcp).await;
    let joined = log_until(&mut log, " connected ").await;
    ann.finish_sending().await;
    let left = log_until(&mut log, " left ").await;
    for line in [joined, left] {
        assert!(line.contains("addr=hidden"), "{line}");
        assert!(line.contains(&format!("name={}", ann.name)), "{line}");
        assert!(!line.contains(&ann_addr), "{line}");
    }
}

#[tokio::test]
async fn a_nats_outage_is_logged_once_not_at_every_attempt() {
    // A port nobody listens on: every attempt is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    // Attempts are logged at debug, so the test can wait for several of them.
    let (_chatd, _, before, mut log) = spawn_logged_chatd(
        &["--cluster", &url, "--node", "n1"],
        "info,chatd::cluster::link=debug",
    )
    .await;
    let mut lines: Vec<String> = before;
    let mut attempts = 0;
    while attempts < 6 {
        let line = tokio::time::timeout(common::TIMEOUT, log.next_line())
            .await
            .expect("attempts go on, each logged at debug")
            .expect("read log")
            .expect("chatd still running");
        attempts += usize::from(line.contains("DEBUG") && line.contains("NATS unreachable"));
        lines.push(line);
    }
    let reported: Vec<&String> = lines
        .iter()
        .filter(|l| !l.contains("DEBUG") && l.to_ascii_lowercase().contains("nats"))
        .collect();
    assert_eq!(reported.len(), 1, "{lines:#?}");
    assert!(reported[0].contains(" WARN "), "{}", reported[0]);
    assert!(reported[0].contains("cannot reach NATS"), "{}", reported[0]);
    // Nor does anything else above debug come back at every retry.
    let mut seen = std::collections::HashSet::new();
    for line in lines.iter().filter(|l| !l.contains("DEBUG")) {
        let (_, text) = line.split_once(' ').unwrap_or_default();
        assert!(seen.insert(text), "logged again: {line}\n{lines:#?}");
    }
}

/// A guesser refused again and again is logged once a minute, not at every refusal.
#[tokio::test]
async fn a_refused_guesser_is_logged_once_not_at_every_refusal() {
    let (_child, addr, _, mut log) =
        spawn_logged_chatd(&["--argon2-memory", "64", "--argon2-passes", "1"], "info").await;
    let mut guesser = TcpClient::connect(addr).await;
    for _ in 0..5 {
        guesser.send("/login alice wrong").await;
        guesser.expect("! wrong name or password").await;
    }
    for _ in 0..3 {
        guesser.send("/login alice wrong").await;
        guesser
            .expect_match(|l| l.starts_with("! too many attempts, wait "))
            .await;
    }
    let first = log_until(&mut log, "attempts over the limit").await;
    assert!(first.contains("account=\"alice\""), "{first}");
    // A later connection's line comes after whatever the refusals logged: none of them again.
    let _later = TcpClient::connect(addr).await;
    let mut between = Vec::new();
    loop {
        let line = log
            .next_line()
            .await
            .expect("read log")
            .expect("chatd still runs");
        if line.contains(" connected ") && !line.contains(&guesser.name) {
            break;
        }
        between.push(line);
    }
    assert!(
        !between
            .iter()
            .any(|l| l.contains("attempts over the limit")),
        "logged again: {between:#?}"
    );
}
