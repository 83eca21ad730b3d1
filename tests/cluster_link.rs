//! `--cluster` link loss: when nats-server goes away under traffic, every node keeps serving its
//! own members and tells them; when it is back (same port, same store), presence is resynchronised
//! and nobody who left meanwhile is left behind as a ghost.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{start_server, TcpClient};
use nats::Nats;

#[tokio::test]
async fn nodes_carry_on_locally_without_nats_and_resynchronise_when_it_is_back() {
    let mut nats = Nats::start("link").await;
    let a = start_server(&nats.quick_flags("a")).await;
    let b = start_server(&nats.quick_flags("b")).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut amy = TcpClient::with_nick(a.tcp, "amy").await;
    let mut bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    let mut cal = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", cal.name)).await;
    cal.send("/nick cal").await;
    cal.expect("* you are now known as cal").await;
    ann.expect(&format!("* {} is now known as cal", cal.name))
        .await;
    bob.send("before").await;
    ann.expect("<bob> before").await;

    nats.kill().await;
    ann.expect("* cluster link lost").await;
    bob.expect("* cluster link lost").await;
    // Each node goes on serving its own members.
    for i in 0..20 {
        ann.send(&format!("local on a {i}")).await;
    }
    for i in 0..20 {
        amy.expect(&format!("<ann> local on a {i}")).await;
    }
    bob.send("local on b").await;
    cal.expect("<bob> local on b").await;
    // The other node's members are gone from here once it has been silent for the timeout,
    cal.send("/quit").await;
    ann.expect("* bob left (node lost)").await;
    // and the one who left meanwhile must not come back.
    nats.restart().await;
    ann.expect("* cluster link restored").await;
    bob.expect("* cluster link restored").await;
    ann.expect("* bob joined").await;
    ann.send("/who").await;
    ann.expect("* 3 here:").await;
    assert_eq!(ann.recv().await, "*   amy (tcp)");
    assert_eq!(ann.recv().await, "*   ann (tcp) (you)");
    assert_eq!(ann.recv().await, "*   bob (tcp on b)");
    bob.send("after").await;
    ann.expect("<bob> after").await;
    ann.send("hello again").await;
    bob.expect("<ann> hello again").await;
    // cal's name was given back after all: it can be claimed again.
    amy.send("/nick cal").await;
    amy.expect("* you are now known as cal").await;
}
