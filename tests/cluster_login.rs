//! `--cluster` logins (real nats-server): a login claims the account's name in the cluster's
//! names bucket before the member gets it, like a `/nick` does, so one account is never logged in
//! under its name on two nodes at once, and a login never takes a name a member of another node
//! goes by. The claim goes back when the member leaves or changes name.
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
async fn a_login_held_on_one_node_is_refused_on_another_until_its_holder_quits() {
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

    let mut second = TcpClient::connect(b.tcp).await;
    assert_eq!(
        login(&mut second, "alice").await,
        "! alice is in use by another session"
    );
    // It keeps its name and stays logged out.
    second.send("/who").await;
    let me = format!("*   {} (tcp) (you)", second.name);
    second.expect_match(|l| l == me).await;
    second.send("/password pw-alice other").await;
    second.expect("! log in first: /login NAME PASSWORD").await;

    first.send("/quit").await;
    first.expect_closed().await;
    nats.released("alice").await;
    assert_eq!(
        login(&mut second, "alice").await,
        "* you are logged in as alice"
    );
    second.send("/who").await;
    second
        .expect_match(|l| l == "*   alice (tcp, registered) (you)")
        .await;
}

#[tokio::test]
async fn a_login_never_takes_a_name_a_member_of_another_node_holds() {
    let nats = Nats::start("login-nick").await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // carol took her name by /nick on b, then registered it (the only way a name someone holds
    // becomes an account's: registering is for one's own name).
    let mut carol = register(b.tcp, "carol", "pw-carol").await;
    nats.stored("carol").await;
    let mut other = TcpClient::connect(a.tcp).await;
    assert_eq!(
        login(&mut other, "carol").await,
        "! carol is in use by another session"
    );
    other.send("/who").await;
    let me = format!("*   {} (tcp) (you)", other.name);
    other.expect_match(|l| l == me).await;

    // Once she goes by another name, the account's name is free for a login anywhere.
    carol.send("/nick dave").await;
    carol.expect("* you are now known as dave").await;
    nats.released("carol").await;
    assert_eq!(
        login(&mut other, "carol").await,
        "* you are logged in as carol"
    );
    // And now it is held on a: nobody on b may take it back.
    carol.send("/nick carol").await;
    carol.expect("! that name is taken").await;
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
async fn two_nodes_logging_in_to_one_account_at_once_exactly_one_wins() {
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
        assert!(
            (from_x == won) != (from_y == won),
            "round {round}: exactly one wins: {from_x:?} / {from_y:?}"
        );
        // The loser keeps its guest name.
        let loser = if from_x == won { &mut y } else { &mut x };
        loser.send("/who").await;
        let me = format!("*   {} (tcp) (you)", loser.name);
        loser.expect_match(|l| l == me).await;
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
