//! "What you missed" over real sockets: each client of an account (`/login NAME PASSWORD
//! CLIENT`) gets, at its next login, exactly the lines it missed since it was last there, never
//! one twice; past `--missed-max` (or past history) it is told how many and where the rest are;
//! the other rooms it has a place in get a count; and with `--db` the places survive a restart.
//! IRC clients (`alice@phone` in SASL) get what they missed on JOIN, with `draft/read-marker`'s
//! MARKREAD on the same place; in a cluster a login on another node starts from the same place.

mod common;
#[path = "common/nats.rs"]
mod nats;

use common::irc::{join, sasl_register};
use common::{register, start_server, temp_db, TcpClient};

/// Cheap hashing: the cost is a flag.
const CHEAP: &str = "--argon2-memory 64 --argon2-passes 1";

/// Connects and logs in to `alice` (password `pw`) as the client `client`, each time from
/// another loopback address: an address may try only a few logins a minute.
async fn device(addr: std::net::SocketAddr, client: &str) -> TcpClient {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(10);
    let last = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let from = std::net::IpAddr::from([127, 0, 1, last]);
    let mut c = TcpClient::connect_from(addr, from).await;
    c.send(&format!("/login alice pw {client}")).await;
    c.expect("* you are logged in as alice").await;
    c
}

/// Says `line N` for each N in `from..=to`, then waits until the room has them all (the answer
/// to a later command comes after them).
async fn say(ann: &mut TcpClient, from: u32, to: u32) {
    for n in from..=to {
        ann.send(&format!("line {n}")).await;
    }
    ann.send("/history 1").await;
    ann.expect("* end of history").await;
}

/// The next line starting with `start`.
async fn line_starting(client: &mut TcpClient, start: &str) -> String {
    loop {
        let line = client.recv().await;
        if line.starts_with(start) {
            return line;
        }
    }
}

/// The replayed lines (their times cut off) up to the end marker.
async fn replayed(client: &mut TcpClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.recv().await;
        if line == "* end of missed messages" {
            return lines;
        }
        let (stamp, text) = line.split_once("] ").expect("a replayed line: [TIME] TEXT");
        assert!(stamp.starts_with('['), "{line}");
        lines.push(text.to_string());
        assert!(lines.len() < 1000, "no end marker");
    }
}

fn said(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("<ann> line {n}")).collect()
}

/// After a login with nothing missed, the next thing the client hears is the answer to its next
/// command: nothing was replayed (the replay comes before it, in order, without a cluster).
async fn nothing_replayed(client: &mut TcpClient) {
    client.send("/history 1").await;
    let next = client.recv().await;
    assert!(next.starts_with("* last 1 message in #lobby"), "{next}");
}

#[tokio::test]
async fn two_devices_that_saw_different_amounts_each_get_exactly_what_they_missed() {
    let server = start_server(CHEAP).await;
    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;

    // The phone reads lines 1-5, then goes.
    let mut phone = device(server.tcp, "phone").await;
    say(&mut ann, 1, 5).await;
    phone.expect("<ann> line 5").await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    // The laptop reads on to 10, then goes.
    let mut laptop = device(server.tcp, "laptop").await;
    say(&mut ann, 6, 10).await;
    laptop.expect("<ann> line 10").await;
    laptop.send("/quit").await;
    laptop.expect_closed().await;
    say(&mut ann, 11, 15).await;

    let mut phone = device(server.tcp, "phone").await;
    let header = line_starting(&mut phone, "* 10 messages missed in #lobby").await;
    assert!(
        header.starts_with("* 10 messages missed in #lobby since phone was last there (5@")
            && header.ends_with("); they follow"),
        "{header}"
    );
    assert_eq!(replayed(&mut phone).await, said(6..=15));
    phone.send("/quit").await;
    phone.expect_closed().await;

    let mut laptop = device(server.tcp, "laptop").await;
    let header = line_starting(&mut laptop, "* 5 messages missed in #lobby").await;
    assert!(
        header.contains("since laptop was last there (10@"),
        "{header}"
    );
    assert_eq!(replayed(&mut laptop).await, said(11..=15));
    laptop.send("/quit").await;
    laptop.expect_closed().await;

    // Nothing twice: each is up to date now.
    let mut phone = device(server.tcp, "phone").await;
    nothing_replayed(&mut phone).await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    let mut laptop = device(server.tcp, "laptop").await;
    nothing_replayed(&mut laptop).await;
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_bound_and_past_history_the_count_is_said_never_a_silent_gap() {
    let server = start_server(&format!("{CHEAP} --missed-max 3 --history 5")).await;
    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    let mut phone = device(server.tcp, "phone").await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    say(&mut ann, 1, 8).await;

    let mut phone = device(server.tcp, "phone").await;
    let header = line_starting(&mut phone, "* 8 messages missed in #lobby").await;
    // History keeps 4-8 (1-3 are gone); the bound shows 6-8 and points at 4-5.
    let at = header
        .split_once("since phone was last there (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_string())
        .expect("the place in the header");
    assert!(at.starts_with("0@"), "{header}");
    assert_eq!(
        header,
        format!(
            "* 8 messages missed in #lobby since phone was last there ({at}), 3 are gone (older \
             than history), 2 not shown here: /history since {at} for them; the last 3 follow"
        )
    );
    assert_eq!(replayed(&mut phone).await, said(6..=8));
    // The command the header names gives the ones not shown.
    phone.send(&format!("/history since {at}")).await;
    line_starting(&mut phone, "* 3 earlier messages are gone").await;
    let rest: Vec<String> = [phone.recv().await, phone.recv().await, phone.recv().await]
        .iter()
        .map(|l| l.split_once("] ").map_or(l.clone(), |(_, t)| t.to_string()))
        .collect();
    assert_eq!(rest, said(4..=6));
    server.shutdown().await;
}

#[tokio::test]
async fn the_other_rooms_a_client_has_a_place_in_get_a_count() {
    let server = start_server(CHEAP).await;
    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    ann.send("/join #dev").await;
    ann.expect_match(|l| l.starts_with("* you are in #dev"))
        .await;

    let mut phone = device(server.tcp, "phone").await;
    phone.send("/join #dev").await;
    phone
        .expect_match(|l| l.starts_with("* you are in #dev"))
        .await;
    say(&mut ann, 1, 2).await;
    phone.expect("<ann> line 2").await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    say(&mut ann, 3, 5).await;

    // It logs in in the lobby: #dev is counted, not replayed.
    let mut phone = device(server.tcp, "phone").await;
    let count = line_starting(&mut phone, "* 3 new messages in #dev").await;
    assert_eq!(
        count,
        "* 3 new messages in #dev since phone was there: /join #dev"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn places_survive_a_restart_with_a_database() {
    let db = temp_db("places");
    let flags = format!("{CHEAP} --db {}", db.display());
    let server = start_server(&flags).await;
    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    let mut phone = device(server.tcp, "phone").await;
    say(&mut ann, 1, 3).await;
    phone.expect("<ann> line 3").await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    // A round trip after the phone went: its place is written behind, before the shutdown.
    say(&mut ann, 4, 4).await;
    drop(ann);
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    say(&mut ann, 5, 6).await;
    let mut phone = device(server.tcp, "phone").await;
    let header = line_starting(&mut phone, "* 3 messages missed in #lobby").await;
    assert!(
        header.contains("since phone was last there (3@"),
        "{header}"
    );
    assert_eq!(replayed(&mut phone).await, said(4..=6));
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn a_bad_client_name_is_refused_with_the_usage() {
    let server = start_server(CHEAP).await;
    let mut c = TcpClient::connect(server.tcp).await;
    c.send("/login alice pw ph@ne").await;
    let answer = line_starting(&mut c, "! ").await;
    assert!(
        answer.contains("a client name is 1 to 32 letters"),
        "{answer}"
    );
    server.shutdown().await;
}

/// A tag's value on an IRC line (`@a=1;time=...`).
fn tag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split_once(' ')?.0;
    tags.split(';')
        .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
}

/// An IRC client from another loopback address, logged in with SASL as `authcid`, with batch,
/// server-time, message-tags and draft/read-marker on.
async fn irc_device(addr: std::net::SocketAddr, last: u8, authcid: &str) -> TcpClient {
    let from = std::net::IpAddr::from([127, 0, 2, last]);
    let mut c = TcpClient::connect_from_raw(addr, from).await;
    let caps = "batch server-time message-tags draft/read-marker";
    sasl_register(&mut c, "phone", caps, authcid, "pw").await;
    c
}

#[tokio::test]
async fn an_irc_client_named_in_sasl_gets_what_it_missed_on_join_and_its_read_marker() {
    let server = start_server(&format!("{CHEAP} --irc 0 --name chatd")).await;
    let irc = server.irc.expect("irc");
    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    ann.send("/join #dev").await;
    ann.expect_match(|l| l.starts_with("* you are in #dev"))
        .await;

    let mut phone = irc_device(irc, 1, "alice@phone").await;
    let joined = join(&mut phone, "#dev").await;
    assert!(
        joined.iter().any(|l| l == ":chatd MARKREAD #dev *"),
        "no place yet: {joined:?}"
    );
    say(&mut ann, 1, 3).await;
    let mut times = Vec::new();
    for n in 1..=3 {
        phone
            .expect_match(|l| l.ends_with(&format!("PRIVMSG #dev :line {n}")))
            .await;
    }
    // The times the lines carried, from CHATHISTORY (the same times history keeps).
    phone.send("CHATHISTORY LATEST #dev * 3").await;
    for n in 1..=3 {
        let line = loop {
            let l = phone.recv().await;
            if l.ends_with(&format!("PRIVMSG #dev :line {n}")) {
                break l;
            }
        };
        times.push(tag(&line, "time").expect("a time tag").to_string());
    }
    phone
        .send(&format!("MARKREAD #dev timestamp={}", times[1]))
        .await;
    phone
        .expect(&format!(":chatd MARKREAD #dev timestamp={}", times[1]))
        .await;
    // Never back: an older time is answered with the place kept.
    phone
        .send("MARKREAD #dev timestamp=2000-01-01T00:00:00.000Z")
        .await;
    phone
        .expect(&format!(":chatd MARKREAD #dev timestamp={}", times[1]))
        .await;
    phone.send("MARKREAD #dev").await;
    phone
        .expect(&format!(":chatd MARKREAD #dev timestamp={}", times[1]))
        .await;
    phone.send("MARKREAD #dev timestamp=yesterday").await;
    phone
        .expect_match(|l| l.starts_with(":chatd FAIL MARKREAD INVALID_PARAMS #dev"))
        .await;
    // Leaving, it had every line: its place is line 3.
    phone.send("QUIT").await;
    phone.expect_closed().await;
    say(&mut ann, 4, 5).await;

    let mut phone = irc_device(irc, 2, "alice@phone").await;
    let joined = join(&mut phone, "#dev").await;
    assert!(
        joined
            .iter()
            .any(|l| *l == format!(":chatd MARKREAD #dev timestamp={}", times[2])),
        "{joined:?}"
    );
    let header = phone.recv().await;
    assert!(
        header.starts_with(
            ":chatd NOTICE phone :2 messages missed in #dev since phone was last there (3@"
        ),
        "{header}"
    );
    let open = phone.recv().await;
    let id = open
        .strip_prefix(":chatd BATCH +")
        .and_then(|rest| rest.strip_suffix(" chathistory #dev"))
        .expect("a chathistory batch")
        .to_string();
    for n in 4..=5 {
        let line = phone.recv().await;
        assert_eq!(tag(&line, "batch"), Some(id.as_str()), "{line}");
        assert!(
            tag(&line, "msgid").is_some_and(|m| m.starts_with(&format!("{n}@"))),
            "{line}"
        );
        assert!(line.ends_with(&format!("PRIVMSG #dev :line {n}")), "{line}");
    }
    assert_eq!(phone.recv().await, format!(":chatd BATCH -{id}"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_login_on_another_node_replays_from_the_same_place() {
    let nats = nats::Nats::start("missed").await;
    let a = start_server(&format!("{} {CHEAP}", nats.flags("a"))).await;
    let b = start_server(&format!("{} {CHEAP}", nats.flags("b"))).await;
    nats.account(a.tcp, "alice", std::net::IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut phone = TcpClient::connect_from(a.tcp, std::net::IpAddr::from([127, 0, 3, 1])).await;
    phone.send("/login alice pw-alice phone").await;
    phone.expect("* you are logged in as alice").await;
    for n in 1..=3 {
        ann.send(&format!("line {n}")).await;
    }
    phone.expect("<ann> line 3").await;
    // Its place is the cluster history's id: wait until node a's copy has line 3.
    in_history(&mut phone, "<ann> line 3").await;
    phone.send("/quit").await;
    phone.expect_closed().await;
    nats.released("alice").await;
    for n in 4..=5 {
        ann.send(&format!("line {n}")).await;
    }
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    in_history(&mut bob, "<ann> line 5").await;

    let mut phone = TcpClient::connect_from(b.tcp, std::net::IpAddr::from([127, 0, 3, 2])).await;
    // The account reaches node b through its watch of the bucket, a moment after it is stored.
    let mut logged_in = false;
    for _ in 0..3 {
        phone.send("/login alice pw-alice phone").await;
        let got = loop {
            let l = phone.recv().await;
            if l == "* you are logged in as alice" || l.starts_with("! ") {
                break l;
            }
        };
        if got == "* you are logged in as alice" {
            logged_in = true;
            break;
        }
        assert_eq!(got, "! wrong name or password");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(logged_in, "alice never reached node b");
    let header = line_starting(&mut phone, "* 2 messages missed in #lobby").await;
    assert!(header.contains("since phone was last there ("), "{header}");
    assert_eq!(replayed(&mut phone).await, said(4..=5));
    a.shutdown().await;
    b.shutdown().await;
}

/// Asks `/history 5` until its answer has `line` (the cluster's history is filled a moment after
/// the line was delivered), a bounded number of times.
async fn in_history(client: &mut TcpClient, line: &str) {
    for _ in 0..50 {
        client.send("/history 5").await;
        let got = client.expect("* end of history").await;
        if got.iter().any(|l| l.ends_with(line)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{line} never in history");
}

/// A guest's read markers are kept by its connection (channels and nicks, never moving back), and
/// a marker one session of an account moves is told to the account's other IRC sessions.
#[tokio::test]
async fn guests_keep_markers_on_their_connection_and_an_accounts_sessions_share_them() {
    let server = start_server(&format!("{CHEAP} --irc 0 --name chatd")).await;
    let irc = server.irc.expect("irc");

    let mut guest = TcpClient::connect_raw(irc).await;
    guest.send("CAP REQ :draft/read-marker").await;
    guest.expect_match(|l| l.contains("ACK")).await;
    guest.send("CAP END").await;
    common::irc::register(&mut guest, "gus").await;
    guest.send("MARKREAD #nowhere").await;
    guest.expect(":chatd MARKREAD #nowhere *").await;
    let ts = "2021-05-20T08:30:00.000Z";
    guest.send(&format!("MARKREAD bob timestamp={ts}")).await;
    guest
        .expect(&format!(":chatd MARKREAD bob timestamp={ts}"))
        .await;
    guest
        .send("MARKREAD bob timestamp=2020-01-01T00:00:00.000Z")
        .await;
    guest
        .expect(&format!(":chatd MARKREAD bob timestamp={ts}"))
        .await;
    guest.send(&format!("MARKREAD #dev timestamp={ts}")).await;
    guest
        .expect(&format!(":chatd MARKREAD #dev timestamp={ts}"))
        .await;
    let joined = join(&mut guest, "#dev").await;
    assert!(
        joined
            .iter()
            .any(|l| l == &format!(":chatd MARKREAD #dev timestamp={ts}")),
        "the JOIN tells the marker set before: {joined:?}"
    );
    guest.send("MARKREAD #dev *").await;
    guest
        .expect_match(|l| l.starts_with(":chatd FAIL MARKREAD INVALID_PARAMS #dev"))
        .await;

    let mut owner = register(server.tcp, "alice", "pw").await;
    owner.send("/quit").await;
    owner.expect_closed().await;
    let mut phone = TcpClient::connect_from_raw(irc, std::net::IpAddr::from([127, 0, 2, 1])).await;
    sasl_register(
        &mut phone,
        "alice",
        "draft/read-marker",
        "alice@phone",
        "pw",
    )
    .await;
    let mut laptop = TcpClient::connect_from_raw(irc, std::net::IpAddr::from([127, 0, 2, 2])).await;
    sasl_register(
        &mut laptop,
        "alice",
        "draft/read-marker",
        "alice@laptop",
        "pw",
    )
    .await;
    join(&mut phone, "#dev").await;
    let ts = "2022-11-11T11:11:11.111Z";
    phone.send(&format!("MARKREAD #dev timestamp={ts}")).await;
    phone
        .expect(&format!(":chatd MARKREAD #dev timestamp={ts}"))
        .await;
    laptop
        .expect(&format!(":chatd MARKREAD #dev timestamp={ts}"))
        .await;
}
