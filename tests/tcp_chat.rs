//! TCP to TCP: delivery, no self-echo, join and leave notices.
mod common;

use common::{start_server, TcpClient};

#[tokio::test]
async fn message_reaches_others_but_not_its_sender() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    let mut carol = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", carol.name)).await;
    bob.expect(&format!("* {} joined", carol.name)).await;

    alice.send("hello room").await;
    let from_alice = format!("<{}> hello room", alice.name);
    assert_eq!(bob.recv().await, from_alice);
    assert_eq!(carol.recv().await, from_alice);

    // If alice had been echoed her own line, it would arrive before bob's reply.
    bob.send("hi alice").await;
    assert_eq!(alice.recv().await, format!("<{}> hi alice", bob.name));
    server.shutdown().await;
}

#[tokio::test]
async fn welcome_names_the_member_and_points_to_help() {
    let server = start_server("--motd hello-there").await;
    let mut client = TcpClient::connect_raw(server.tcp).await;
    let welcome = client.recv().await;
    assert!(
        welcome.starts_with("* hello-there - you are guest-") && welcome.contains(" (127.0.0.1:"),
        "{welcome}"
    );
    assert!(welcome.ends_with("; type /help for commands"), "{welcome}");
    server.shutdown().await;
}

#[tokio::test]
async fn crlf_lines_are_accepted() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;
    alice.send_raw(b"windows line\r\nsecond\n").await;
    assert_eq!(bob.recv().await, format!("<{}> windows line", alice.name));
    assert_eq!(bob.recv().await, format!("<{}> second", alice.name));
    server.shutdown().await;
}

#[tokio::test]
async fn others_see_a_member_leave_when_it_disconnects() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;
    let name = bob.name.clone();
    drop(bob);
    alice.expect(&format!("* {name} left")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn excess_members_are_told_the_server_is_full() {
    let server = start_server("--max-clients 2").await;
    let mut a = TcpClient::connect(server.tcp).await;
    let b = TcpClient::connect(server.tcp).await;
    let mut c = TcpClient::connect_raw(server.tcp).await;
    assert_eq!(c.recv().await, "! server full");
    c.expect_closed().await;
    // The slot is free again once the room has been told someone left.
    let gone = b.name.clone();
    drop(b);
    a.expect(&format!("* {gone} left")).await;
    let mut d = TcpClient::connect_raw(server.tcp).await;
    let greeting = d.recv().await;
    assert!(greeting.starts_with("* welcome"), "{greeting}");
    server.shutdown().await;
}
