//! Room modes (`+t +n +m +s +i +k +l`, `+v`) and INVITE, set from IRC (`MODE`) and from the line
//! protocol (`/mode`, `/invite`, `/join ROOM KEY`), holding for both, over real sockets.

mod common;

use std::net::SocketAddr;

use common::{register, start_server, temp_db, TcpClient};

/// Registers an IRC client as `nick` and waits for the end of its welcome (MOTD).
async fn irc(addr: SocketAddr, nick: &str) -> TcpClient {
    let mut client = TcpClient::connect_raw(addr).await;
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick}")).await;
    client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    client
}

/// Sends `JOIN` and waits for the end of the channel's NAMES.
async fn join(client: &mut TcpClient, line: &str, channel: &str) {
    client.send(line).await;
    client
        .expect_match(|l| l.contains(" 366 ") && l.contains(channel))
        .await;
}

/// A line member called `name` in `room`.
async fn line_member(addr: SocketAddr, name: &str, room: &str) -> TcpClient {
    let mut client = TcpClient::with_nick(addr, name).await;
    client.send(&format!("/join {room}")).await;
    client
        .expect_match(|l| l.starts_with(&format!("* you are in {room}")))
        .await;
    client
}

#[tokio::test]
async fn key_limit_and_invite_only_keep_out_irc_and_line_members_alike() {
    let server = start_server("--irc 0 --name chatd").await;
    let irc_addr = server.irc.expect("irc");
    let mut alice = irc(irc_addr, "alice").await;
    join(&mut alice, "JOIN #den", "#den").await;
    alice.send("MODE #den +k beer").await;
    alice.expect(":alice!chat@chatd MODE #den +k beer").await;

    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect("! #den needs a key (+k): /join #den KEY").await;
    bob.send("/join #den stout").await;
    bob.expect("! #den needs a key (+k): /join #den KEY").await;
    bob.send("/join #den beer").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;

    let mut carol = irc(irc_addr, "carol").await;
    carol.send("JOIN #den").await;
    carol
        .expect(":chatd 475 carol #den :Cannot join channel (+k)")
        .await;
    join(&mut carol, "JOIN #den beer", "#den").await;

    // alice, bob and carol: the room is full at 3.
    alice.send("MODE #den +l 3").await;
    alice.expect(":alice!chat@chatd MODE #den +l 3").await;
    bob.expect("* alice set +l 3 on #den").await;
    let mut dave = irc(irc_addr, "dave").await;
    dave.send("JOIN #den beer").await;
    dave.expect(":chatd 471 dave #den :Cannot join channel (+l)")
        .await;
    let mut erin = TcpClient::with_nick(server.tcp, "erin").await;
    erin.send("/join #den beer").await;
    erin.expect("! #den is full (+l)").await;

    alice.send("MODE #den -lk+i *").await;
    alice.expect(":alice!chat@chatd MODE #den -lk+i *").await;
    dave.send("JOIN #den").await;
    dave.expect(":chatd 473 dave #den :Cannot join channel (+i)")
        .await;
    erin.send("/join #den").await;
    erin.expect("! #den is invite only (+i); ask an operator for an invitation")
        .await;

    // An IRC invitation lets an IRC client in; a line one lets a line member in.
    alice.send("INVITE dave #den").await;
    alice.expect(":chatd 341 alice dave #den").await;
    dave.expect(":alice!chat@chatd INVITE dave #den").await;
    join(&mut dave, "JOIN #den", "#den").await;
    bob.send("/invite erin").await;
    bob.expect("! you are not an operator of #den").await;
    alice.send("MODE #den +o bob").await;
    alice.expect(":alice!chat@chatd MODE #den +o bob").await;
    bob.send("/invite erin").await;
    bob.expect("* invited erin to #den").await;
    erin.expect("* bob invites you to #den").await;
    erin.send("/join #den").await;
    erin.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    // Used up: out and back in is refused again.
    erin.send("/join #lobby").await;
    erin.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    erin.send("/join #den").await;
    erin.expect("! #den is invite only (+i); ask an operator for an invitation")
        .await;
    alice.send("INVITE dave #den").await;
    alice
        .expect(":chatd 443 alice dave #den :is already on channel")
        .await;
    alice.send("INVITE nobody #den").await;
    alice
        .expect(":chatd 401 alice nobody :No such nick/channel")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn moderated_rooms_hear_only_operators_and_voices_and_n_keeps_outsiders_out() {
    let server = start_server("--irc 0 --name chatd").await;
    let irc_addr = server.irc.expect("irc");
    let mut alice = irc(irc_addr, "alice").await;
    join(&mut alice, "JOIN #den", "#den").await;
    let mut bob = line_member(server.tcp, "bob", "#den").await;
    let mut carol = irc(irc_addr, "carol").await;
    join(&mut carol, "JOIN #den", "#den").await;

    bob.send("/mode +m").await;
    bob.expect("! you are not an operator of #den").await;
    alice.send("MODE #den +m").await;
    alice.expect(":alice!chat@chatd MODE #den +m").await;
    bob.expect("* alice set +m on #den").await;
    bob.send("hush").await;
    bob.expect("! #den is moderated (+m): only operators and voiced members speak")
        .await;
    carol.send("PRIVMSG #den :hush").await;
    carol
        .expect(":chatd 404 carol #den :Cannot send to channel (+m)")
        .await;
    alice.send("MODE #den +v bob").await;
    alice.expect(":alice!chat@chatd MODE #den +v bob").await;
    carol.send("NAMES #den").await;
    carol
        .expect(":chatd 353 carol = #den :@alice +bob carol")
        .await;
    bob.send("now I may").await;
    alice
        .expect(":bob!chat@chatd PRIVMSG #den :now I may")
        .await;

    // +n (the default): nothing from outside; -n lets an outsider's line in.
    let mut eve = irc(irc_addr, "eve").await;
    eve.send("PRIVMSG #den :from outside").await;
    eve.expect(":chatd 404 eve #den :You're not on that channel")
        .await;
    alice.send("MODE #den -mn").await;
    alice.expect(":alice!chat@chatd MODE #den -mn").await;
    eve.send("PRIVMSG #den :from outside").await;
    alice
        .expect(":eve!chat@chatd PRIVMSG #den :from outside")
        .await;
    bob.expect("<eve> from outside").await;

    // -t: anyone in the room sets the topic.
    carol.send("TOPIC #den :mine").await;
    carol
        .expect(":chatd 482 carol #den :You're not channel operator")
        .await;
    alice.send("MODE #den -t").await;
    alice.expect(":alice!chat@chatd MODE #den -t").await;
    bob.send("/topic from a line member").await;
    alice
        .expect(":bob!chat@chatd TOPIC #den :from a line member")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn modes_are_shown_validated_and_secret_rooms_are_not_listed() {
    let server = start_server("--irc 0 --name chatd").await;
    let irc_addr = server.irc.expect("irc");
    let mut alice = irc(irc_addr, "alice").await;
    join(&mut alice, "JOIN #den", "#den").await;
    alice.send("MODE #den").await;
    alice.expect(":chatd 324 alice #den +nt").await;
    let created = alice.recv().await;
    assert!(created.starts_with(":chatd 329 alice #den "), "{created}");
    alice.send("MODE #den +z").await;
    alice
        .expect(":chatd 472 alice z :is unknown mode char to me")
        .await;
    alice.send("MODE #den +l 0").await;
    let refused = alice.recv().await;
    assert!(
        refused.starts_with(":chatd 696 alice #den l 0 :"),
        "{refused}"
    );
    alice.send("MODE #den +k :a b").await;
    let refused = alice.recv().await;
    assert!(
        refused.starts_with(":chatd 696 alice #den k * :"),
        "{refused}"
    );
    let mut carol = irc(irc_addr, "carol").await;
    carol.send("MODE #den +m").await;
    carol
        .expect(":chatd 442 carol #den :You're not on that channel")
        .await;
    join(&mut carol, "JOIN #den", "#den").await;
    carol.send("MODE #den +m").await;
    carol
        .expect(":chatd 482 carol #den :You're not channel operator")
        .await;

    alice.send("MODE #den +sk beer").await;
    alice.expect(":alice!chat@chatd MODE #den +sk beer").await;
    let mut outsider = irc(irc_addr, "outsider").await;
    outsider.send("LIST").await;
    let listed = outsider.expect(":chatd 323 outsider :End of /LIST").await;
    assert!(!listed.iter().any(|l| l.contains("#den")), "{listed:?}");
    outsider.send("MODE #den").await;
    outsider.expect(":chatd 324 outsider #den +knst *").await;
    carol.send("LIST").await;
    let listed = carol.expect(":chatd 323 carol :End of /LIST").await;
    assert!(listed.iter().any(|l| l.contains(" #den ")), "{listed:?}");
    let mut line = TcpClient::with_nick(server.tcp, "liner").await;
    line.send("/rooms").await;
    line.send("/mode").await;
    let rooms = line.expect("* modes of #lobby: +nt").await;
    assert!(!rooms.iter().any(|l| l.contains("#den")), "{rooms:?}");
    line.send("/join #den beer").await;
    line.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    line.send("/mode").await;
    line.expect("* modes of #den: +knst *").await;
    server.shutdown().await;
}

#[tokio::test]
async fn modes_set_by_a_line_member_survive_a_restart_with_a_database() {
    let db = temp_db("modes");
    let flags = format!(
        "--irc 0 --name chatd --argon2-memory 64 --argon2-passes 1 --db {}",
        db.display()
    );
    let server = start_server(&flags).await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    alice.send("/join #den").await;
    alice
        .expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    alice.send("/mode +mk-t beer").await;
    alice.expect("* alice set +mk-t beer on #den").await;
    alice.send("/mode +q").await;
    alice.expect("! unknown mode q").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut bob = irc(server.irc.expect("irc"), "bob").await;
    bob.send("JOIN #den").await;
    bob.expect(":chatd 475 bob #den :Cannot join channel (+k)")
        .await;
    join(&mut bob, "JOIN #den beer", "#den").await;
    bob.send("MODE #den").await;
    bob.expect(":chatd 324 bob #den +kmn beer").await;
    server.shutdown().await;
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_ban_on_a_name_nobody_holds_keeps_out_whoever_takes_it_on_either_face() {
    let server = start_server("--irc 0 --name chatd").await;
    let irc_addr = server.irc.expect("irc");
    let mut op = irc(irc_addr, "chanop").await;
    join(&mut op, "JOIN #den", "#den").await;
    let mut ann = line_member(server.tcp, "ann", "#den").await;

    op.send("MODE #den +b bar!*@*").await;
    op.expect(":chanop!chat@chatd MODE #den +b bar!*@*").await;
    ann.expect("* the name bar is banned from #den for good")
        .await;
    op.send("MODE #den +b").await;
    op.expect_match(|l| l.starts_with(":chatd 367 chanop #den bar!*@* chanop "))
        .await;
    op.expect(":chatd 368 chanop #den :End of channel ban list")
        .await;

    // Any case of the name, from IRC or the line protocol.
    let mut bar = irc(irc_addr, "Bar").await;
    bar.send("JOIN #den").await;
    bar.expect(":chatd 474 Bar #den :Cannot join channel (+b)")
        .await;
    // Another name from the same address is not kept out.
    bar.send("NICK baz").await;
    bar.expect(":Bar!chat@chatd NICK baz").await;
    join(&mut bar, "JOIN #den", "#den").await;
    let mut line_bar = TcpClient::with_nick(server.tcp, "BAR").await;
    line_bar.send("/join #den").await;
    line_bar.expect("! you are banned from #den").await;

    op.send("MODE #den -b bar!*@*").await;
    op.expect(":chanop!chat@chatd MODE #den -b bar!*@*").await;
    ann.expect("* name bar is no longer banned from #den").await;
    line_bar.send("/join #den").await;
    line_bar
        .expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_topic_is_told_with_who_set_it_and_when_and_kept_with_a_database() {
    let db = temp_db("topic-who");
    let flags = format!("--irc 0 --name chatd --db {}", db.display());
    let server = start_server(&flags).await;
    let mut alice = line_member(server.tcp, "alice", "#den").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    alice.send("/topic beer o'clock").await;
    alice
        .expect("* alice set the topic of #den: beer o'clock")
        .await;

    let mut bob = irc(server.irc.expect("irc"), "bob").await;
    bob.send("JOIN #den").await;
    bob.expect(":chatd 332 bob #den :beer o'clock").await;
    let who_time = bob.recv().await;
    let set_at: u64 = who_time
        .strip_prefix(":chatd 333 bob #den alice ")
        .unwrap_or_else(|| panic!("333 after 332, got {who_time:?}"))
        .parse()
        .expect("a time in seconds");
    assert!((before..before + 120).contains(&set_at), "{set_at}");
    bob.expect_match(|l| l.contains(" 366 ")).await;
    server.shutdown().await;

    // The setter and the time outlive a restart, like the topic.
    let server = start_server(&flags).await;
    let mut carol = irc(server.irc.expect("irc"), "carol").await;
    join(&mut carol, "JOIN #den", "#den").await;
    carol.send("TOPIC #den").await;
    carol.expect(":chatd 332 carol #den :beer o'clock").await;
    carol
        .expect(&format!(":chatd 333 carol #den alice {set_at}"))
        .await;
    server.shutdown().await;
    let _ = std::fs::remove_file(&db);
}
