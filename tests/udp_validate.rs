//! `--udp-validate`: a new UDP address joins only by echoing a stateless cookie, and until then the
//! server never sends it as much as it received.
mod common;

use common::{start_server, TcpClient, UdpClient};

const CHALLENGE: &str = "* to join, send: #pong# ";

#[tokio::test]
async fn a_new_address_must_echo_its_cookie_to_join() {
    let server = start_server("--udp-validate").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut udp = UdpClient::bind(server.udp).await;

    // No bigger than the challenge (41 bytes): silence. Were it answered, two servers could
    // challenge each other forever.
    udp.send("hi").await;
    udp.send(&"x".repeat(41)).await;
    // Bigger: the challenge, and nothing else (the member list is untouched).
    udp.send("hello, may I come in? I have come a long way")
        .await;
    let challenge = udp.recv().await;
    let cookie = challenge
        .strip_prefix(CHALLENGE)
        .unwrap_or_else(|| panic!("challenge expected, got {challenge:?}"));
    assert_eq!(cookie.len(), 16);

    // A wrong cookie earns no seat (and, smaller than a challenge, no answer: the welcome below
    // is the very next datagram).
    udp.send("#pong# 0000000000000000").await;
    udp.send(&format!("#pong# {cookie}")).await;
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    udp.name = common::name_from_welcome(&welcome);
    // Had the short "hi" been answered, its challenge would have come before the one above; had
    // anything joined early, the watcher would see it before this join.
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
async fn a_cookie_is_worthless_from_another_address() {
    let server = start_server("--udp-validate").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let a = UdpClient::bind(server.udp).await;
    a.send("#ping# with some padding, more than the challenge's size")
        .await;
    let cookie = a
        .recv()
        .await
        .strip_prefix(CHALLENGE)
        .expect("challenge")
        .to_string();
    let b = UdpClient::bind(server.udp).await;
    b.send(&format!("#pong# {cookie}")).await;
    // Had the stolen cookie let b in, this would be a chat line, not a challenge.
    b.send("and now something longer than the challenge itself")
        .await;
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
