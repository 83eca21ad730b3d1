//! `--cluster` logins (real nats-server): a login claims the account's name in the cluster's
//! names bucket before the member gets it, like a `/nick` does, unless the account has sessions
//! already (on any node): then the login is one more session of it. The claim goes back when the member leaves or changes name.
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::net::IpAddr;

use common::{register, start_server, TcpClient, TestServer};
use nats::Nats;

const FLAGS: &str = "--argon2-memory 64 --argon2-passes 1";

async fn node(nats: &Nats, name: &str) -> TestServer {
    start_server(&format!("{} {FLAGS}", nats.flags(name))).await
}

/// The next line that is one of `answers`.
async fn answer(client: &mut TcpClient, answers: &[&str]) -> String {
    for _ in 0..1000 {
        let line = client.recv().await;
        if answers.contains(&line.as_str()) {
            return line;
        }
    }
    panic!("none of {answers:?}");
}

/// Sends `/login NAME pw-NAME` and returns the answer: logged in, or in use. An account reaches
/// the other nodes through their watch of the bucket, a moment after it is stored, so a node that
/// does not know it yet is asked again (a bounded number of times).
async fn login(client: &mut TcpClient, name: &str) -> String {
    let won = format!("* you are logged in as {name}");
    let lost = format!("! {name} is in use by another session");
    let unknown = "! wrong name or password";
    for _ in 0..3 {
        client.send(&format!("/login {name} pw-{name}")).await;
        let got = answer(client, &[&won, &lost, unknown]).await;
        if got != unknown {
            return got;
        }
    }
    panic!("{name}'s account never reached this node");
}

#[tokio::test]
async fn a_login_held_on_one_node_attaches_another_session_on_another() {
    let nats = Nats::start("login-held").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    nats.account(a.tcp, "alice", IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut first = TcpClient::connect(a.tcp).await;
    assert_eq!(
        login(&mut first, "alice").await,
        "* you are logged in as alice"
    );
    // It used to be refused ("in use by another session"): now it is one more session.
    let mut second = TcpClient::connect(b.tcp).await;
    assert_eq!(
        login(&mut second, "alice").await,
        "* you are logged in as alice"
    );
    second.send("/who").await;
    second
        .expect_match(|l| l == "*   alice (2 sessions: tcp, tcp on a) (you)")
        .await;
    // A private message reaches both nodes' sessions.
    let mut bob = TcpClient::with_nick(a.tcp, "bob").await;
    bob.send("/msg alice to both nodes").await;
    first.expect("[private] <bob> to both nodes").await;
    second.expect("[private] <bob> to both nodes").await;
}

#[tokio::test]
async fn a_login_attaches_to_the_session_that_registered_the_name_on_another_node() {
    let nats = Nats::start("login-nick").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // carol took her name by /nick on b, then registered it: she is logged in to it.
    let _carol = register(b.tcp, "carol", "pw-carol").await;
    nats.stored("carol").await;
    let mut other = TcpClient::connect(a.tcp).await;
    assert_eq!(
        login(&mut other, "carol").await,
        "* you are logged in as carol"
    );
    other.send("/who").await;
    other
        .expect_match(|l| l == "*   carol (2 sessions: tcp, tcp on b) (you)")
        .await;
}

#[tokio::test]
async fn a_login_gives_back_the_nick_it_replaces() {
    let nats = Nats::start("login-nick-back").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    nats.account(a.tcp, "erin", IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut erin = TcpClient::with_nick(a.tcp, "frank").await;
    assert_eq!(
        login(&mut erin, "erin").await,
        "* you are logged in as erin"
    );
    nats.released("frank").await;
    let mut frank = TcpClient::connect(b.tcp).await;
    frank.send("/nick frank").await;
    frank.expect("* you are now known as frank").await;
}

#[tokio::test]
async fn two_nodes_logging_in_to_one_account_at_once_both_become_its_sessions() {
    let nats = Nats::start("login-race").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    const ROUNDS: u8 = 8;
    // Each member from its own address: password attempts are limited per address.
    for round in 0..ROUNDS {
        let name = format!("racer{round}");
        nats.account(a.tcp, &name, IpAddr::from([127, 0, 1, round]))
            .await;
    }
    for round in 0..ROUNDS {
        let name = format!("racer{round}");
        let mut x = TcpClient::connect_from(a.tcp, IpAddr::from([127, 0, 2, round])).await;
        let mut y = TcpClient::connect_from(b.tcp, IpAddr::from([127, 0, 3, round])).await;
        let (from_x, from_y) = tokio::join!(login(&mut x, &name), login(&mut y, &name));
        let won = format!("* you are logged in as {name}");
        // Both become sessions of the account (one used to be refused): the one that loses
        // the claim joins the one that won it.
        assert!(
            from_x == won && from_y == won,
            "round {round}: both log in: {from_x:?} / {from_y:?}"
        );
    }
}

#[tokio::test]
async fn an_unregistered_name_stays_with_its_member_until_it_changes_name() {
    let nats = Nats::start("login-unregister").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    nats.account(a.tcp, "gina", IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut gina = TcpClient::connect(a.tcp).await;
    assert_eq!(
        login(&mut gina, "gina").await,
        "* you are logged in as gina"
    );
    gina.send("/unregister pw-gina").await;
    gina.expect("* gina is no longer registered").await;
    // Still her name, so still her claim.
    let mut other = TcpClient::connect(b.tcp).await;
    other.send("/nick gina").await;
    other.expect("! that name is taken").await;
    gina.send("/nick gina2").await;
    gina.expect("* you are now known as gina2").await;
    nats.released("gina").await;
    other.send("/nick gina").await;
    other.expect("* you are now known as gina").await;
}

#[tokio::test]
async fn a_login_while_nats_is_down_is_refused_and_works_once_it_is_back() {
    let mut nats = Nats::start("login-down").await;
    let a = node(&nats, "a").await;
    nats.account(a.tcp, "hana", IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut hana = TcpClient::connect(a.tcp).await;
    let guest = hana.name.clone();
    nats.kill().await;
    hana.expect("* cluster link lost").await;
    // Nobody can tell whether another node's member goes by the name: no login takes it.
    hana.send("/login hana pw-hana").await;
    hana.expect("! names cannot be checked across the cluster right now; try again")
        .await;
    hana.send("/who").await;
    let me = format!("*   {guest} (tcp) (you)");
    hana.expect_match(|l| l == me).await;
    nats.restart().await;
    hana.expect("* cluster link restored").await;
    assert_eq!(
        login(&mut hana, "hana").await,
        "* you are logged in as hana"
    );
}

/// Logs an IRC client in to `name` by SASL PLAIN under the nick `name` on `addr`; None when
/// the node does not know the account yet (it reaches nodes through their watch of the bucket).
async fn irc_login(addr: std::net::SocketAddr, name: &str) -> Option<TcpClient> {
    use base64::Engine as _;
    let mut client = TcpClient::connect_raw(addr).await;
    client.send("CAP REQ :sasl").await;
    client.expect_match(|l| l.contains(" ACK ")).await;
    client.send(&format!("NICK {name}")).await;
    client.send(&format!("USER {name} 0 * :{name}")).await;
    client.send("AUTHENTICATE PLAIN").await;
    client.expect("AUTHENTICATE +").await;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{name}\0pw-{name}"));
    client.send(&format!("AUTHENTICATE {plain}")).await;
    client
        .expect_match(|l| l.contains(" 903 ") || l.contains(" 904 "))
        .await;
    client.send("CAP END").await;
    let welcome = client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    welcome
        .iter()
        .any(|l| l.contains(&format!(" 001 {name} ")))
        .then_some(client)
}

/// Asks `/who` until its list has `line` (bounded: presence crosses NATS); returns every line
/// that came besides the lists.
async fn who_shows(client: &mut TcpClient, line: &str) -> Vec<String> {
    let mut others = Vec::new();
    for _ in 0..25 {
        client.send("/who").await;
        others.extend(client.expect_match(|l| l.ends_with(" here:")).await);
        // expect_match does not return the header it stopped on: count the list by its indent.
        let mut listed = Vec::new();
        loop {
            let next = client.recv().await;
            if next.starts_with("*   ") {
                listed.push(next);
                if listed.last().is_some_and(|l| l.ends_with("(you)")) {
                    break;
                }
            } else {
                others.push(next);
            }
        }
        if listed.iter().any(|l| l == line) {
            return others;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("/who never listed {line:?}");
}

#[tokio::test]
async fn a_tcp_session_on_one_node_and_an_irc_session_on_another_are_one_member() {
    let nats = Nats::start("login-irc").await;
    let a = start_server(&format!("{} {FLAGS} --irc 0 --name chatd", nats.flags("a"))).await;
    let b = start_server(&format!("{} {FLAGS} --irc 0 --name chatd", nats.flags("b"))).await;
    nats.account(a.tcp, "alice", IpAddr::from([127, 0, 0, 1]))
        .await;
    let mut tcp = TcpClient::connect(a.tcp).await;
    assert_eq!(
        login(&mut tcp, "alice").await,
        "* you are logged in as alice"
    );
    let mut bob = TcpClient::with_nick(a.tcp, "bob").await;

    let irc_addr = b.irc.expect("irc listener");
    let mut irc = None;
    for _ in 0..3 {
        irc = irc_login(irc_addr, "alice").await;
        if irc.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut irc = irc.expect("the IRC session logs in to alice on b under its nick");
    common::irc::join(&mut irc, "#lobby").await;
    // bob on a sees one alice with a session on each node, and no second join.
    who_shows(&mut bob, "*   alice (2 sessions: irc on b, tcp)").await;
    bob.send("/msg alice hello both").await;
    tcp.expect("[private] <bob> hello both").await;
    irc.expect(":bob!chat@chatd PRIVMSG alice :hello both")
        .await;
    // A line from the TCP session reaches the IRC one on the other node.
    tcp.send("from a").await;
    irc.expect(":alice!chat@chatd PRIVMSG #lobby :from a").await;
    // The IRC session goes; alice stays, unannounced: bob's next line is alice's.
    irc.send("QUIT :bye").await;
    irc.expect_closed().await;
    // Its leave reaches a through NATS; no line in between tells of alice leaving.
    let skipped = who_shows(&mut bob, "*   alice (tcp, registered)").await;
    assert!(
        skipped.iter().all(|l| !l.contains("alice left")),
        "{skipped:?}"
    );
    tcp.send("still here").await;
    let next = bob.recv().await;
    assert_eq!(next, "<alice> still here");
}
