//! Rooms over real sockets: moving between rooms on both transports, what each room sees, listing,
//! removal of empty rooms, bad names, the room limit, and that a move neither loses nor repeats
//! anything addressed to the mover.

mod common;

use common::{start_server, TcpClient, UdpClient};

/// A UDP client with a nickname, having seen its own rename.
async fn udp_with_nick(server: std::net::SocketAddr, nick: &str) -> UdpClient {
    let udp = UdpClient::join(server).await;
    udp.send(&format!("/nick {nick}")).await;
    udp.expect(&format!("* you are now known as {nick}")).await;
    udp
}

#[tokio::test]
async fn join_moves_a_member_and_both_rooms_are_told() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    bob.send("/join #Rust").await;
    assert_eq!(bob.recv().await, "* you are in #Rust with 0 others");
    alice.expect("* bob left #lobby").await;

    let mut carol = TcpClient::with_nick(server.tcp, "carol").await;
    carol.send("/join rust").await;
    assert_eq!(carol.recv().await, "* you are in #Rust with 1 other");
    bob.expect("* carol joined #Rust").await;
    alice.expect("* carol left #lobby").await;

    // Chat stays in its room.
    carol.send("in rust").await;
    assert_eq!(bob.recv().await, "<carol> in rust");
    alice.send("in the lobby").await;
    bob.send("/who").await;
    assert_eq!(bob.recv().await, "* 2 here:");
    assert_eq!(bob.recv().await, "*   bob (tcp) (you)");
    assert_eq!(bob.recv().await, "*   carol (tcp)");
    alice.send("/who").await;
    assert_eq!(
        alice.expect_match(|l| l == "* 1 here:").await,
        Vec::<String>::new()
    );
    // Moving to the room one is in is refused, and says so.
    bob.send("/join #RUST").await;
    assert_eq!(bob.recv().await, "! you are already in #Rust");
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_work_over_udp_and_across_transports() {
    let server = start_server("").await;
    let mut tcp = TcpClient::with_nick(server.tcp, "tina").await;
    let udp = udp_with_nick(server.udp, "uma").await;
    tcp.send("/join games").await;
    tcp.expect("* you are in #games with 0 others").await;
    udp.send("/join #games").await;
    udp.expect("* you are in #games with 1 other").await;
    tcp.expect("* uma joined #games").await;
    udp.send("udp in games").await;
    tcp.expect("<uma> udp in games").await;
    tcp.send("tcp in games").await;
    udp.expect("<tina> tcp in games").await;
    // A lobby member hears none of it, and a private message crosses rooms.
    let mut lobby = TcpClient::with_nick(server.tcp, "lou").await;
    lobby.send("/msg uma psst").await;
    udp.expect("[private] <lou> psst").await;
    udp.send("/join lobby").await;
    udp.expect("* you are in #lobby with 1 other").await;
    tcp.expect("* uma left #games").await;
    lobby.send("welcome back").await;
    udp.expect("<lou> welcome back").await;
    let seen = lobby.expect("* uma joined #lobby").await;
    assert!(
        !seen.iter().any(|l| l.contains("games")),
        "lobby saw traffic of #games: {seen:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_lists_rooms_with_their_counts_and_empty_rooms_close() {
    let server = start_server("").await;
    let mut a = TcpClient::with_nick(server.tcp, "a").await;
    let mut b = TcpClient::with_nick(server.tcp, "b").await;
    let mut c = TcpClient::with_nick(server.tcp, "c").await;
    b.send("/join x").await;
    b.expect("* you are in #x with 0 others").await;
    c.send("/join y").await;
    c.expect("* you are in #y with 0 others").await;
    a.send("/rooms").await;
    a.expect("* 3 rooms:").await;
    let mut listed = vec![a.recv().await, a.recv().await, a.recv().await];
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "*   #lobby (1 member) (you are here)",
            "*   #x (1 member)",
            "*   #y (1 member)"
        ]
    );
    // #y empties: it closes, the lobby never does.
    c.send("/join lobby").await;
    c.expect("* you are in #lobby with 1 other").await;
    a.send("/rooms").await;
    a.expect("* 2 rooms:").await;
    let mut listed = vec![a.recv().await, a.recv().await];
    listed.sort();
    assert_eq!(
        listed,
        vec!["*   #lobby (2 members) (you are here)", "*   #x (1 member)"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_closed_room_keeps_its_history_for_when_it_comes_back() {
    let server = start_server("").await;
    let mut a = TcpClient::with_nick(server.tcp, "a").await;
    a.send("/join tmp").await;
    a.expect("* you are in #tmp with 0 others").await;
    a.send("remember me").await;
    a.send("/join lobby").await;
    a.expect("* you are in #lobby with 0 others").await;
    let mut b = TcpClient::with_nick(server.tcp, "b").await;
    b.send("/join #TMP").await;
    b.expect("* you are in #TMP with 0 others").await;
    let header = b.recv().await;
    assert!(
        header.starts_with("* last 1 message in #TMP (ids 1-1, epoch "),
        "{header}"
    );
    let line = b.recv().await;
    assert!(
        line.starts_with('[') && line.ends_with("] <a> remember me"),
        "{line}"
    );
    assert_eq!(b.recv().await, "* end of history");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_room_names_are_refused_and_the_member_stays() {
    let server = start_server("").await;
    let mut a = TcpClient::with_nick(server.tcp, "a").await;
    let mut b = TcpClient::with_nick(server.tcp, "b").await;
    a.expect_renamed("b").await;
    a.send("/join no spaces").await;
    assert_eq!(
        a.recv().await,
        "! room names may only contain letters, digits, '-', '_' and '.'"
    );
    a.send(&format!("/join {}", "r".repeat(33))).await;
    assert_eq!(a.recv().await, "! room names are 1 to 32 characters");
    a.send("/join #").await;
    assert_eq!(a.recv().await, "! room names are 1 to 32 characters");
    a.send("/join").await;
    assert_eq!(a.recv().await, "! usage: /join ROOM");
    a.send("still in the lobby").await;
    b.expect("<a> still in the lobby").await;
    server.shutdown().await;
}

#[tokio::test]
async fn past_max_rooms_a_new_room_is_refused() {
    let server = start_server("--max-rooms 2").await;
    let mut a = TcpClient::with_nick(server.tcp, "a").await;
    let mut b = TcpClient::with_nick(server.tcp, "b").await;
    a.send("/join one").await;
    a.expect("* you are in #one with 0 others").await;
    b.send("/join two").await;
    b.expect("! too many rooms").await;
    // An existing room is still open to join.
    b.send("/join one").await;
    b.expect("* you are in #one with 1 other").await;
    server.shutdown().await;
}

/// Numbers of `<from> PREFIX N` lines in `lines`, in order.
fn numbered(lines: &[String], from: &str, prefix: &str) -> Vec<u32> {
    let head = format!("<{from}> {prefix} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&head).and_then(|n| n.parse().ok()))
        .collect()
}

#[tokio::test]
async fn a_move_under_traffic_loses_and_repeats_nothing() {
    const LINES: u32 = 400;
    // Under the per-member reply queue, which a burst of private lines fills before the writer runs.
    const PRIVATE: u32 = 60;
    let server = start_server("--rate off").await;
    let mut talker = TcpClient::with_nick(server.tcp, "talker").await;
    let mut whisperer = TcpClient::with_nick(server.tcp, "whisperer").await;
    let mut mover = TcpClient::with_nick(server.tcp, "mover").await;
    whisperer.send("/join quiet").await;
    whisperer.expect("* you are in #quiet with 0 others").await;

    // The talker fills the lobby and the whisperer sends private lines while the mover leaves.
    let talk = tokio::spawn(async move {
        for i in 0..LINES {
            talker.send(&format!("lobby {i}")).await;
        }
        talker
    });
    let whisper = tokio::spawn(async move {
        for i in 0..PRIVATE {
            whisperer.send(&format!("/msg mover p {i}")).await;
        }
        whisperer
    });
    let early = mover.expect("<talker> lobby 20").await;
    mover.send("/join quiet").await;
    let before = mover.expect("* you are in #quiet with 1 other").await;
    let talker = talk.await.expect("talker");
    let mut whisperer = whisper.await.expect("whisperer");
    whisperer.send("/msg mover done").await;
    let after = mover.expect("[private] <whisperer> done").await;

    // Lobby lines: every one from 21 up to the move, then none.
    let lobby = numbered(&before, "talker", "lobby");
    let expected: Vec<u32> = (21..21 + lobby.len() as u32).collect();
    assert_eq!(lobby, expected, "lobby lines before the move");
    assert!(
        numbered(&after, "talker", "lobby").is_empty(),
        "lobby after the move"
    );
    // Private lines: all of them, once each, in order, across the move.
    let mut private = early;
    private.extend(before);
    private.extend(after);
    let private: Vec<u32> = private
        .iter()
        .filter_map(|l| l.strip_prefix("[private] <whisperer> p "))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(private, (0..PRIVATE).collect::<Vec<u32>>());
    drop(talker);
    server.shutdown().await;
}

#[tokio::test]
async fn a_udp_move_under_traffic_loses_and_repeats_nothing() {
    const LINES: u32 = 100;
    let server = start_server("--rate off").await;
    let mut talker = TcpClient::with_nick(server.tcp, "talker").await;
    let mover = udp_with_nick(server.udp, "mover").await;
    let (moved, has_moved) = tokio::sync::oneshot::channel::<()>();
    let talk = tokio::spawn(async move {
        for i in 0..LINES {
            talker.send(&format!("lobby {i}")).await;
        }
        // The second half is said once the mover is gone: none of it may reach it.
        let _ = has_moved.await;
        for i in LINES..2 * LINES {
            talker.send(&format!("lobby {i}")).await;
        }
        talker.send("/msg mover done").await;
        talker
    });
    mover.expect("<talker> lobby 10").await;
    mover.send("/join elsewhere").await;
    let mut seen = mover.expect("* you are in #elsewhere with 0 others").await;
    let _ = moved.send(());
    // Datagrams of the old room may still trail the notice; the seam is the move, not the notice.
    seen.extend(mover.expect("[private] <talker> done").await);
    let lobby = numbered(&seen, "talker", "lobby");
    let expected: Vec<u32> = (11..11 + lobby.len() as u32).collect();
    assert_eq!(lobby, expected, "lobby lines, each once, up to the move");
    assert!(
        lobby.iter().all(|&n| n < LINES),
        "a lobby line said after the move arrived"
    );
    drop(talk.await.expect("talker"));
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_may_open_only_its_share_of_the_rooms() {
    // A hundredth of 300 rooms: 3 per address.
    let server = start_server("--max-rooms 300").await;
    let mut openers = Vec::new();
    for n in 0..3 {
        let mut member = TcpClient::connect(server.tcp).await;
        member.send(&format!("/join room{n}")).await;
        member
            .expect(&format!("* you are in #room{n} with 0 others"))
            .await;
        openers.push(member);
    }
    let mut fourth = TcpClient::connect(server.tcp).await;
    fourth.send("/join room3").await;
    fourth
        .expect("! your address has opened too many rooms; join one that is open")
        .await;
    // Rooms already open are still open to it, and another address has its own share.
    fourth.send("/join room0").await;
    fourth.expect("* you are in #room0 with 1 other").await;
    let mut elsewhere = TcpClient::connect_from(server.tcp, common::other_address()).await;
    elsewhere.send("/join room3").await;
    elsewhere.expect("* you are in #room3 with 0 others").await;
    // A room closing gives its opener's share back.
    let mut first = openers.remove(1);
    first.send("/join lobby").await;
    first
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    first.send("/join room4").await;
    first.expect("* you are in #room4 with 0 others").await;
    server.shutdown().await;
}
