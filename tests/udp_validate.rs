//! `--udp-validate`: a new UDP address joins only by sending back a short code the server sends
//! it, and until then the server sends it nothing but that code: never the room, its history or a
//! command's answer (issue 26 §1). Validation is `auto` by default: on unless UDP is bound to
//! loopback, which is how every other test binds; here it is forced on, or the bind is not loopback.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start_server, TcpClient, UdpClient};
use tokio::net::UdpSocket;

const CHALLENGE: &str = "* to join, send: #pong# ";

/// The code in a challenge line.
fn code_of(challenge: &str) -> String {
    challenge
        .strip_prefix(CHALLENGE)
        .unwrap_or_else(|| panic!("challenge expected, got {challenge:?}"))
        .to_string()
}

#[tokio::test]
async fn a_new_address_must_send_its_code_back_to_join() {
    let server = start_server("--udp-validate on").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut udp = UdpClient::bind(server.udp).await;

    // However short the first line, a netcat user is told what to type.
    udp.send("hi").await;
    let code = code_of(&udp.recv().await);
    assert_eq!(code.len(), 8);
    // A wrong code earns the challenge again, nothing more.
    udp.send("#pong# 00000000").await;
    assert_eq!(code_of(&udp.recv().await), code);
    // The code alone on a line, as typed (any case), lets it in.
    udp.send(&code.to_uppercase()).await;
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    udp.name = common::name_from_welcome(&welcome);
    // Nothing joined before: the join is the first thing the watcher sees.
    let seen = watcher.expect(&format!("* {} joined", udp.name)).await;
    assert!(seen.is_empty(), "{seen:?}");
    udp.send("now I can talk").await;
    assert_eq!(
        watcher.recv().await,
        format!("<{}> now I can talk", udp.name)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn chatcs_pong_line_lets_it_in_too() {
    let server = start_server("--udp-validate").await;
    let udp = UdpClient::bind(server.udp).await;
    udp.send("#ping#").await;
    let code = code_of(&udp.recv().await);
    udp.send(&format!("#pong# {code}")).await;
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_cookie_is_worthless_from_another_address() {
    let server = start_server("--udp-validate on").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let a = UdpClient::bind(server.udp).await;
    a.send("#ping#").await;
    let stolen = code_of(&a.recv().await);
    let b = UdpClient::bind(server.udp).await;
    b.send(&stolen).await;
    // Had the stolen code let b in, this would be the welcome.
    let answer = code_of(&b.recv().await);
    assert_ne!(answer, stolen);
    watcher.send("/who").await;
    assert_eq!(watcher.recv().await, "* 1 here:");
    server.shutdown().await;
}

#[tokio::test]
async fn on_a_loopback_bind_auto_lets_the_first_datagram_join() {
    let server = start_server("").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/who").await;
    assert_eq!(udp.recv().await, "* 1 here:");
    server.shutdown().await;
}

#[tokio::test]
async fn by_default_a_server_bound_to_every_address_validates() {
    // chatd's default bind, 0.0.0.0, with no --udp-validate: `auto` turns it on.
    let server = common::start_server_on("0.0.0.0", "").await;
    let udp = UdpClient::bind(SocketAddr::from(([127, 0, 0, 1], server.udp.port()))).await;
    udp.send("hi").await;
    let code = code_of(&udp.recv().await);
    udp.send(&code).await;
    assert!(udp.recv().await.starts_with("* welcome"));
    server.shutdown().await;
}

/// Bytes received on `socket` until nothing more has come for a while (bounded).
async fn received_bytes(socket: &UdpSocket) -> usize {
    let mut buf = vec![0u8; 70_000];
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await {
            Ok(Ok(len)) => total += len,
            _ => break,
        }
    }
    total
}

/// Makes a room busy (100 lines of history, then more chat while the victim is measured) and has
/// a "victim" address send the datagrams: a join followed by `/history` in 25 bytes, then
/// a bare `/history`. The victim never answers, as an address forged by someone else would not.
/// Returns (bytes sent for the victim, bytes the victim received, datagrams sent).
async fn forged_join_and_history(flags: &str) -> (usize, usize, usize) {
    let server = start_server(&format!("--rate off {flags}")).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let filler = "x".repeat(200);
    for i in 0..100 {
        alice.send(&format!("{i} {filler}")).await;
    }
    alice.send("/who").await;
    alice.expect("* 1 here:").await;

    let victim = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    victim.connect(server.udp).await.expect("connect");
    let datagrams: [&[u8]; 2] = [b"hi everyone\n/history 100\n", b"/history\n"];
    assert_eq!(datagrams[0].len(), 25);
    for datagram in datagrams {
        victim.send(datagram).await.expect("send");
    }
    // A busy room: more chat after the victim's datagrams, all of which the server has handled
    // by the time it answers alice's /who.
    for i in 0..20 {
        alice.send(&format!("later {i} {filler}")).await;
    }
    alice.send("/who").await;
    alice.expect_match(|l| l.ends_with(" here:")).await;
    let received = received_bytes(&victim).await;
    server.shutdown().await;
    let sent = datagrams.iter().map(|d| d.len()).sum();
    (sent, received, datagrams.len())
}

#[tokio::test]
async fn a_forged_join_and_history_gets_at_most_three_times_its_bytes() {
    let (sent, received, datagrams) = forged_join_and_history("--udp-validate on").await;
    eprintln!(
        "validation on: sent {sent} bytes, the victim got {received} ({:.2}x)",
        received as f64 / sent as f64
    );
    assert!(received > 0, "not even a challenge reached the victim");
    assert!(
        received <= 3 * sent,
        "sent {sent} bytes in {datagrams} datagrams, the victim got {received}"
    );
    // The same measurement catches the amplifier that `off` (a trusted LAN's choice) still is.
    let (sent, received, _) = forged_join_and_history("--udp-validate off").await;
    eprintln!(
        "validation off: sent {sent} bytes, the victim got {received} ({:.0}x)",
        received as f64 / sent as f64
    );
    assert!(received > 100 * sent, "off: {received} of {sent}");
}

#[tokio::test]
async fn a_one_byte_datagram_gets_a_challenge_within_three_times_on_the_wire() {
    // IPv4 and UDP headers: what every datagram costs the network besides its payload.
    const HEADERS: usize = 28;
    let server = start_server("--udp-validate on").await;
    let victim = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    victim.connect(server.udp).await.expect("connect");
    victim.send(b"\n").await.expect("send");
    let mut buf = [0u8; 2048];
    let len = tokio::time::timeout(common::TIMEOUT, victim.recv(&mut buf))
        .await
        .expect("a challenge in time")
        .expect("recv");
    assert!(buf[..len].starts_with(CHALLENGE.as_bytes()));
    assert!(len + HEADERS <= 3 * (1 + HEADERS), "{len}-byte challenge");
    server.shutdown().await;
}
