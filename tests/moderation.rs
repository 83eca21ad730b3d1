//! Room operators over real sockets: the creator is operator, `/op`, `/topic` (shown to joiners),
//! kick, ban (by name and by address, with expiry), mute and slow mode over TCP and UDP, everyone
//! else refused, and operators, topics and bans kept across a restart in SQLite.

mod common;

use std::time::Duration;

use common::{other_address, register, start_server, temp_db, TcpClient, UdpClient, TIMEOUT};

const CHEAP: &str = "--history 0 --argon2-memory 64 --argon2-passes 1";

async fn join(client: &mut TcpClient, room: &str) {
    client.send(&format!("/join {room}")).await;
    client
        .expect_match(|l| l.starts_with(&format!("* you are in #{room} with")))
        .await;
}

#[tokio::test]
async fn the_creator_is_operator_and_everyone_else_is_refused_every_operator_command() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    join(&mut alice, "den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    join(&mut bob, "den").await;
    for command in [
        "/topic mine now",
        "/op bob",
        "/deop alice",
        "/kick alice",
        "/ban alice",
        "/ban 10.0.0.0/8 1h",
        "/unban alice",
        "/bans",
        "/mute alice",
        "/unmute alice",
        "/slow 5",
    ] {
        bob.send(command).await;
        assert_eq!(
            bob.recv().await,
            "! you are not an operator of #den",
            "{command}"
        );
    }
    for command in [
        "/kill alice",
        "/gban 10.0.0.0/8 1h",
        "/ungban 10.0.0.0/8",
        "/wall hello",
        "/lockdown on",
    ] {
        bob.send(command).await;
        assert_eq!(
            bob.recv().await,
            "! you are not a server operator",
            "{command}"
        );
    }
    // In the lobby only server operators are operators, the lobby's first member included.
    alice.send("/join lobby").await;
    alice
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    alice.send("/kick bob").await;
    alice.expect("! you are not an operator of #lobby").await;
    alice.send("/topic").await;
    alice.expect("* #lobby has no topic").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_topic_reaches_the_room_and_every_joiner_and_op_shares_the_rights() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    join(&mut alice, "den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    join(&mut bob, "den").await;
    alice.send("/topic  plans for Friday ").await;
    bob.expect("* alice set the topic of #den: plans for Friday")
        .await;
    let mut carol = TcpClient::with_nick(server.tcp, "carol").await;
    carol.send("/join den").await;
    carol.expect("* you are in #den with 2 others").await;
    assert_eq!(carol.recv().await, "* topic of #den: plans for Friday");
    carol.send("/topic").await;
    carol.expect("* topic of #den: plans for Friday").await;

    alice.send("/op bob").await;
    carol
        .expect("* bob is now an operator (while here) of #den (by alice)")
        .await;
    bob.send("/topic new").await;
    carol.expect("* bob set the topic of #den: new").await;
    alice.send("/deop bob").await;
    carol
        .expect("* bob is no longer an operator of #den (by alice)")
        .await;
    bob.send("/topic again").await;
    bob.expect("! you are not an operator of #den").await;
    alice.send("/op nobody").await;
    alice.expect("! no such member: nobody").await;
    server.shutdown().await;
}

#[tokio::test]
async fn kick_moves_a_member_to_the_lobby_on_tcp_and_udp() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    join(&mut alice, "den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    join(&mut bob, "den").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick dan").await;
    udp.expect("* you are now known as dan").await;
    udp.send("/join den").await;
    udp.expect("* you are in #den with 2 others").await;
    alice.expect("* dan joined #den").await;

    alice.send("/kick alice").await;
    alice.expect("! you cannot kick yourself").await;
    alice.send("/kick nobody").await;
    alice.expect("! no such member: nobody").await;
    // What bob was sent before the kick still reaches it.
    alice.send("last words").await;
    alice.send("/kick bob spamming").await;
    bob.expect("<alice> last words").await;
    // The room's notice and bob's own come by different paths, in either order.
    let mut told = [bob.recv().await, bob.recv().await];
    told.sort();
    assert_eq!(
        told,
        [
            "! you were kicked from #den by alice (spamming)",
            "* bob was kicked by alice (spamming)"
        ]
    );
    bob.expect_match(|l| l.starts_with("* you are in #lobby with"))
        .await;
    udp.expect("* bob was kicked by alice (spamming)").await;

    alice.send("/kick dan").await;
    udp.expect("! you were kicked from #den by alice").await;
    udp.expect("* you are in #lobby with 1 other").await;
    alice.expect("* dan was kicked by alice").await;
    // A kicked member may come back (a ban is what keeps it out).
    bob.send("/join den").await;
    bob.expect("* you are in #den with 1 other").await;
    server.shutdown().await;
}

#[tokio::test]
async fn bans_by_account_and_by_address_keep_members_out_until_they_end() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    join(&mut alice, "den").await;
    let mut bob = register(server.tcp, "bob", "pw-bob").await;
    join(&mut bob, "den").await;
    let mut guest = TcpClient::connect_from(server.tcp, other_address()).await;
    guest.send("/nick carol").await;
    guest.expect("* you are now known as carol").await;
    join(&mut guest, "den").await;

    alice.send("/ban bob 5x").await;
    alice
        .expect_match(|l| l.starts_with("! bad duration 5x: "))
        .await;
    alice.send("/ban alice").await;
    alice.expect("! you cannot ban yourself").await;

    alice.send("/ban bob 1h flooding").await;
    alice
        .expect("* bob's account is banned from #den for 1h")
        .await;
    bob.expect("! you are banned from #den by alice (flooding)")
        .await;
    bob.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    bob.send("/join den").await;
    bob.expect("! you are banned from #den").await;

    alice.send("/ban carol 3s").await;
    alice
        .expect("* address 127.0.0.2 (carol, a guest) is banned from #den for 3s")
        .await;
    guest.expect("! you are banned from #den by alice").await;
    guest
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    guest.send("/join den").await;
    guest.expect("! you are banned from #den").await;
    // A new guest from that address is kept out too, and one from elsewhere is not.
    let mut other = TcpClient::connect_from(server.tcp, other_address()).await;
    other.send("/join den").await;
    other.expect("! you are banned from #den").await;

    alice.send("/bans").await;
    alice.expect("* 2 bans in #den:").await;
    let first = alice.recv().await;
    assert!(first.starts_with("*   account bob by alice, "), "{first}");
    assert!(first.ends_with(" left (flooding)"), "{first}");
    let second = alice.recv().await;
    assert!(
        second.starts_with("*   address 127.0.0.2 by alice, "),
        "{second}"
    );

    // The address ban ends by itself. It lasts 3 s so that a stall of a loaded machine cannot
    // end it before the checks above are done.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    guest.send("/join den").await;
    guest.expect("* you are in #den with 1 other").await;
    alice.send("/unban bob").await;
    alice
        .expect("* account bob is no longer banned from #den")
        .await;
    bob.send("/join den").await;
    bob.expect("* you are in #den with 2 others").await;
    alice.send("/unban bob").await;
    alice
        .expect("! no ban on account bob in #den (see /bans)")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn muted_members_are_told_on_tcp_and_udp_and_slow_mode_spares_operators() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    join(&mut alice, "den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    join(&mut bob, "den").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick dan").await;
    udp.expect("* you are now known as dan").await;
    udp.send("/join den").await;
    udp.expect("* you are in #den with 2 others").await;

    alice.send("/mute dan").await;
    udp.expect("! you are muted in #den by alice").await;
    bob.expect("* dan was muted by alice").await;
    udp.send("can anyone hear me").await;
    udp.expect("! you are muted in #den").await;
    alice.send("/mute bob 3s").await;
    bob.expect("! you are muted in #den by alice for 3s").await;
    bob.send("me neither").await;
    bob.expect("! you are muted in #den").await;
    // Nobody got the refused lines: the next line anyone sees is alice's.
    alice.send("marker").await;
    let skipped = udp.expect("<alice> marker").await;
    assert!(
        !skipped.iter().any(|l| l.contains("me neither")),
        "{skipped:?}"
    );
    let skipped = bob.expect("<alice> marker").await;
    assert!(
        !skipped.iter().any(|l| l.contains("hear me")),
        "{skipped:?}"
    );
    alice.send("/unmute dan").await;
    udp.expect("* you may speak in #den again").await;
    udp.send("back").await;
    bob.expect("<dan> back").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    bob.send("free again").await;
    alice.expect("<bob> free again").await;

    alice.send("/slow 60").await;
    bob.expect("* slow mode in #den: one line per 60s per member (operators exempt), set by alice")
        .await;
    bob.send("one").await;
    alice.expect("<bob> one").await;
    bob.send("two").await;
    bob.expect("! slow mode in #den: wait 60s").await;
    udp.expect("<bob> one").await;
    udp.send("first").await;
    alice.expect("<dan> first").await;
    udp.send("second").await;
    let slowed = udp.recv().await;
    assert!(slowed.starts_with("! slow mode in #den: wait "), "{slowed}");
    alice.send("ops are exempt 1").await;
    alice.send("ops are exempt 2").await;
    bob.expect("<alice> ops are exempt 1").await;
    bob.expect("<alice> ops are exempt 2").await;
    alice.send("/slow 0").await;
    bob.expect("* slow mode in #den is off (by alice)").await;
    bob.send("three").await;
    alice.expect("<bob> three").await;
    server.shutdown().await;
}

#[tokio::test]
async fn operators_topics_bans_and_slow_mode_survive_a_restart_with_a_database() {
    let db = temp_db("restart");
    let flags = format!("{CHEAP} --db {}", db.display());
    let server = start_server(&flags).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    join(&mut alice, "den").await;
    let mut bob = register(server.tcp, "bob", "pw-bob").await;
    alice.send("/topic kept across restarts").await;
    alice
        .expect("* alice set the topic of #den: kept across restarts")
        .await;
    alice.send("/ban bob").await;
    alice
        .expect("* bob's account is banned from #den for good")
        .await;
    alice.send("/slow 60").await;
    alice
        .expect_match(|l| l.starts_with("* slow mode in #den: one line per 60s"))
        .await;
    bob.send("/quit").await;
    bob.expect_closed().await;
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut alice = TcpClient::connect(server.tcp).await;
    alice.send("/login alice pw-alice").await;
    alice.expect("* you are logged in as alice").await;
    let mut guest = TcpClient::with_nick(server.tcp, "guest").await;
    // The guest reopens the room but does not operate it: alice, its stored operator, does.
    guest.send("/join den").await;
    guest.expect("* you are in #den with 0 others").await;
    assert_eq!(guest.recv().await, "* topic of #den: kept across restarts");
    guest.send("/topic mine now").await;
    guest.expect("! you are not an operator of #den").await;
    alice.send("/join den").await;
    alice.expect("* you are in #den with 1 other").await;
    alice.send("/bans").await;
    alice.expect("* 1 ban in #den:").await;
    let mut bob = TcpClient::connect(server.tcp).await;
    bob.send("/login bob pw-bob").await;
    bob.expect("* you are logged in as bob").await;
    bob.send("/join den").await;
    bob.expect("! you are banned from #den").await;
    // Slow mode is the room's lasting state too: a member who is no operator is slowed.
    let mut cy = TcpClient::with_nick(server.tcp, "cy").await;
    cy.send("/join den").await;
    cy.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    cy.send("one").await;
    cy.send("two").await;
    cy.expect_match(|l| l.starts_with("! slow mode in #den: wait "))
        .await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    let _ = TIMEOUT;
}

#[tokio::test]
async fn a_ban_on_a_udp_guest_bans_its_address_and_moves_it_out() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    join(&mut alice, "den").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick dan").await;
    udp.expect("* you are now known as dan").await;
    udp.send("/join den").await;
    udp.expect("* you are in #den with 1 other").await;
    alice.send("/ban dan 3s").await;
    alice
        .expect("* address 127.0.0.1 (dan, a guest) is banned from #den for 3s")
        .await;
    udp.expect("! you are banned from #den by alice").await;
    udp.expect("* you are in #lobby with 0 others").await;
    udp.send("/join den").await;
    udp.expect("! you are banned from #den").await;
    // The operator is spared by the ban on its own address, and the ban ends by itself.
    alice.send("hello").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    udp.send("/join den").await;
    udp.expect("* you are in #den with 1 other").await;
    server.shutdown().await;
}

#[tokio::test]
async fn giving_up_an_account_gives_up_its_operator_rights() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    join(&mut alice, "den").await;
    alice.send("/topic mine").await;
    alice.expect("* alice set the topic of #den: mine").await;
    alice.send("/unregister pw-alice").await;
    alice.expect("* alice is no longer registered").await;
    alice.send("/topic still mine?").await;
    alice.expect("! you are not an operator of #den").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_guest_reopening_a_closed_room_cannot_take_it_from_its_registered_operator() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    join(&mut alice, "den").await;
    alice.send("/topic alice's den").await;
    alice
        .expect("* alice set the topic of #den: alice's den")
        .await;
    // The room closes with its last member.
    alice.send("/join lobby").await;
    alice
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    let mut mallory = TcpClient::with_nick(server.tcp, "mallory").await;
    mallory.send("/join den").await;
    mallory.expect("* you are in #den with 0 others").await;
    mallory.send("/ban alice").await;
    mallory.expect("! you are not an operator of #den").await;
    mallory.send("/topic taken over").await;
    mallory.expect("! you are not an operator of #den").await;
    // The owner comes back and still operates it.
    alice.send("/join den").await;
    alice.expect("* you are in #den with 1 other").await;
    alice.send("/topic still alice's").await;
    alice
        .expect("* alice set the topic of #den: still alice's")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn operator_rights_in_closed_rooms_do_not_pass_to_whoever_registers_the_name_next() {
    for db in [None, Some(temp_db("unregister"))] {
        let flags = match &db {
            Some(db) => format!("{CHEAP} --db {}", db.display()),
            None => CHEAP.to_string(),
        };
        let server = start_server(&flags).await;
        let mut alice = register(server.tcp, "alice", "pw-alice").await;
        join(&mut alice, "den").await;
        // bob operates #den too, so the room is not left without a stored operator.
        let mut bob = register(server.tcp, "bob", "pw-bob").await;
        join(&mut bob, "den").await;
        alice.send("/op bob").await;
        bob.expect_match(|l| l.contains("operator")).await;
        bob.send("/join lobby").await;
        bob.expect_match(|l| l.starts_with("* you are in #lobby"))
            .await;
        // #den closes with its operators gone; then alice's account is given up.
        alice.send("/join lobby").await;
        alice
            .expect_match(|l| l.starts_with("* you are in #lobby"))
            .await;
        alice.send("/unregister pw-alice").await;
        alice.expect("* alice is no longer registered").await;
        alice.send("/quit").await;
        alice.expect_closed().await;
        // Someone else registers the free name and reopens the room.
        let mut heir = register(server.tcp, "alice", "other-pw").await;
        heir.send("/join den").await;
        heir.expect("* you are in #den with 0 others").await;
        heir.send("/topic inherited?").await;
        heir.expect("! you are not an operator of #den").await;
        server.shutdown().await;
        if let Some(db) = db {
            let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
        }
    }
}

#[tokio::test]
async fn slow_mode_follows_a_member_out_of_the_room_and_back_and_an_account_across_reconnects() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    join(&mut alice, "den").await;
    let mut guest = TcpClient::with_nick(server.tcp, "guest").await;
    join(&mut guest, "den").await;
    let mut carol = register(server.tcp, "carol", "pw-carol").await;
    join(&mut carol, "den").await;
    alice.send("/slow 60").await;
    carol
        .expect_match(|l| l.starts_with("* slow mode in #den: one line per 60s"))
        .await;
    guest.send("one").await;
    alice.expect("<guest> one").await;
    // Out and back in: still slowed.
    guest.send("/join lobby").await;
    guest
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    join(&mut guest, "den").await;
    guest.send("two").await;
    guest
        .expect_match(|l| l.starts_with("! slow mode in #den: wait "))
        .await;
    // An account that speaks, leaves and comes back in a new session: still slowed.
    carol.send("hello").await;
    alice.expect("<carol> hello").await;
    carol.send("/quit").await;
    carol.expect_closed().await;
    let mut carol = TcpClient::connect(server.tcp).await;
    carol.send("/login carol pw-carol").await;
    carol.expect("* you are logged in as carol").await;
    join(&mut carol, "den").await;
    carol.send("hello again").await;
    carol
        .expect_match(|l| l.starts_with("! slow mode in #den: wait "))
        .await;
    // Nobody saw the refused lines.
    alice.send("marker").await;
    let skipped = guest.expect("<alice> marker").await;
    assert!(
        !skipped
            .iter()
            .any(|l| l.contains("two") || l.contains("again")),
        "{skipped:?}"
    );
    server.shutdown().await;
}

/// Hardening item 4: room state is bounded. Before, a room took any number of bans (1000 `/ban`s
/// from one guest slowed delivery in every room), and past a fixed 1000 the oldest was silently
/// lifted; now a ban past `--max-bans-per-room` is refused with a reply and nothing is lifted.
#[tokio::test]
async fn a_ban_past_max_bans_per_room_is_refused_until_one_is_lifted() {
    let server = start_server(&format!("{CHEAP} --max-bans-per-room 3")).await;
    let mut op = TcpClient::connect(server.tcp).await;
    join(&mut op, "den").await;
    for last in 1..=3 {
        op.send(&format!("/ban 10.0.0.{last}")).await;
        op.expect_match(|l| l.starts_with(&format!("* address 10.0.0.{last} is banned from #den")))
            .await;
    }
    op.send("/ban 10.0.0.4").await;
    op.expect("! #den holds 3 bans, the most it may; lift one (/unban) before adding another")
        .await;
    // A ban on an address already banned replaces it, and still fits.
    op.send("/ban 10.0.0.2 1h").await;
    op.expect("* address 10.0.0.2 is banned from #den for 1h")
        .await;
    op.send("/bans").await;
    op.expect("* 3 bans in #den:").await;
    op.send("/unban 10.0.0.1").await;
    op.expect_match(|l| l.starts_with("* ") && l.contains("no longer banned"))
        .await;
    op.send("/ban 10.0.0.4").await;
    op.expect_match(|l| l.starts_with("* address 10.0.0.4 is banned from #den"))
        .await;
    server.shutdown().await;
}
