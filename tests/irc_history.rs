//! The IRC face's history and labels (IRCv3 draft/chathistory, batch, labeled-response,
//! echo-message), over real sockets: a line member's lines replayed to an IRC client with their
//! own times, and each command's answer carrying its label.

mod common;

use std::net::SocketAddr;

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

/// Joins `channel` and waits for the end of its NAMES.
async fn join(client: &mut TcpClient, channel: &str) {
    client.send(&format!("JOIN {channel}")).await;
    client
        .expect_match(|l| l.contains(" 366 ") && l.contains(channel))
        .await;
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

    // Private messages are not kept: a nick's history is empty. A channel not joined is refused.
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

#[tokio::test]
async fn a_msgid_of_another_history_epoch_is_refused_clearly() {
    // (msgid tags go out with message-tags, which is not offered yet; references are read.)
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
