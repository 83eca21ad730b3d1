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
