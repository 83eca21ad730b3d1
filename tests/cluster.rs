//! `--cluster`: chatd nodes joined through a real nats-server (started here with JetStream on a
//! free port): room lines, joins, leaves, renames, moves and `/msg` reach members on every node,
//! over TCP and UDP, in each sender's order, once.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{start_server, TcpClient, TestServer, UdpClient};
use nats::Nats;

async fn node(nats: &Nats, name: &str) -> TestServer {
    node_with(nats, name, "").await
}

async fn node_with(nats: &Nats, name: &str, extra: &str) -> TestServer {
    start_server(&format!("{} {extra}", nats.flags(name))).await
}

#[tokio::test]
async fn two_nodes_chat_in_a_room_across_tcp_and_udp() {
    let nats = Nats::start("two").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::connect(a.tcp).await;
    assert_eq!(ann.name, "guest-1.a", "guest names carry their node");
    let bob = UdpClient::join(b.udp).await;
    assert_eq!(bob.name, "guest-1.b");
    ann.expect("* guest-1.b joined").await;
    ann.send("hello from tcp on a").await;
    bob.expect("<guest-1.a> hello from tcp on a").await;
    bob.send("hello from udp on b").await;
    let skipped = ann.expect("<guest-1.b> hello from udp on b").await;
    assert!(
        !skipped.iter().any(|l| l.contains("hello from tcp")),
        "no echo of its own line through the cluster: {skipped:?}"
    );
    // A TCP member on b too: it hears both, each once.
    let mut cy = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", cy.name)).await;
    ann.send("second").await;
    cy.expect("<guest-1.a> second").await;
    bob.expect("<guest-1.a> second").await;
    ann.send("/nick ann").await;
    ann.expect("* you are now known as ann").await;
    cy.expect("* guest-1.a is now known as ann").await;
    ann.send("/quit bye").await;
    cy.expect("* ann left: \"bye\"").await;
    bob.send("anyone?").await;
    let lines = cy.expect("<guest-1.b> anyone?").await;
    assert!(
        !lines.iter().any(|l| l.contains("second")),
        "nothing delivered twice: {lines:?}"
    );
}

#[tokio::test]
async fn three_nodes_private_messages_and_room_moves() {
    let nats = Nats::start("three").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let c = node(&nats, "c").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    // The rename reached a before its notice did, so bob is known there now.
    ann.expect("* guest-1.b is now known as bob").await;
    let cy = UdpClient::join(c.udp).await;
    ann.expect(&format!("* {} joined", cy.name)).await;
    bob.expect(&format!("* {} joined", cy.name)).await;
    // c has heard of ann before cy writes to her.
    cy.send("/who").await;
    cy.expect("*   ann (tcp on a)").await;
    ann.send("/msg bob psst").await;
    bob.expect("[private] <ann> psst").await;
    cy.send("/msg ann from udp on c").await;
    ann.expect(&format!("[private] <{}> from udp on c", cy.name))
        .await;
    ann.send("/msg nobody hi").await;
    ann.expect("! no such member: nobody").await;
    // A move on b is seen on a and c; the room follows across nodes.
    bob.send("/join rust").await;
    bob.expect_match(|l| l.starts_with("* you are in #rust"))
        .await;
    ann.expect("* bob left #lobby").await;
    cy.expect("* bob left #lobby").await;
    ann.send("/join rust").await;
    ann.expect_match(|l| l.starts_with("* you are in #rust"))
        .await;
    bob.expect("* ann joined #rust").await;
    ann.send("in rust").await;
    bob.expect("<ann> in rust").await;
    cy.send("in lobby").await;
    bob.send("still here").await;
    let skipped = ann.expect("<bob> still here").await;
    assert!(
        !skipped.iter().any(|l| l.contains("in lobby")),
        "lobby lines stay in the lobby: {skipped:?}"
    );
    // The nick is taken cluster-wide.
    cy.send("/nick bob").await;
    cy.expect("! that name is taken").await;
}

#[tokio::test]
async fn one_senders_lines_arrive_in_order_on_every_node() {
    let nats = Nats::start("order").await;
    let a = node_with(&nats, "a", "--rate off").await;
    let b = node(&nats, "b").await;
    let c = node(&nats, "c").await;
    let mut sender = TcpClient::with_nick(a.tcp, "sender").await;
    let mut on_b = TcpClient::connect(b.tcp).await;
    sender.expect(&format!("* {} joined", on_b.name)).await;
    let on_c = UdpClient::join(c.udp).await;
    sender.expect(&format!("* {} joined", on_c.name)).await;
    on_b.expect(&format!("* {} joined", on_c.name)).await;
    const LINES: usize = 200;
    let mut batch = String::new();
    for i in 0..LINES {
        batch.push_str(&format!("line {i}\n"));
    }
    // Several lines per write: they travel as one event, and events keep their order.
    for chunk in batch.as_bytes().chunks(700) {
        sender.send_raw(chunk).await;
    }
    for i in 0..LINES {
        let want = format!("<sender> line {i}");
        assert_eq!(on_b.recv().await, want, "tcp member on b");
        assert_eq!(on_c.recv().await, want, "udp member on c");
    }
}

#[tokio::test]
async fn private_lines_reach_a_member_of_another_node_with_the_longest_name() {
    let nats = Nats::start("long-name").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    // 32 characters of three UTF-8 bytes each: the longest name, and a long subject token.
    let name = "漢".repeat(32);
    let mut far = TcpClient::with_nick(b.tcp, &name).await;
    ann.expect_renamed(&name).await;
    ann.send(&format!("/msg {name} hello there")).await;
    far.expect("[private] <ann> hello there").await;
    far.send("/msg ann and back").await;
    ann.expect(&format!("[private] <{name}> and back")).await;
}
