//! Messages kept while away, over real sockets: a `/msg` to a registered member who is not
//! connected is kept (across a restart with `--db`), its sender told, and it arrives with the
//! time it was sent when the member logs in; at most `--offline-max` per account, the oldest
//! dropped and counted. Guests and unknown names are refused as before.

mod common;

use common::{register, spawn_logged_chatd, start_server, TcpClient, TIMEOUT};

/// Cheap hashing, so a debug build on a loaded machine answers within the test's waits.
const CHEAP: &str = "--argon2-memory 64 --argon2-passes 1";
const PASSWORD: &str = "Away-secret-1";

/// Registers `name`, then leaves, waiting until the connection is closed (the member is gone).
async fn register_and_leave(addr: std::net::SocketAddr, name: &str) {
    let mut client = register(addr, name, PASSWORD).await;
    client.send("/quit").await;
    client.expect_closed().await;
}

/// `[HH:MM] rest`: checks the stamp is a time of day and gives the rest.
fn stamped(line: &str) -> &str {
    let (stamp, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("no time on {line:?}"));
    assert!(
        stamp.len() == 5 && stamp.as_bytes()[2] == b':',
        "stamp {stamp:?} in {line:?}"
    );
    rest
}

/// The current UTC time of day as `HH:MM`, and a minute earlier (a minute may turn meanwhile).
fn clock_now() -> [String; 2] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    [secs, secs.saturating_sub(60)]
        .map(|s| format!("{:02}:{:02}", s % 86_400 / 3600, s % 3600 / 60))
}

#[tokio::test]
async fn a_message_kept_while_away_survives_a_restart_and_arrives_with_its_time() {
    let db = common::temp_db("away");
    let db_arg = db.display().to_string();
    let args = [
        "--db",
        db_arg.as_str(),
        "--argon2-memory",
        "64",
        "--argon2-passes",
        "1",
    ];
    let (mut child, addr, _, _log) = spawn_logged_chatd(&args, "chatd=info").await;
    register_and_leave(addr, "bob").await;
    let mut alice = TcpClient::with_nick(addr, "alice").await;
    let sent_at = clock_now();
    alice.send("/msg bob are you there?").await;
    assert_eq!(
        alice.recv().await,
        "* kept for bob, who is away; delivered when they log in"
    );
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("chatd exits")
        .expect("wait");

    // The same database: the message is still there, and is handed over once.
    let (_child, addr, _, _log) = spawn_logged_chatd(&args, "chatd=info").await;
    let mut bob = TcpClient::connect(addr).await;
    bob.send(&format!("/login bob {PASSWORD}")).await;
    bob.expect("* you are logged in as bob").await;
    assert_eq!(
        bob.recv().await,
        "* 1 message kept for you while you were away"
    );
    let line = bob.recv().await;
    assert_eq!(stamped(&line), "[private] <alice> are you there?");
    assert!(
        sent_at.iter().any(|t| line.starts_with(&format!("[{t}]"))),
        "{line:?} is not stamped with the time it was sent ({sent_at:?})"
    );
    bob.send("/quit").await;
    bob.expect_closed().await;
    let mut again = TcpClient::connect(addr).await;
    again.send(&format!("/login bob {PASSWORD}")).await;
    again.expect("* you are logged in as bob").await;
    again.send("/who").await;
    let before = again.expect_match(|l| l.ends_with(" here:")).await;
    assert!(
        before.iter().all(|l| !l.contains("kept for you")),
        "handed over twice: {before:?}"
    );
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn past_the_limit_the_oldest_go_and_the_owner_is_told_how_many() {
    let server = start_server(&format!("{CHEAP} --offline-max 2")).await;
    register_and_leave(server.tcp, "bob").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    for n in 1..=2 {
        alice.send(&format!("/msg bob m{n}")).await;
        assert_eq!(
            alice.recv().await,
            "* kept for bob, who is away; delivered when they log in"
        );
    }
    alice.send("/msg BOB m3").await;
    assert_eq!(
        alice.recv().await,
        "* kept for bob, who is away; delivered when they log in (only their last 2 are \
         kept: the oldest went)"
    );
    let mut bob = TcpClient::connect(server.tcp).await;
    bob.send(&format!("/login bob {PASSWORD}")).await;
    bob.expect("* you are logged in as bob").await;
    assert_eq!(
        bob.recv().await,
        "* 2 messages kept for you while you were away"
    );
    assert_eq!(
        bob.recv().await,
        "* 1 older message was dropped: only the last ones are kept"
    );
    assert_eq!(stamped(&bob.recv().await), "[private] <alice> m2");
    assert_eq!(stamped(&bob.recv().await), "[private] <alice> m3");
    // Now that bob is here, a /msg reaches him at once.
    alice.send("/msg bob welcome back").await;
    // (after whatever alice was told of bob's coming meanwhile)
    alice.expect("[private to bob] welcome back").await;
    assert_eq!(bob.recv().await, "[private] <alice> welcome back");
    server.shutdown().await;
}

#[tokio::test]
async fn guests_unknown_names_and_offline_max_zero_are_refused_as_before() {
    let server = start_server(CHEAP).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/msg nobody hello").await;
    assert_eq!(alice.recv().await, "! no such member: nobody");
    let mut guest = TcpClient::connect(server.tcp).await;
    let guest_name = guest.name.clone();
    guest.send("/quit").await;
    guest.expect_closed().await;
    alice.send(&format!("/msg {guest_name} hello")).await;
    // (after the guest's coming and going)
    alice
        .expect(&format!("! no such member: {guest_name}"))
        .await;
    server.shutdown().await;

    let server = start_server(&format!("{CHEAP} --offline-max 0")).await;
    register_and_leave(server.tcp, "bob").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/msg bob hello").await;
    assert_eq!(alice.recv().await, "! no such member: bob");
    server.shutdown().await;
}
