//! `--cluster` moderation: `/kick` and `/kill` reach members of other nodes (real nats-server):
//! the command travels to the member's node and is carried out there, with the notices a local
//! one gives; what that node refuses is told to the actor.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{login, other_address, start_server, TcpClient, TestServer, OPER_ROOT};
use nats::Nats;

const FLAGS: &str = "--argon2-memory 64 --argon2-passes 1";

async fn node(nats: &Nats, name: &str) -> TestServer {
    start_server(&format!("{} {FLAGS} {OPER_ROOT}", nats.flags(name))).await
}

/// `client` moves to `room` and sees itself there.
async fn join(client: &mut TcpClient, room: &str) {
    client.send(&format!("/join {room}")).await;
    client
        .expect_match(|l| l.starts_with(&format!("* you are in {room}")))
        .await;
}

/// Two nodes: ann opened #den on a (so operates it), bob sits in it on b, and ann saw it.
async fn ann_and_bob_in_den(tag: &str) -> (Nats, [TestServer; 2], TcpClient, TcpClient) {
    let nats = Nats::start(tag).await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    join(&mut ann, "#den").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    join(&mut bob, "#den").await;
    ann.expect("* bob joined #den").await;
    (nats, [a, b], ann, bob)
}

#[tokio::test]
async fn an_operator_kicks_a_member_of_another_node_out_of_the_room() {
    let (_nats, _nodes, mut ann, mut bob) = ann_and_bob_in_den("mod-kick").await;
    ann.send("/kick bob spam").await;
    // The room's notice and bob's own come on two queues: in either order.
    let before = bob
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    for told in [
        "* bob was kicked by ann (spam)",
        "! you were kicked from #den by ann (spam)",
    ] {
        assert!(
            before.iter().any(|l| l == told),
            "{told:?} not in {before:?}"
        );
    }
    // Every node's room heard it, the operator's too.
    ann.expect("* bob was kicked by ann (spam)").await;
    ann.expect("* bob left #den").await;
    // A member of another room, or of no room at all, is refused here, saying why.
    ann.send("/kick bob").await;
    ann.expect("! bob is not in #den").await;
    ann.send("/kick nobody").await;
    ann.expect("! no such member: nobody").await;
}

#[tokio::test]
async fn a_server_operator_disconnects_a_member_of_another_node_and_others_cannot_touch_it() {
    let nats = Nats::start("mod-kill").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut root = login(a.tcp, "root", "pw-root").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    root.expect_renamed("bob").await;
    root.send("/kill bob flooding").await;
    root.expect("* bob is disconnected").await;
    let last = bob.expect_closed().await;
    assert!(
        last.contains(&"! you were disconnected by root (flooding)".to_string()),
        "{last:?}"
    );
    // A room operator on b cannot kick a server operator on a: b asks a, a refuses, b is told.
    let mut cy = TcpClient::with_nick(b.tcp, "cy").await;
    join(&mut cy, "#den").await;
    join(&mut root, "#den").await;
    cy.expect("* root joined #den").await;
    cy.send("/kick root").await;
    cy.expect("! root is a server operator").await;
}

#[tokio::test]
async fn an_operator_mutes_and_unmutes_a_member_of_another_node() {
    let (_nats, _nodes, mut ann, mut bob) = ann_and_bob_in_den("mod-mute").await;
    ann.send("/mute bob 1h").await;
    ann.expect("* bob was muted by ann for 1h").await;
    // The muted member hears its own line only, not the room's notice as well.
    let told = bob.expect("! you are muted in #den by ann for 1h").await;
    assert!(!told.iter().any(|l| l.contains("was muted")), "{told:?}");
    // bob's node holds the mute, so nothing bob says leaves it.
    bob.send("hello").await;
    bob.expect("! you are muted in #den").await;
    ann.send("/unmute bob").await;
    bob.expect("* you may speak in #den again").await;
    ann.expect("* bob was unmuted by ann").await;
    bob.send("back").await;
    let skipped = ann.expect("<bob> back").await;
    assert!(!skipped.iter().any(|l| l.contains("hello")), "{skipped:?}");
    ann.send("/unmute bob").await;
    ann.expect("! bob is not muted in #den").await;
}

#[tokio::test]
async fn a_ban_by_name_of_a_guest_of_another_node_bans_its_address_everywhere() {
    let nats = Nats::start("mod-ban").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    join(&mut ann, "#den").await;
    let mut bob = TcpClient::connect_from(b.tcp, other_address()).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    join(&mut bob, "#den").await;
    ann.expect("* bob joined #den").await;
    ann.send("/ban bob 1h").await;
    // Only bob's node knows its address: it bans it and says so to ann.
    ann.expect("* address 127.0.0.2 (bob, a guest) is banned from #den for 1h")
        .await;
    let before = bob
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    assert!(
        before
            .iter()
            .any(|l| l == "! you are banned from #den by ann"),
        "{before:?}"
    );
    bob.send("/join #den").await;
    bob.expect("! you are banned from #den").await;
    // The ban is the room's, on every node: the address cannot come in on a either, once a has
    // the room state b stores in the background (bounded: 50 tries, about 2.5 s).
    let mut again = TcpClient::connect_from(a.tcp, other_address()).await;
    for tries in 0.. {
        again.send("/join #den").await;
        let line = loop {
            let line = again.recv().await;
            if line.starts_with("* you are in #den") || line == "! you are banned from #den" {
                break line;
            }
        };
        if line == "! you are banned from #den" {
            break;
        }
        assert!(tries < 50, "a never took the ban: {line}");
        again.send("/join #lobby").await;
        again
            .expect_match(|l| l.starts_with("* you are in #lobby"))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_the_first_member_of_a_room_in_the_whole_cluster_operates_it() {
    let nats = Nats::start("mod-first").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    ann.send("/join #den").await;
    ann.expect("* you are in #den with 0 others").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    // b has heard that ann is in #den before bob opens the room there.
    bob.send("/rooms").await;
    bob.expect("*   #den (1 member)").await;
    // The room is new to b, not to the cluster: bob is not its operator, and hears who is there.
    bob.send("/join #den").await;
    bob.expect("* you are in #den with 1 other").await;
    ann.expect("* bob joined #den").await;
    bob.send("/kick ann").await;
    bob.expect("! you are not an operator of #den").await;
    bob.send("/topic mine now").await;
    bob.expect("! you are not an operator of #den").await;
    // ann, who opened it first, operates it on every node.
    ann.send("/kick bob").await;
    bob.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
}

#[tokio::test]
async fn an_operator_makes_a_member_of_another_node_an_operator_and_takes_it_back() {
    let nats = Nats::start("mod-op").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    join(&mut ann, "#den").await;
    // bo and bob sit in #den on b; ann, who opened it first, operates it.
    let mut bo = TcpClient::with_nick(b.tcp, "bo").await;
    join(&mut bo, "#den").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    join(&mut bob, "#den").await;
    ann.expect("* bob joined #den").await;
    bob.send("/kick bo").await;
    bob.expect("! you are not an operator of #den").await;
    ann.send("/op bob").await;
    ann.expect("* bob is now an operator (while here) of #den (by ann)")
        .await;
    bob.expect("* bob is now an operator (while here) of #den (by ann)")
        .await;
    ann.send("/op bob").await;
    ann.expect("! bob is already an operator of #den").await;
    // It holds on bob's node, where bob's commands are checked.
    bob.send("/kick bo").await;
    bo.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    join(&mut bo, "#den").await;
    ann.send("/deop bob").await;
    bob.expect("* bob is no longer an operator of #den (by ann)")
        .await;
    bob.send("/kick bo").await;
    bob.expect("! you are not an operator of #den").await;
}

#[tokio::test]
async fn wall_and_lockdown_reach_every_room_of_every_node_once() {
    let nats = Nats::start("mod-wall").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut root = login(a.tcp, "root", "pw-root").await;
    let mut cy = TcpClient::with_nick(b.tcp, "cy").await;
    root.expect_renamed("cy").await;
    // #x is open on b only.
    let mut dee = TcpClient::with_nick(b.tcp, "dee").await;
    join(&mut dee, "#x").await;
    let wall = "* [server] root: maintenance at noon";
    root.send("/wall maintenance at noon").await;
    root.expect(wall).await;
    cy.expect(wall).await;
    dee.expect(wall).await;
    root.send("/lockdown on").await;
    let on = "* lockdown on (by root): only registered members may speak; guests may /login";
    for client in [&mut root, &mut cy, &mut dee] {
        let skipped = client.expect(on).await;
        assert!(!skipped.iter().any(|l| l == wall), "twice: {skipped:?}");
    }
    // b holds the lockdown too: its guests may not speak.
    cy.send("hello").await;
    cy.expect("! the server admits registered members only right now; /login NAME PASSWORD")
        .await;
    root.send("/lockdown off").await;
    cy.expect("* lockdown off (by root)").await;
    cy.send("hello again").await;
    let skipped = root.expect("<cy> hello again").await;
    assert!(!skipped.iter().any(|l| l == "<cy> hello"), "{skipped:?}");
}

#[tokio::test]
async fn slow_mode_set_on_one_node_slows_the_room_on_every_node() {
    let (_nats, nodes, mut ann, _bob) = ann_and_bob_in_den("mod-slow").await;
    // bob opened #den on b, so operates it there and is never slowed; cy is not.
    let mut cy = TcpClient::with_nick(nodes[1].tcp, "cy").await;
    join(&mut cy, "#den").await;
    ann.expect("* cy joined #den").await;
    ann.send("/slow 30").await;
    ann.expect_match(|l| l.starts_with("* slow mode in #den: one line per 30s"))
        .await;
    // cy's node takes slow mode from the cluster's room state: from then on its second line
    // within 30 s is refused there. (Each `/who` marks the end of one try's replies.)
    let mut refused = false;
    for n in 0..50 {
        cy.send(&format!("try {n}")).await;
        cy.send("/who").await;
        let replies = cy.expect_match(|l| l.ends_with(" here:")).await;
        if replies
            .iter()
            .any(|l| l.starts_with("! slow mode in #den: wait "))
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "cy's node never slowed #den");
    // Off on a, off on b.
    ann.send("/slow 0").await;
    ann.expect_match(|l| l.starts_with("* slow mode in #den is off"))
        .await;
    let mut spoke = false;
    for n in 0..50 {
        cy.send(&format!("free {n}")).await;
        cy.send("/who").await;
        let replies = cy.expect_match(|l| l.ends_with(" here:")).await;
        if !replies.iter().any(|l| l.starts_with("! slow mode")) {
            spoke = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(spoke, "cy's node kept slow mode");
}
