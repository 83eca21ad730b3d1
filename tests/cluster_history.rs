//! `--cluster` history: room lines kept in a JetStream stream (real nats-server), so every node
//! replays the same lines with the same ids (stream sequences), including what was said while a
//! node was down; without NATS a node replays its own history and says so.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{spawn_chatd, start_server, TcpClient, TestServer};
use nats::Nats;

const FALLBACK: &str = "* cluster history unavailable: this node's own history follows";

async fn node(nats: &Nats, name: &str) -> TestServer {
    start_server(&nats.flags(name)).await
}

/// The lines of one `/history` reply (after its header, up to `* end of history`); none when the
/// room has none.
async fn history(client: &mut TcpClient, request: &str) -> Vec<String> {
    client.send(request).await;
    let header = loop {
        let line = client.recv().await;
        if line.starts_with("* no messages in ")
            || (line.starts_with("* last ") && line.contains(" message"))
        {
            break line;
        }
    };
    if header.starts_with("* no messages in ") {
        return Vec::new();
    }
    let mut lines = Vec::new();
    loop {
        let line = client.recv().await;
        if line == "* end of history" {
            return lines;
        }
        lines.push(line);
    }
}

/// Asks `/history` until its last line ends with `last` (the stream stores a line a moment after
/// members got it); bounded.
async fn history_until(client: &mut TcpClient, last: &str) -> Vec<String> {
    for _ in 0..50 {
        let lines = history(client, "/history").await;
        if lines.last().is_some_and(|l| l.ends_with(last)) {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("history never ended with {last:?}");
}

/// `#ID [HH:MM] <who> text` -> ID.
fn id_of(line: &str) -> u64 {
    line.strip_prefix('#')
        .and_then(|l| l.split(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id on {line:?}"))
}

/// The text after the `[HH:MM] ` stamp.
fn text_of(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, text)| text)
}

async fn spawn_node(nats: &Nats, name: &str) -> (tokio::process::Child, std::net::SocketAddr) {
    let flags = nats.flags(name);
    let args: Vec<&str> = flags.split(' ').collect();
    let (child, tcp, _) = spawn_chatd(&args, None).await;
    (child, tcp)
}

#[tokio::test]
async fn lines_said_while_a_node_was_down_are_replayed_there_after_it_restarts() {
    let nats = Nats::start("hist-down").await;
    let a = node(&nats, "a").await;
    let (mut b, b_tcp) = spawn_node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    ann.send("before b went down").await;
    history_until(&mut ann, "<ann> before b went down").await;
    b.kill().await.expect("kill node b");
    ann.send("while b was down").await;
    ann.send("still down").await;
    history_until(&mut ann, "<ann> still down").await;
    let (_b, b_tcp_again) = spawn_node(&nats, "b").await;
    assert_ne!(b_tcp, b_tcp_again, "a new process");
    let mut cy = TcpClient::connect(b_tcp_again).await;
    let header = cy
        .expect_match(|l| l.starts_with("* last 3 messages in #lobby"))
        .await;
    assert!(!header.iter().any(|l| l == FALLBACK), "{header:?}");
    let mut replay = Vec::new();
    for _ in 0..3 {
        replay.push(text_of(&cy.recv().await).to_string());
    }
    assert_eq!(
        replay,
        [
            "<ann> before b went down",
            "<ann> while b was down",
            "<ann> still down"
        ]
    );
    cy.expect("* end of history").await;
}

#[tokio::test]
async fn two_nodes_show_the_same_history_with_the_same_ids() {
    let nats = Nats::start("hist-same").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    ann.expect_renamed("bob").await;
    // The ids' epoch is the stream's: the same on every node.
    let mut epochs = Vec::new();
    for client in [&mut ann, &mut bob] {
        client.send("/ids on").await;
        let on = loop {
            let line = client.recv().await;
            if line.starts_with("* message ids on") {
                break line;
            }
        };
        let epoch: String = on
            .split("(epoch ")
            .nth(1)
            .map(|e| e.chars().take(6).collect())
            .unwrap_or_else(|| panic!("{on}"));
        assert_eq!(
            on,
            format!("* message ids on: /history lines start with #ID, the same on every node (epoch {epoch}: /history since ID@{epoch})")
        );
        epochs.push(epoch);
    }
    assert_eq!(epochs[0], epochs[1], "one stream, one epoch");
    // A line in another room first takes stream sequence 1: lobby ids are the stream's, not
    // this room's own count.
    ann.send("/join other").await;
    ann.expect_match(|l| l.starts_with("* you are in #other"))
        .await;
    ann.send("elsewhere").await;
    history_until(&mut ann, "<ann> elsewhere").await;
    ann.send("/join lobby").await;
    ann.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    ann.send("one from a").await;
    bob.expect("<ann> one from a").await;
    history_until(&mut bob, "<ann> one from a").await;
    bob.send("two from b").await;
    ann.expect("<bob> two from b").await;
    // Each node's history relay is a task of its own: the stream is waited for before the next
    // line is said, so the lines are stored in the order they were said.
    history_until(&mut ann, "<bob> two from b").await;
    ann.send("three from a").await;
    bob.expect("<ann> three from a").await;
    let on_a = history_until(&mut ann, "<ann> three from a").await;
    let on_b = history_until(&mut bob, "<ann> three from a").await;
    assert_eq!(on_a.len(), 3, "{on_a:?}");
    assert_eq!(on_a, on_b, "same lines, same ids, same times");
    let ids: Vec<u64> = on_a.iter().map(|l| id_of(l)).collect();
    assert_eq!(ids, [2, 3, 4], "stream sequences: {on_a:?}");

    // `/history since ID` on the other node: what came after the first line, by stream sequence.
    let since = history(&mut bob, &format!("/history since {}", ids[0])).await;
    assert_eq!(since, on_a[1..].to_vec());
    let qualified = format!("/history since {}@{}", ids[0], epochs[0]);
    assert_eq!(history(&mut bob, &qualified).await, on_a[1..].to_vec());
    let none = format!("/history since {}", ids[2]);
    bob.send(&none).await;
    bob.expect_match(|l| l.starts_with("* no messages in #lobby after that"))
        .await;
}

#[tokio::test]
async fn without_nats_at_start_a_node_replays_its_own_history_and_says_so() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let a = start_server(&format!("--cluster {url} --node a --cluster-timeout 1s")).await;
    // The node waits (bounded) for NATS before serving; the first welcome can take that long.
    let mut ann = TcpClient::connect_raw(a.tcp).await;
    let welcome = tokio::time::timeout(3 * common::TIMEOUT, ann.recv_line())
        .await
        .expect("welcome once the node gave up waiting for NATS")
        .expect("welcome");
    ann.name = common::name_from_welcome(&welcome);
    ann.send("said alone").await;
    // A reply to a later command shows the line was taken into the room before cy joins.
    ann.send("/who").await;
    ann.expect_match(|l| l.ends_with(" here:")).await;
    let mut cy = TcpClient::connect(a.tcp).await;
    let lines = cy.expect("* end of history").await;
    assert!(lines.iter().any(|l| l == FALLBACK), "{lines:?}");
    let said = format!("] <{}> said alone", ann.name);
    assert!(lines.iter().any(|l| l.ends_with(&said)), "{lines:?}");
}

#[tokio::test]
async fn when_nats_goes_a_node_falls_back_to_its_own_history_and_says_so() {
    let mut nats = Nats::start("hist-gone").await;
    let a = node(&nats, "a").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut cy = TcpClient::connect(a.tcp).await;
    ann.send("kept by the stream").await;
    history_until(&mut ann, "<ann> kept by the stream").await;
    nats.kill().await;
    ann.expect("* cluster link lost").await;
    ann.send("said while nats is gone").await;
    // A dead JetStream delays no member: the line is delivered at once.
    cy.expect("<ann> said while nats is gone").await;
    for _ in 0..50 {
        ann.send("/history").await;
        let first = ann.recv().await;
        if first == FALLBACK {
            let lines = ann.expect("* end of history").await;
            assert!(
                lines
                    .iter()
                    .any(|l| l.ends_with("] <ann> said while nats is gone")),
                "its own history goes on: {lines:?}"
            );
            return;
        }
        ann.expect("* end of history").await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never fell back to its own history");
}

/// Waits (bounded) until the cluster history stream exists with `max_msgs_per_subject` = `want`
/// (a node opens it a moment after it starts).
async fn stream_keeps(nats: &Nats, want: i64) {
    let client = tokio::time::timeout(common::TIMEOUT, async_nats::connect(nats.url()))
        .await
        .expect("nats in time")
        .expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let name = chatd::cluster::subject::Subjects::new("chatd").history_stream();
    let mut seen = None;
    for _ in 0..100 {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(common::TIMEOUT, js.get_stream(name.clone())).await
        {
            if let Ok(Ok(info)) = tokio::time::timeout(common::TIMEOUT, stream.info()).await {
                seen = Some(info.config.max_messages_per_subject);
                if seen == Some(want) {
                    return;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the history stream keeps {seen:?}, not {want}");
}

#[tokio::test]
async fn the_history_stream_keeps_what_the_node_started_last_asks_for() {
    let nats = Nats::start("hist-size").await;
    let _a = start_server(&format!("{} --history 5", nats.flags("a"))).await;
    stream_keeps(&nats, 5).await;
    // An operator restarting nodes with a new --history: the stream follows.
    let b = start_server(&format!("{} --history 3", nats.flags("b"))).await;
    stream_keeps(&nats, 3).await;
    let mut sam = TcpClient::with_nick(b.tcp, "sam").await;
    for n in 0..5 {
        sam.send(&format!("line {n}")).await;
    }
    let lines = history_until(&mut sam, "<sam> line 4").await;
    let texts: Vec<&str> = lines.iter().map(|l| text_of(l)).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
}

#[tokio::test]
async fn lines_said_while_nats_was_gone_reach_the_clusters_history_once_it_is_back() {
    let mut nats = Nats::start("hist-backfill").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    ann.send("before").await;
    history_until(&mut bob, "<ann> before").await;
    nats.kill().await;
    ann.expect("* cluster link lost").await;
    ann.send("said while nats is gone").await;
    nats.restart().await;
    ann.expect("* cluster link restored").await;
    bob.expect("* cluster link restored").await;
    // a kept the line for the stream until the link was back: b's history has it.
    let lines = history_until(&mut bob, "<ann> said while nats is gone").await;
    let texts: Vec<&str> = lines.iter().map(|l| text_of(l)).collect();
    assert!(texts.contains(&"<ann> before"), "{texts:?}");
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.ends_with("said while nats is gone"))
            .count(),
        1,
        "once: {texts:?}"
    );
}
