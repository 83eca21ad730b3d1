//! `--udp-validate`: a new UDP address joins only by echoing a stateless cookie, and until then the
//! server never sends it more than three times what it received.
mod common;

use common::{start_server, TcpClient, UdpClient};

const CHALLENGE: &str = "* to join, send: #pong# ";

#[tokio::test]
async fn a_new_address_must_echo_its_cookie_to_join() {
    let server = start_server("--udp-validate").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::bind(server.udp).await;

    // Too small to answer without amplifying (the challenge is 41 bytes): silence.
    udp.send("hi").await;
    // Big enough: the challenge, and nothing else (the member list is untouched).
    udp.send("hello, may I come in?").await;
    let challenge = udp.recv().await;
    let cookie = challenge
        .strip_prefix(CHALLENGE)
        .unwrap_or_else(|| panic!("challenge expected, got {challenge:?}"));
    assert_eq!(cookie.len(), 16);

    // A wrong cookie earns another challenge, not a seat.
    udp.send("#pong# 0000000000000000").await;
    assert_eq!(udp.recv().await, challenge);

    udp.send(&format!("#pong# {cookie}")).await;
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    // Had the short "hi" been answered, its challenge would have come before the one above; had
    // anything joined early, the watcher would see it before this join.
    let seen = watcher.expect(&format!("* {} joined", udp.addr)).await;
    assert!(seen.is_empty(), "{seen:?}");
    udp.send("now I can talk").await;
    assert_eq!(
        watcher.recv().await,
        format!("<{}> now I can talk", udp.addr)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_cookie_is_worthless_from_another_address() {
    let server = start_server("--udp-validate").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let a = UdpClient::bind(server.udp).await;
    a.send("#ping# with some padding").await;
    let cookie = a
        .recv()
        .await
        .strip_prefix(CHALLENGE)
        .expect("challenge")
        .to_string();
    let b = UdpClient::bind(server.udp).await;
    b.send(&format!("#pong# {cookie}")).await;
    let answer = b.recv().await;
    assert!(answer.starts_with(CHALLENGE), "{answer}");
    assert_ne!(answer, format!("{CHALLENGE}{cookie}"));
    watcher.send("/who").await;
    assert_eq!(watcher.recv().await, "* 1 here:");
    server.shutdown().await;
}

#[tokio::test]
async fn without_validation_the_first_datagram_joins() {
    let server = start_server("").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/who").await;
    assert_eq!(udp.recv().await, "* 1 here:");
    server.shutdown().await;
}
