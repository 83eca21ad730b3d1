//! `--cluster` accounts and server bans: kept in a JetStream key-value bucket (real nats-server),
//! so an account registered on one node logs in on another, and a server ban set on one node
//! disconnects and refuses the address on every node.
mod common;
#[path = "common/nats.rs"]
mod nats;

use bytes::Bytes;
use chatd::cluster::subject::token;
use common::{other_address, register, start_server, TcpClient, TestServer, TIMEOUT};
use nats::Nats;

const FLAGS: &str = "--argon2-memory 64 --argon2-passes 1 --oper root";

async fn node(nats: &Nats, name: &str) -> TestServer {
    start_server(&format!("{} {FLAGS}", nats.flags(name))).await
}

#[tokio::test]
async fn an_account_registered_on_one_node_logs_in_on_another() {
    let nats = Nats::start("acct-login").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut watcher = TcpClient::connect(b.tcp).await;
    let mut alice = register(a.tcp, "alice", "pw-alice").await;
    watcher.expect_renamed("alice").await;
    alice.send("/quit").await;
    watcher
        .expect_match(|l| l.starts_with("* alice left"))
        .await;
    // a gives the name back in the background after the leave is announced.
    nats.released("alice").await;
    let mut again = TcpClient::connect(b.tcp).await;
    again.send("/login alice wrong").await;
    again.expect("! wrong name or password").await;
    again.send("/login alice pw-alice").await;
    again.expect("* you are logged in as alice").await;
    again.send("/who").await;
    again
        .expect_match(|l| l.starts_with("*   alice (tcp, registered) (you)"))
        .await;
}

#[tokio::test]
async fn a_server_ban_set_on_one_node_applies_on_every_node() {
    let nats = Nats::start("acct-gban").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut victim = TcpClient::connect_from(b.tcp, other_address()).await;
    let mut bystander = TcpClient::connect(b.tcp).await;
    let mut root = register(a.tcp, "root", "pw-root").await;
    bystander.expect_renamed("root").await;
    root.send("/gban 127.0.0.2 1h abuse").await;
    root.expect("* address 127.0.0.2 is banned from the server for 1h; 0 members disconnected")
        .await;
    let last = victim.expect_closed().await;
    assert!(
        last.contains(&"! you were disconnected: banned from the server (abuse)".to_string()),
        "{last:?}"
    );
    // New connections from there are refused on the other node too; others are welcome.
    let mut refused = TcpClient::connect_from_raw(b.tcp, other_address()).await;
    assert_eq!(refused.recv().await, "! you are banned from this server");
    refused.expect_closed().await;
    let welcome = TcpClient::connect(b.tcp).await;
    assert!(welcome.name.starts_with("guest-"), "{}", welcome.name);
    // Lifted on one node, lifted everywhere.
    root.send("/ungban 127.0.0.2").await;
    root.expect("* address 127.0.0.2 is no longer banned from the server")
        .await;
    let mut tries = 0;
    loop {
        let mut back = TcpClient::connect_from_raw(b.tcp, other_address()).await;
        let first = back.recv().await;
        if first.starts_with("* welcome") {
            break;
        }
        tries += 1;
        assert!(tries < 50, "still refused: {first:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_room_ban_set_on_one_node_reaches_the_room_open_on_another() {
    let nats = Nats::start("acct-rban").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // ann opens #den on a, so operates it; bo opens it on b (no operator: ann was first), then
    // vic sits in it too, from another address.
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    ann.send("/join #den").await;
    ann.expect("* you are in #den with 0 others").await;
    let mut bo = TcpClient::connect(b.tcp).await;
    bo.send("/join #den").await;
    bo.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    ann.expect(&format!("* {} joined #den", bo.name)).await;
    let mut vic = TcpClient::connect_from(b.tcp, other_address()).await;
    vic.send("/join #den").await;
    vic.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    ann.expect(&format!("* {} joined #den", vic.name)).await;
    ann.send("/ban 127.0.0.2 1h").await;
    ann.expect("* address 127.0.0.2 is banned from #den for 1h")
        .await;
    // b's open #den takes the ban at once: vic is sent to the lobby, and cannot come back.
    vic.expect("! you are banned from #den").await;
    ann.expect(&format!("* {} was banned from #den", vic.name))
        .await;
    vic.send("/join #den").await;
    vic.expect("! you are banned from #den").await;
    // Lifted on a, lifted in b's #den.
    ann.send("/unban 127.0.0.2").await;
    ann.expect_match(|l| l.starts_with("* address 127.0.0.2 is no longer banned"))
        .await;
    let mut tries = 0;
    loop {
        vic.send("/join #den").await;
        let answer = loop {
            let line = vic.recv().await;
            if line.starts_with("* you are in #den") || line == "! you are banned from #den" {
                break line;
            }
        };
        if answer.starts_with("* you are in #den") {
            break;
        }
        tries += 1;
        assert!(tries < 50, "still banned from #den on b");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_started_after_a_server_ban_refuses_the_address_from_its_first_connection() {
    let nats = Nats::start("acct-gban-start").await;
    let a = node(&nats, "a").await;
    let mut root = register(a.tcp, "root", "pw-root").await;
    root.send("/gban 127.0.0.2 1h").await;
    root.expect("* address 127.0.0.2 is banned from the server for 1h; 0 members disconnected")
        .await;
    // The ban is stored in the background after the answer: wait for it, so b's start is after.
    nats.meta_written("server:gbans").await;
    // b reads the cluster's bans before it takes anyone: its very first connection is refused.
    let b = node(&nats, "b").await;
    let mut refused = TcpClient::connect_from_raw(b.tcp, other_address()).await;
    assert_eq!(refused.recv().await, "! you are banned from this server");
    refused.expect_closed().await;
}

#[tokio::test]
async fn garbage_in_the_state_bucket_is_ignored_and_every_node_keeps_serving() {
    let nats = Nats::start("acct-garbage").await;
    let a = node(&nats, "a").await;
    // ann's account operates #den for good: that is room state in the bucket.
    let mut ann = register(a.tcp, "ann", "pw-ann").await;
    ann.send("/join #den").await;
    ann.expect("* you are in #den with 0 others").await;
    let mut carol = register(a.tcp, "carol", "pw-carol").await;
    carol.send("/quit").await;
    carol.expect_closed().await;
    nats.stored("carol").await;
    nats.released("carol").await;
    // Whatever wrote these (a bug, an older version, a person with the nats CLI), they are not
    // what chatd writes: values that are not UTF-8 over a real account and a real room's state,
    // unreadable JSON, unknown keys.
    let meta = nats.meta_bucket().await;
    let garbage: [(&str, &[u8]); 6] = [
        ("account:carol", b"\xff\xfe not utf-8"),
        ("room:den", b"\xff not utf-8 either"),
        ("account:bob", b"{\"hash\": 5}"),
        ("room:elsewhere", b"{not json"),
        ("server:gbans", b"[[["),
        ("nothing:known", b"?"),
    ];
    for (key, value) in garbage {
        let put = meta.put(token(key), Bytes::from_static(value));
        tokio::time::timeout(TIMEOUT, put)
            .await
            .expect("in time")
            .expect("put garbage");
    }
    // A node started now reads all of it before it takes members, and serves.
    let b = node(&nats, "b").await;
    let mut bo = TcpClient::with_nick(b.tcp, "bo").await;
    // A server ban set on b after the garbage reaches a: a's watch of the bucket went on past it.
    let mut root = register(b.tcp, "root", "pw-root").await;
    root.send("/gban 127.0.0.2 1h").await;
    root.expect("* address 127.0.0.2 is banned from the server for 1h; 0 members disconnected")
        .await;
    let mut tries = 0;
    loop {
        let mut probe = TcpClient::connect_from_raw(a.tcp, other_address()).await;
        if probe.recv().await == "! you are banned from this server" {
            break;
        }
        tries += 1;
        assert!(tries < 50, "a never took the ban set after the garbage");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // a kept what the garbage would have wiped: ann still operates #den, carol still logs in.
    ann.send("/topic still ours").await;
    ann.expect("* ann set the topic of #den: still ours").await;
    let mut again = TcpClient::connect(a.tcp).await;
    again.send("/login carol pw-carol").await;
    again.expect("* you are logged in as carol").await;
    // And lines cross the nodes.
    bo.send("/join #den").await;
    bo.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    ann.expect("* bo joined #den").await;
    bo.send("hello from b").await;
    ann.expect("<bo> hello from b").await;
}

#[tokio::test]
async fn a_message_kept_on_one_node_reaches_the_accounts_login_on_another() {
    let nats = Nats::start("acct-kept").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut bob = register(a.tcp, "bob", "pw-bob").await;
    nats.stored("bob").await;
    bob.send("/quit").await;
    bob.expect_closed().await;
    nats.released("bob").await;
    let mut alice = TcpClient::with_nick(a.tcp, "alice").await;
    alice.send("/msg bob kept across nodes").await;
    alice
        .expect("* kept for bob, who is away; delivered when they log in")
        .await;
    // Kept in the cluster's bucket, not on node a alone.
    nats.meta_written("kept:bob").await;
    let mut again = TcpClient::connect(b.tcp).await;
    again.send("/login bob pw-bob").await;
    again.expect("* you are logged in as bob").await;
    assert_eq!(
        again.recv().await,
        "* 1 message kept for you while you were away"
    );
    let line = again.recv().await;
    assert!(
        line.starts_with('[') && line.ends_with("] [private] <alice> kept across nodes"),
        "{line}"
    );
}
