//! `--announce-max`: a room announces joins and leaves only while it holds at most that many
//! members; a bigger room stays quiet about them (a join storm in a huge room only buries the
//! chat) but still carries every chat line. With `--cluster` the room is counted on every node.

mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{start_server, TcpClient};
use nats::Nats;

#[tokio::test]
async fn a_room_over_the_limit_stays_quiet_about_joins_and_leaves_but_carries_chat() {
    let server = start_server("--announce-max 2").await;
    let mut ann = TcpClient::connect(server.tcp).await;
    let mut bo = TcpClient::connect(server.tcp).await;
    // The second member makes two: announced.
    assert_eq!(ann.recv().await, format!("* {} joined", bo.name));
    // The third makes three: not announced, so the next thing the others see is its chat.
    let mut cy = TcpClient::connect(server.tcp).await;
    cy.send("hello from the third").await;
    let said = format!("<{}> hello from the third", cy.name);
    assert_eq!(ann.recv().await, said);
    assert_eq!(bo.recv().await, said);
    // Leaving a room of three is quiet too.
    cy.send("/quit").await;
    cy.expect_closed().await;
    bo.send("still here").await;
    assert_eq!(ann.recv().await, format!("<{}> still here", bo.name));
    // Leaving a room of two is told again.
    bo.send("/quit").await;
    let skipped = ann
        .expect_match(|l| l.starts_with(&format!("* {} left", bo.name)))
        .await;
    assert!(skipped.is_empty(), "before the leave notice: {skipped:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn moves_follow_the_same_rule_in_both_rooms() {
    let server = start_server("--announce-max 2").await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    let mut bo = TcpClient::with_nick(server.tcp, "bo").await;
    ann.expect_renamed("bo").await;
    // Leaving a lobby of two is told.
    bo.send("/join #x").await;
    bo.expect("* you are in #x with 0 others").await;
    ann.expect("* bo left #lobby").await;
    let mut cy = TcpClient::with_nick(server.tcp, "cy").await;
    ann.expect_renamed("cy").await;
    // A third in the lobby leaves quietly, and makes #x two: told there.
    let mut di = TcpClient::with_nick(server.tcp, "di").await;
    di.send("/join #x").await;
    di.expect("* you are in #x with 1 other").await;
    bo.expect("* di joined #x").await;
    // A fourth joins a lobby of three and moves into an #x of three: quiet in both.
    let mut ed = TcpClient::with_nick(server.tcp, "ed").await;
    ed.send("/join #x").await;
    ed.expect("* you are in #x with 2 others").await;
    ed.send("hi x").await;
    assert_eq!(bo.recv().await, "<ed> hi x");
    cy.send("mark").await;
    // The lobby saw di and ed take their names, but neither join nor leave of theirs.
    let skipped = ann.expect("<cy> mark").await;
    assert!(
        skipped.iter().all(|l| l.contains(" is now known as ")),
        "in the lobby: {skipped:?}"
    );
    assert_eq!(skipped.len(), 2, "in the lobby: {skipped:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_with_a_big_room_is_quiet_about_another_nodes_members_leaving_it() {
    let nats = Nats::start("announce").await;
    let a = start_server(&format!("{} --announce-max 1", nats.flags("a"))).await;
    let b = start_server(&nats.flags("b")).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    // a's lobby holds two of a's members now: over the limit there.
    let mut al = TcpClient::with_nick(a.tcp, "al").await;
    ann.expect_renamed("al").await;
    let _bo = TcpClient::with_nick(b.tcp, "bo").await;
    ann.expect_renamed("bo").await;
    // b stops: a would show bo leaving, but its lobby is over the limit.
    b.shutdown().await;
    let mut gone = false;
    for _ in 0..100 {
        ann.send("/who").await;
        let count = loop {
            let line = ann.recv().await;
            assert!(!line.contains(" left"), "told: {line}");
            if let Some(n) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" here:"))
            {
                break n.parse::<usize>().expect("a member count");
            }
        };
        let mut listed = Vec::new();
        for _ in 0..count {
            listed.push(ann.recv().await);
        }
        if !listed.iter().any(|l| l.contains("bo (")) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "bo never left a's /who");
    // a shows a lost node's members leaving right after it frees their names: once al can take
    // bo's name, any notice would have come.
    let mut renamed = false;
    for _ in 0..100 {
        al.send("/nick bo").await;
        let answer = loop {
            let line = al.recv().await;
            if line == "* you are now known as bo" || line.starts_with("! ") {
                break line;
            }
        };
        if answer == "* you are now known as bo" {
            renamed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(renamed, "bo's name never came free");
    let skipped = ann.expect("* al is now known as bo").await;
    assert!(!skipped.iter().any(|l| l.contains(" left")), "{skipped:?}");
}

#[tokio::test]
async fn with_a_cluster_the_limit_counts_the_room_on_every_node() {
    let nats = Nats::start("announce-cluster").await;
    let a = start_server(&format!("{} --announce-max 2", nats.flags("a"))).await;
    let b = start_server(&format!("{} --announce-max 2", nats.flags("b"))).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bo = TcpClient::connect(b.tcp).await;
    // Two in the lobby, one on each node: within the limit, so bo's arrival is announced.
    let skipped = ann.expect(&format!("* {} joined", bo.name)).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    bo.send("/nick bo").await;
    bo.expect("* you are now known as bo").await;
    // b has heard of ann before the third member comes.
    bo.send("/who").await;
    bo.expect("*   ann (tcp on a)").await;
    // Three now, two of them on b: over the limit for the room, though not for b's share of it.
    let mut cy = TcpClient::with_nick(b.tcp, "cy").await;
    let skipped = ann.expect_renamed("cy").await;
    assert!(
        !skipped.iter().any(|l| l.ends_with(" joined")),
        "{skipped:?}"
    );
    cy.send("/quit").await;
    cy.expect_closed().await;
    bo.send("mark").await;
    let skipped = ann.expect("<bo> mark").await;
    assert!(!skipped.iter().any(|l| l.contains(" left")), "{skipped:?}");
}
