//! IRC members on a two-node `--cluster` (a real nats-server): a member in several channels is
//! in each of them on the other node too (NAMES, WHO, `/who`), chat crosses both ways in every
//! room in order, a PART shows as a PART in that room only, a QUIT once, and IRC, TCP, WebSocket
//! and UDP members share one room across the nodes.
mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;

use common::{start_server, TcpClient, TestServer, UdpClient};
use nats::Nats;
use ws::WsClient;

/// Node `name` of the cluster on `nats`, with an IRC listener.
async fn node(nats: &Nats, name: &str) -> TestServer {
    start_server(&format!("{} --irc 0 --name chatd", nats.flags(name))).await
}

/// Registers an IRC client as `nick` and waits for the end of its welcome.
async fn irc(server: &TestServer, nick: &str) -> TcpClient {
    let addr: SocketAddr = server.irc.expect("irc listener");
    let mut client = TcpClient::connect_raw(addr).await;
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick} here")).await;
    client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    client.name = nick.to_string();
    client
}

/// Joins `channels` (`#a,#b`) and waits for the end of the last one's NAMES.
async fn join(client: &mut TcpClient, channels: &str) {
    client.send(&format!("JOIN {channels}")).await;
    let last = channels.rsplit(',').next().unwrap_or(channels);
    client
        .expect_match(|l| l.contains(" 366 ") && l.contains(last))
        .await;
}

/// The nicks NAMES lists for `channel`.
async fn names(client: &mut TcpClient, channel: &str) -> Vec<String> {
    client.send(&format!("NAMES {channel}")).await;
    let mut nicks = Vec::new();
    loop {
        let line = client.recv().await;
        if line.contains(" 366 ") {
            nicks.sort();
            return nicks;
        }
        if line.contains(" 353 ") {
            let (_, list) = line.rsplit_once(" :").expect("a NAMES list");
            nicks.extend(
                list.split(' ')
                    .map(|n| n.trim_start_matches(['@', '+']).to_string()),
            );
        }
    }
}

/// Waits for the PRIVMSG `text` from `from` in `channel`; returns the lines skipped on the way.
async fn said(client: &mut TcpClient, from: &str, channel: &str, text: &str) -> Vec<String> {
    client
        .expect(&format!(":{from}!chat@chatd PRIVMSG {channel} :{text}"))
        .await
}

#[tokio::test]
async fn an_irc_member_in_two_channels_is_in_both_on_the_other_node() {
    let nats = Nats::start("irc-two").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut bob = irc(&b, "bob").await;
    join(&mut bob, "#one,#two").await;
    // A line member on b in each room, to see the same from the line protocol's side.
    let mut tee = TcpClient::with_nick(b.tcp, "tee").await;
    tee.send("/join #one").await;
    tee.expect_match(|l| l.starts_with("* you are in #one"))
        .await;
    let mut tia = TcpClient::with_nick(b.tcp, "tia").await;
    tia.send("/join #two").await;
    tia.expect_match(|l| l.starts_with("* you are in #two"))
        .await;

    let mut alice = irc(&a, "alice").await;
    join(&mut alice, "#one").await;
    // A real JOIN on the other node, in that room only.
    let before = bob.expect(":alice!chat@chatd JOIN #one").await;
    assert!(before.iter().all(|l| !l.contains("alice")), "{before:?}");
    join(&mut alice, "#two").await;
    let between = bob.expect(":alice!chat@chatd JOIN #two").await;
    assert!(between.iter().all(|l| !l.contains("alice")), "{between:?}");
    tee.expect("* alice joined #one").await;
    tia.expect("* alice joined #two").await;
    // The other node knows the member in both rooms, not only its first.
    assert_eq!(names(&mut bob, "#one").await, ["alice", "bob", "tee"]);
    assert_eq!(names(&mut bob, "#two").await, ["alice", "bob", "tia"]);
    for channel in ["#one", "#two"] {
        bob.send(&format!("WHO {channel}")).await;
        let rows = bob
            .expect_match(|l| l.contains(" 315 ") && l.contains(channel))
            .await;
        assert!(
            rows.iter()
                .any(|l| l.contains(" 352 ") && l.contains(channel) && l.contains(" alice ")),
            "{rows:?}"
        );
    }
    tia.send("/who").await;
    tia.expect("* 3 here:").await;
    assert_eq!(tia.recv().await, "*   alice (irc on a)");
    bob.send("WHOIS alice").await;
    let whois = bob.expect_match(|l| l.contains(" 318 ")).await;
    assert!(
        whois
            .iter()
            .any(|l| l.contains(" 319 bob alice :") && l.contains("#one") && l.contains("#two")),
        "{whois:?}"
    );
    assert!(
        whois.iter().any(|l| l.contains(" 312 bob alice a ")),
        "{whois:?}"
    );
    // And a's member sees b's in both.
    assert_eq!(names(&mut alice, "#one").await, ["alice", "bob", "tee"]);
    assert_eq!(names(&mut alice, "#two").await, ["alice", "bob", "tia"]);

    // Chat both ways in both rooms.
    for channel in ["#one", "#two"] {
        alice
            .send(&format!("PRIVMSG {channel} :hi from a in {channel}"))
            .await;
        said(
            &mut bob,
            "alice",
            channel,
            &format!("hi from a in {channel}"),
        )
        .await;
        bob.send(&format!("PRIVMSG {channel} :hi from b in {channel}"))
            .await;
        said(
            &mut alice,
            "bob",
            channel,
            &format!("hi from b in {channel}"),
        )
        .await;
    }
    tee.expect("<alice> hi from a in #one").await;
    tia.expect("<alice> hi from a in #two").await;

    // Traffic in both rooms at once, from b: every line reaches a's member once, in each room's
    // order.
    const LINES: usize = 50;
    for n in 0..LINES {
        tee.send(&format!("one {n}")).await;
        tia.send(&format!("two {n}")).await;
    }
    let (mut next_one, mut next_two) = (0, 0);
    while next_one < LINES || next_two < LINES {
        let line = alice.recv().await;
        if let Some(text) = line.strip_prefix(":tee!chat@chatd PRIVMSG #one :") {
            assert_eq!(text, format!("one {next_one}"), "order in #one");
            next_one += 1;
        } else if let Some(text) = line.strip_prefix(":tia!chat@chatd PRIVMSG #two :") {
            assert_eq!(text, format!("two {next_two}"), "order in #two");
            next_two += 1;
        }
    }

    // A PART on a is a PART on b, in that room only.
    alice.send("PART #two :off to one").await;
    alice
        .expect(":alice!chat@chatd PART #two :off to one")
        .await;
    bob.expect(":alice!chat@chatd PART #two :off to one").await;
    tia.expect("* alice left #two: \"off to one\"").await;
    alice.send("PRIVMSG #one :still in one").await;
    let between = said(&mut bob, "alice", "#one", "still in one").await;
    assert!(between.iter().all(|l| !l.contains("alice")), "{between:?}");
    assert_eq!(names(&mut bob, "#one").await, ["alice", "bob", "tee"]);
    assert_eq!(names(&mut bob, "#two").await, ["bob", "tia"]);
    tia.send("/who").await;
    tia.expect("* 2 here:").await;

    // Back in both; a QUIT reaches b once, though it is announced in each room.
    join(&mut alice, "#two").await;
    bob.expect(":alice!chat@chatd JOIN #two").await;
    let mut dan = irc(&a, "dan").await;
    join(&mut dan, "#one,#two").await;
    bob.expect(":dan!chat@chatd JOIN #two").await;
    // A rename, announced in each room, is one NICK on b.
    alice.send("NICK alicia").await;
    dan.expect_match(|l| l.starts_with(":alice!chat@chatd NICK"))
        .await;
    let seen = after_markers(&mut dan, &mut bob, "renamed").await;
    let nicks: Vec<&String> = seen.iter().filter(|l| l.contains(" NICK ")).collect();
    assert_eq!(nicks.len(), 1, "one NICK for two shared rooms: {seen:?}");
    assert!(nicks[0].starts_with(":alice!chat@chatd NICK "), "{nicks:?}");
    assert!(nicks[0].ends_with("alicia"), "{nicks:?}");
    tee.expect("* alice is now known as alicia").await;
    tia.expect("* alice is now known as alicia").await;
    assert_eq!(
        names(&mut bob, "#two").await,
        ["alicia", "bob", "dan", "tia"]
    );

    alice.send("QUIT :done for today").await;
    dan.expect_match(|l| l.starts_with(":alicia!chat@chatd QUIT"))
        .await;
    let seen = after_markers(&mut dan, &mut bob, "quit").await;
    let quits: Vec<&String> = seen.iter().filter(|l| l.contains(" QUIT ")).collect();
    assert_eq!(
        quits,
        [":alicia!chat@chatd QUIT :done for today"],
        "one QUIT for two shared rooms: {seen:?}"
    );
    tee.expect("* alicia left: \"done for today\"").await;
    tia.expect("* alicia left: \"done for today\"").await;
    assert_eq!(names(&mut bob, "#one").await, ["bob", "dan", "tee"]);

    // A node that stops takes its member out of every room it was in: one QUIT on b, and a
    // notice in each room.
    a.shutdown().await;
    let skipped = bob.expect(":dan!chat@chatd QUIT :node stopped").await;
    tee.expect("* dan left (node stopped)").await;
    tia.expect("* dan left (node stopped)").await;
    bob.send("PING :after").await;
    let seen = bob.expect(":chatd PONG chatd after").await;
    let quits = skipped
        .iter()
        .chain(&seen)
        .filter(|l| l.contains(" QUIT "))
        .count();
    assert_eq!(quits, 0, "no second QUIT: {skipped:?} {seen:?}");
    assert_eq!(names(&mut bob, "#two").await, ["bob", "tia"]);
    b.shutdown().await;
}

/// Has `marker` (an IRC member of the origin node, in #one and #two) say something in both rooms
/// after what it saw happen there, and returns what `watcher` (of the other node, in both) got
/// up to both lines: each room's lines reach it in their order, so whatever that room told of
/// before the marker is in there.
async fn after_markers(marker: &mut TcpClient, watcher: &mut TcpClient, tag: &str) -> Vec<String> {
    let mut markers: Vec<String> = ["#one", "#two"]
        .iter()
        .map(|channel| {
            format!(
                ":{}!chat@chatd PRIVMSG {channel} :{tag} {channel}",
                marker.name
            )
        })
        .collect();
    marker.send(&format!("PRIVMSG #one :{tag} #one")).await;
    marker.send(&format!("PRIVMSG #two :{tag} #two")).await;
    // The two rooms' lines may interleave either way.
    let mut seen = Vec::new();
    while !markers.is_empty() {
        let line = watcher.recv().await;
        match markers.iter().position(|m| *m == line) {
            Some(at) => {
                markers.remove(at);
            }
            None => seen.push(line),
        }
    }
    seen
}

#[tokio::test]
async fn irc_tcp_web_and_udp_members_chat_in_one_room_across_two_nodes() {
    let nats = Nats::start("irc-mixed").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // On a: an IRC member and a netcat-style one; on b: a browser's and a UDP one.
    let mut ivy = irc(&a, "ivy").await;
    join(&mut ivy, "#hall").await;
    let mut tom = TcpClient::with_nick(a.tcp, "tom").await;
    tom.send("/join #hall").await;
    ivy.expect(":tom!chat@chatd JOIN #hall").await;
    let mut wes = WsClient::with_nick(b.http, "wes").await;
    wes.send("/join #hall").await;
    ivy.expect(":wes!chat@chatd JOIN #hall").await;
    let uma = UdpClient::join(b.udp).await;
    uma.send("/nick uma").await;
    uma.expect("* you are now known as uma").await;
    uma.send("/join #hall").await;
    ivy.expect(":uma!chat@chatd JOIN #hall").await;
    // Everyone has seen the last one come in, so everyone is in.
    tom.expect("* uma joined #hall").await;
    wes.expect("* uma joined #hall").await;

    ivy.send("PRIVMSG #hall :from irc").await;
    tom.expect("<ivy> from irc").await;
    wes.expect("<ivy> from irc").await;
    uma.expect("<ivy> from irc").await;

    tom.send("from tcp").await;
    said(&mut ivy, "tom", "#hall", "from tcp").await;
    wes.expect("<tom> from tcp").await;
    uma.expect("<tom> from tcp").await;

    wes.send("from web").await;
    said(&mut ivy, "wes", "#hall", "from web").await;
    tom.expect("<wes> from web").await;
    uma.expect("<wes> from web").await;

    uma.send("from udp").await;
    said(&mut ivy, "uma", "#hall", "from udp").await;
    tom.expect("<uma> from udp").await;
    wes.expect("<uma> from udp").await;

    // Every face lists every member, with its transport and node.
    wes.send("/who").await;
    wes.expect("* 4 here:").await;
    let mut rows = Vec::new();
    for _ in 0..4 {
        rows.push(wes.recv().await);
    }
    assert_eq!(
        rows,
        [
            "*   ivy (irc on a)",
            "*   tom (tcp on a)",
            "*   uma (udp)",
            "*   wes (web) (you)"
        ]
    );
    assert_eq!(names(&mut ivy, "#hall").await, ["ivy", "tom", "uma", "wes"]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn announce_max_counts_a_member_of_another_node_in_each_of_its_rooms() {
    let nats = Nats::start("irc-announce").await;
    let flags = |node: &str| format!("{} --irc 0 --announce-max 2", nats.flags(node));
    let a = start_server(&flags("a")).await;
    let b = start_server(&flags("b")).await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    bob.send("/join #two").await;
    bob.expect_match(|l| l.starts_with("* you are in #two"))
        .await;
    // #two is alice's second room: other nodes used to count her in her first only.
    let mut alice = irc(&a, "alice").await;
    join(&mut alice, "#one,#two").await;
    bob.expect("* alice joined #two").await;
    // A third member in a room of two across the nodes is past --announce-max 2: not announced.
    let mut cy = TcpClient::with_nick(b.tcp, "cy").await;
    cy.send("/join #two").await;
    cy.expect_match(|l| l.starts_with("* you are in #two with 2 others"))
        .await;
    cy.send("here quietly").await;
    let seen = bob.expect("<cy> here quietly").await;
    assert!(seen.iter().all(|l| !l.contains("cy joined")), "{seen:?}");
    said(&mut alice, "cy", "#two", "here quietly").await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_channel_operator_kicks_a_member_of_another_node_and_both_nodes_see_a_kick() {
    let nats = Nats::start("irc-kick").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // The room's first member anywhere operates it.
    let mut bob = irc(&b, "bob").await;
    join(&mut bob, "#k").await;
    let mut alice = irc(&a, "alice").await;
    join(&mut alice, "#k,#stay").await;
    bob.expect(":alice!chat@chatd JOIN #k").await;
    let mut cy = irc(&a, "cy").await;
    join(&mut cy, "#k").await;
    bob.expect(":cy!chat@chatd JOIN #k").await;
    bob.send("KICK #k alice :too loud").await;
    let kicked = |l: &str| l.contains(" KICK #k alice :too loud");
    bob.expect_match(kicked).await;
    cy.expect_match(kicked).await;
    alice.expect_match(kicked).await;
    alice
        .expect_match(|l| l.contains("NOTICE alice :you were kicked from #k by bob"))
        .await;
    // Out of that channel on both nodes, still in the other.
    assert_eq!(names(&mut bob, "#k").await, ["bob", "cy"]);
    assert_eq!(names(&mut cy, "#k").await, ["bob", "cy"]);
    alice.send("PRIVMSG #stay :still here").await;
    alice.send("NAMES #stay").await;
    alice
        .expect_match(|l| l.contains(" 353 ") && l.contains("#stay") && l.contains("alice"))
        .await;
    a.shutdown().await;
    b.shutdown().await;
}
