//! The IRC face's history, labels and tags (IRCv3 draft/chathistory, batch, labeled-response,
//! echo-message, message-tags and msgid, away-notify, account-notify), over real sockets: a line
//! member's lines replayed to an IRC client with their own times, each command's answer carrying
//! its label, and client-only tags, AWAY and ACCOUNT reaching only the clients that asked.

mod common;

use std::net::SocketAddr;

use common::irc::join;
use common::{start_server, TcpClient};

/// Registers an IRC client as `nick` with `caps` on, and waits for the end of its welcome.
async fn irc_with(addr: SocketAddr, nick: &str, caps: &str) -> (TcpClient, Vec<String>) {
    let mut client = TcpClient::connect_raw(addr).await;
    client.send("CAP LS 302").await;
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick}")).await;
    client.send(&format!("CAP REQ :{caps}")).await;
    client
        .expect_match(|l| l.contains(" CAP ") && l.contains(" ACK "))
        .await;
    client.send("CAP END").await;
    let welcome = client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    (client, welcome)
}

/// Reads one whole batch (the lines from its `BATCH +` to its `BATCH -`), skipping what came
/// before it.
async fn batch(client: &mut TcpClient) -> Vec<String> {
    let mut open = client.recv().await;
    for _ in 0..1000 {
        if open.contains(" BATCH +") {
            break;
        }
        open = client.recv().await;
    }
    let id = open
        .split(" BATCH +")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no batch opened: {open}"))
        .to_string();
    let mut inside = vec![open];
    loop {
        let line = client.recv().await;
        let end = line.ends_with(&format!("BATCH -{id}"));
        inside.push(line);
        if end || inside.len() > 1000 {
            return inside;
        }
    }
}

/// The `time` tag of a line.
fn time_of(line: &str) -> &str {
    let tags = line.strip_prefix('@').and_then(|l| l.split(' ').next());
    tags.and_then(|t| t.split(';').find_map(|t| t.strip_prefix("time=")))
        .unwrap_or_else(|| panic!("no time tag in {line}"))
}

/// A server with line member bob in #den, and IRC client alice (server-time, batch and
/// chathistory on) with her welcome.
async fn bob_in_den_and_alice_on_irc() -> (common::TestServer, TcpClient, TcpClient, Vec<String>) {
    let server = start_server("--irc 0 --name chatd").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    let caps = "server-time batch draft/chathistory";
    let (alice, welcome) = irc_with(server.irc.expect("irc"), "alice", caps).await;
    (server, bob, alice, welcome)
}

#[tokio::test]
async fn chathistory_replays_a_line_members_lines_with_their_own_times() {
    let (server, mut bob, mut alice, welcome) = bob_in_den_and_alice_on_irc().await;
    assert!(
        welcome
            .iter()
            .any(|l| l.contains(" 005 ") && l.contains("CHATHISTORY=")),
        "{welcome:?}"
    );
    join(&mut alice, "#den").await;
    for text in ["one", "two", "three"] {
        bob.send(text).await;
        alice
            .expect_match(|l| l.ends_with(&format!("PRIVMSG #den {text}")))
            .await;
        // The next line a little later, so each has a time of its own to ask about.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    alice.send("CHATHISTORY LATEST #den * 10").await;
    let got = batch(&mut alice).await;
    assert!(got[0].ends_with(" chathistory #den"), "{got:?}");
    let texts: Vec<&str> = got[1..got.len() - 1]
        .iter()
        .map(|l| l.split(" PRIVMSG #den ").nth(1).unwrap_or(l))
        .collect();
    assert_eq!(texts, ["one", "two", "three"], "{got:?}");
    assert!(got[1].contains(":bob!chat@chatd PRIVMSG"), "{got:?}");
    let third = time_of(&got[3]).to_string();
    let first = time_of(&got[1]).to_string();
    assert!(first < third, "{got:?}");

    alice
        .send(&format!("CHATHISTORY BEFORE #den timestamp={third} 10"))
        .await;
    let got = batch(&mut alice).await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[1].ends_with(" one") && got[2].ends_with(" two"),
        "{got:?}"
    );
    // Replayed with the times they were said, not the time of the replay.
    assert_eq!(time_of(&got[1]), first);

    alice
        .send(&format!("CHATHISTORY AFTER #den timestamp={first} 1"))
        .await;
    let got = batch(&mut alice).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[1].ends_with(" two"), "{got:?}");

    // No private conversation with bob: his history is empty. A channel not joined is refused.
    alice.send("CHATHISTORY LATEST bob * 10").await;
    assert_eq!(batch(&mut alice).await.len(), 2);
    alice.send("CHATHISTORY LATEST #elsewhere * 10").await;
    alice
        .expect_match(|l| l.contains("FAIL CHATHISTORY INVALID_TARGET"))
        .await;
    alice.send("CHATHISTORY LATEST #den * many").await;
    alice
        .expect_match(|l| l.contains("FAIL CHATHISTORY INVALID_PARAMS"))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_commands_answer_carries_its_label() {
    let server = start_server("--irc 0 --name chatd").await;
    let addr = server.irc.expect("irc");
    let caps = "labeled-response batch echo-message";
    let (mut alice, _) = irc_with(addr, "alice", caps).await;
    let (mut carol, _) = irc_with(addr, "carol", "echo-message").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    join(&mut alice, "#den").await;
    join(&mut carol, "#den").await;
    alice
        .expect_match(|l| l.contains("JOIN") && l.contains("carol"))
        .await;

    // One line: the tag on it.
    alice.send("@label=p1 PING x").await;
    alice.expect("@label=p1 :chatd PONG chatd x").await;
    // None: ACK.
    alice.send("@label=p2 PONG x").await;
    alice.expect("@label=p2 :chatd ACK").await;
    // Several: a labeled-response batch.
    alice.send("@label=n1 NAMES #den").await;
    let got = batch(&mut alice).await;
    assert!(
        got[0].starts_with("@label=n1 :chatd BATCH +") && got[0].ends_with(" labeled-response"),
        "{got:?}"
    );
    assert!(
        got[1].contains(" 353 ") && got[2].contains(" 366 "),
        "{got:?}"
    );
    assert!(got[1].starts_with("@batch="), "{got:?}");

    // The echo of channel chat is the answer; the others get the message without the label.
    alice.send("@label=m1 PRIVMSG #den :hello all").await;
    alice
        .expect("@label=m1 :alice!chat@chatd PRIVMSG #den :hello all")
        .await;
    carol
        .expect(":alice!chat@chatd PRIVMSG #den :hello all")
        .await;
    bob.expect("<alice> hello all").await;
    // A NOTICE stays a NOTICE for IRC members (its echo too); line members see chat.
    alice.send("@label=m2 NOTICE #den :note").await;
    alice
        .expect("@label=m2 :alice!chat@chatd NOTICE #den note")
        .await;
    carol.expect(":alice!chat@chatd NOTICE #den note").await;
    bob.expect("<alice> note").await;

    // A private message: the echo is the answer.
    alice.send("@label=m3 PRIVMSG carol :psst").await;
    alice
        .expect("@label=m3 :alice!chat@chatd PRIVMSG carol psst")
        .await;
    carol.expect(":alice!chat@chatd PRIVMSG carol psst").await;
    // A private NOTICE: a NOTICE for IRC, marked as one for line members.
    alice.send("@label=m5 NOTICE carol :fyi").await;
    alice
        .expect("@label=m5 :alice!chat@chatd NOTICE carol fyi")
        .await;
    carol.expect(":alice!chat@chatd NOTICE carol fyi").await;
    alice.send("NOTICE bob :fyi too").await;
    bob.expect("[notice] <alice> fyi too").await;
    // To oneself: the delivery, then the echo alone labeled.
    alice.send("@label=m4 PRIVMSG alice :note to self").await;
    alice
        .expect(":alice!chat@chatd PRIVMSG alice :note to self")
        .await;
    alice
        .expect("@label=m4 :alice!chat@chatd PRIVMSG alice :note to self")
        .await;
    // An unknown command's numeric is labeled too.
    alice.send("@label=u1 NO_SUCH_THING").await;
    alice
        .expect("@label=u1 :chatd 421 alice NO_SUCH_THING :Unknown command")
        .await;
    server.shutdown().await;
}

/// The value of tag `key` on a line, if it has it.
fn tag<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@').and_then(|l| l.split(' ').next())?;
    tags.split(';').find_map(|t| {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        (k == key).then_some(v)
    })
}

/// The next line `client` receives that satisfies `wanted` (others are skipped).
async fn next_where(client: &mut TcpClient, wanted: impl Fn(&str) -> bool) -> String {
    for _ in 0..1000 {
        let line = client.recv().await;
        if wanted(&line) {
            return line;
        }
    }
    panic!("nothing wanted in 1000 lines");
}

/// Sends PING and waits for its PONG: returns what came before it.
async fn fence(client: &mut TcpClient) -> Vec<String> {
    client.send("PING fence").await;
    client.expect_match(|l| l.ends_with(" fence")).await
}

#[tokio::test]
async fn client_tags_and_tagmsg_reach_only_clients_that_asked_with_the_msgid_history_gives() {
    let server = start_server("--irc 0 --name chatd").await;
    let irc_addr = server.irc.expect("irc");
    let all = "message-tags echo-message server-time batch draft/chathistory";
    let (mut alice, _) = irc_with(irc_addr, "alice", all).await;
    join(&mut alice, "#den").await;
    let (mut carol, _) = irc_with(irc_addr, "carol", "message-tags").await;
    join(&mut carol, "#den").await;
    let (mut dave, _) = irc_with(irc_addr, "dave", "server-time").await;
    join(&mut dave, "#den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    fence(&mut alice).await;
    fence(&mut carol).await;
    fence(&mut dave).await;

    // A client-only tag rides with the line; a tag without `+` is not relayed.
    alice
        .send("@+draft/reply=7;fizz=buzz PRIVMSG #den :hi there")
        .await;
    let echo = next_where(&mut alice, |l| l.ends_with("PRIVMSG #den :hi there")).await;
    let got = next_where(&mut carol, |l| l.contains(" PRIVMSG #den ")).await;
    assert!(
        got.ends_with(":alice!chat@chatd PRIVMSG #den :hi there"),
        "{got}"
    );
    assert_eq!(tag(&got, "+draft/reply"), Some("7"), "{got}");
    assert_eq!(tag(&got, "fizz"), None, "{got}");
    let msgid = tag(&got, "msgid").expect("a msgid").to_string();
    assert_eq!(tag(&echo, "msgid"), Some(msgid.as_str()), "{echo}");
    assert_eq!(tag(&echo, "+draft/reply"), Some("7"), "{echo}");
    // Without message-tags: no client tags, no msgid.
    let plain = next_where(&mut dave, |l| l.contains(" PRIVMSG #den ")).await;
    assert!(tag(&plain, "time").is_some() && tag(&plain, "msgid").is_none());
    assert!(tag(&plain, "+draft/reply").is_none(), "{plain}");
    bob.expect("<alice> hi there").await;

    // The history gives the line back with the msgid and time it was sent with.
    alice.send("CHATHISTORY LATEST #den * 10").await;
    let got = batch(&mut alice).await;
    let replayed = got
        .iter()
        .find(|l| l.ends_with("PRIVMSG #den :hi there"))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(tag(replayed, "msgid"), Some(msgid.as_str()), "{got:?}");
    assert_eq!(tag(replayed, "time"), tag(&echo, "time"), "{got:?}");

    // TAGMSG reaches message-tags clients only, echoed to its sender with the same msgid.
    alice.send("@+typing=active TAGMSG #den").await;
    let echo = next_where(&mut alice, |l| l.contains(" TAGMSG ")).await;
    let got = next_where(&mut carol, |l| l.contains(" TAGMSG ")).await;
    assert!(got.ends_with(":alice!chat@chatd TAGMSG #den"), "{got}");
    assert_eq!(tag(&got, "+typing"), Some("active"), "{got}");
    assert_eq!(tag(&got, "msgid"), tag(&echo, "msgid"), "{got} {echo}");
    alice.send("PRIVMSG #den :after").await;
    let next = next_where(&mut dave, |l| !l.contains(" PONG ")).await;
    assert!(
        next.ends_with("PRIVMSG #den :after") || next.ends_with("PRIVMSG #den after"),
        "{next}"
    );
    assert_eq!(bob.recv().await, "<alice> after");

    // Tags past 4096 bytes are refused with 417, and nobody gets the line.
    let long = format!("@+big={} PRIVMSG #den :too much", "a".repeat(4096));
    alice.send(&long).await;
    next_where(&mut alice, |l| l.contains(" 417 alice ")).await;
    alice.send("PRIVMSG #den :fits").await;
    let next = next_where(&mut carol, |l| {
        l.contains(" PRIVMSG ") && !l.ends_with(" after")
    })
    .await;
    assert!(next.ends_with("PRIVMSG #den fits"), "{next}");

    // A private message to another IRC client carries a msgid and the client tags, and the
    // conversation is its history on both sides.
    alice.send("@+draft/reply=9 PRIVMSG carol :psst").await;
    let sent = next_where(&mut alice, |l| l.ends_with("PRIVMSG carol psst")).await;
    let got = next_where(&mut carol, |l| l.ends_with("PRIVMSG carol psst")).await;
    assert_eq!(tag(&got, "+draft/reply"), Some("9"), "{got}");
    assert_eq!(tag(&got, "msgid"), tag(&sent, "msgid"), "{got} {sent}");
    alice.send("CHATHISTORY LATEST carol * 10").await;
    let got = batch(&mut alice).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(tag(&got[1], "msgid"), tag(&sent, "msgid"), "{got:?}");
    assert_eq!(tag(&got[1], "time"), tag(&sent, "time"), "{got:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn away_and_account_changes_reach_the_clients_that_asked_once() {
    // Many commands in a row from one client: no flood control to slow them down.
    let flags = "--irc 0 --name chatd --argon2-memory 64 --argon2-passes 1 --rate off";
    let server = start_server(flags).await;
    let irc_addr = server.irc.expect("irc");
    let (mut carol, _) = irc_with(irc_addr, "carol", "away-notify account-notify").await;
    join(&mut carol, "#den").await;
    join(&mut carol, "#pub").await;
    let (mut dave, _) = irc_with(irc_addr, "dave", "server-time").await;
    join(&mut dave, "#den").await;
    join(&mut dave, "#pub").await;
    fence(&mut carol).await;

    // dave shares two channels with carol: she hears of each change once.
    dave.send("AWAY :lunch").await;
    next_where(&mut dave, |l| l.contains(" 306 ")).await;
    let got = next_where(&mut carol, |l| l.contains(" AWAY")).await;
    assert_eq!(got, ":dave!chat@chatd AWAY lunch");
    dave.send("AWAY").await;
    next_where(&mut dave, |l| l.contains(" 305 ")).await;
    let got = next_where(&mut carol, |l| l.contains(" AWAY")).await;
    assert_eq!(got, ":dave!chat@chatd AWAY");

    // Someone away who joins is told as away right after the JOIN.
    let (mut erin, _) = irc_with(irc_addr, "erin", "batch").await;
    erin.send("AWAY :gone fishing").await;
    next_where(&mut erin, |l| l.contains(" 306 ")).await;
    join(&mut erin, "#den").await;
    next_where(&mut carol, |l| l.ends_with("JOIN #den")).await;
    assert_eq!(carol.recv().await, ":erin!chat@chatd AWAY :gone fishing");

    // A line member registering in the room is an ACCOUNT to carol, not to dave.
    let mut fred = TcpClient::with_nick(server.tcp, "fred").await;
    fred.send("/join #den").await;
    next_where(&mut carol, |l| l.contains("fred")).await;
    fred.send("/register pw-fred").await;
    let got = next_where(&mut carol, |l| l.contains(" ACCOUNT ")).await;
    assert_eq!(got, ":fred!chat@chatd ACCOUNT fred");
    let before = fence(&mut dave).await;
    assert!(
        before
            .iter()
            .all(|l| !l.contains("ACCOUNT") && !l.contains(" AWAY")),
        "{before:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_msgid_of_another_history_epoch_is_refused_clearly() {
    // (The msgid a client refers to, as message-tags clients get it: `ID@EPOCH`.)
    let (server, mut bob, mut alice, _) = bob_in_den_and_alice_on_irc().await;
    join(&mut alice, "#den").await;
    bob.send("first").await;
    alice
        .expect_match(|l| l.ends_with("PRIVMSG #den first"))
        .await;
    bob.send("/history 1").await;
    let header = loop {
        let line = bob.recv().await;
        if line.starts_with("* last 1 message in #den") {
            break line;
        }
    };
    let epoch: String = header
        .split("epoch ")
        .nth(1)
        .map(|e| e.chars().take(6).collect())
        .unwrap_or_else(|| panic!("{header}"));

    // The same number in the current epoch is served; in another it is refused, clearly.
    alice
        .send(&format!("CHATHISTORY AFTER #den msgid=0@{epoch} 10"))
        .await;
    assert_eq!(batch(&mut alice).await.len(), 3);
    let other = if epoch == "aaaaaa" {
        "bbbbbb"
    } else {
        "aaaaaa"
    };
    alice
        .send(&format!("CHATHISTORY AFTER #den msgid=0@{other} 10"))
        .await;
    let fail = loop {
        let line = alice.recv().await;
        if line.contains(" FAIL ") {
            break line;
        }
    };
    assert!(
        fail.contains("FAIL CHATHISTORY INVALID_MSGREFTOKEN AFTER")
            && fail.contains(&format!("0@{other} is of history epoch {other}"))
            && fail.contains(&format!("now are of epoch {epoch}")),
        "{fail}"
    );
    server.shutdown().await;
}
