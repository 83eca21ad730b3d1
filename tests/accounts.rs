//! Accounts over real sockets: registering a name and being refused it as a guest, logging in
//! (wrong and right password, from either transport), the attempt limit, `/password` and
//! `/unregister`, input waiting for a password check keeping its order, accounts kept across a
//! restart in SQLite, and no password ever in the server's log.

mod common;

use std::sync::{Arc, Mutex};

use common::{register, spawn_logged_chatd, start_server, temp_db, TcpClient, UdpClient, TIMEOUT};

/// Cheap hashing: the cost is a flag, and these tests hash dozens of passwords.
pub const CHEAP: &str = "--history 0 --argon2-memory 64 --argon2-passes 1";

#[tokio::test]
async fn a_registered_name_is_refused_to_guests_until_they_log_in() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "hunter2").await;
    alice.send("/quit").await;
    alice.expect_closed().await;

    let mut guest = TcpClient::connect(server.tcp).await;
    guest.send("/nick alice").await;
    guest
        .expect("! alice is registered; /login alice PASSWORD")
        .await;
    guest.send("/nick ALICE").await;
    guest
        .expect("! alice is registered; /login alice PASSWORD")
        .await;
    guest.send("/login alice wrong").await;
    guest.expect("! wrong name or password").await;
    guest.send("/login nobody hunter2").await;
    guest.expect("! wrong name or password").await;
    guest.send("/login Alice hunter2").await;
    guest.expect("* you are logged in as alice").await;
    guest.send("/who").await;
    guest.expect("* 1 here:").await;
    guest.expect("*   alice (tcp, registered) (you)").await;
    guest.send("/login alice hunter2").await;
    guest.expect("! you are logged in as alice already").await;
    // A nick away from the account keeps the login but not the mark.
    guest.send("/nick alias").await;
    guest.expect("* you are now known as alias").await;
    guest.send("/who").await;
    guest.expect("* 1 here:").await;
    guest.expect("*   alias (tcp) (you)").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_udp_member_logs_in_to_an_account_registered_over_tcp() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw-one").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;

    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick alice").await;
    udp.expect("! alice is registered; /login alice PASSWORD")
        .await;
    udp.send("/login alice pw-one").await;
    udp.expect("* you are logged in as alice").await;
    watcher.expect_renamed("alice").await;
    watcher.send("/who").await;
    watcher.expect("*   alice (udp, registered)").await;
    // A second session attaches to the account (it used to be refused): one alice, two sessions.
    let mut second = TcpClient::connect(server.tcp).await;
    second.send("/login alice pw-one").await;
    second.expect("* you are logged in as alice").await;
    watcher.send("/who").await;
    watcher.expect("*   alice (2 sessions: tcp, udp)").await;
    server.shutdown().await;
}

#[tokio::test]
async fn lines_sent_during_a_password_check_are_handled_after_it_in_order() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "pw").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let mut guest = TcpClient::connect(server.tcp).await;
    bob.expect_match(|l| l.ends_with(" joined")).await;
    guest.send("/login alice pw").await;
    guest.send("hello as alice").await;
    guest.send("/who").await;
    assert_eq!(guest.recv().await, "* you are logged in as alice");
    assert_eq!(guest.recv().await, "* 2 here:");
    bob.expect_renamed("alice").await;
    assert_eq!(bob.recv().await, "<alice> hello as alice");
    server.shutdown().await;
}

#[tokio::test]
async fn password_attempts_are_limited_per_address_and_account() {
    let server = start_server(CHEAP).await;
    let alice = register(server.tcp, "alice", "right").await;
    drop(alice);
    let mut guesser = TcpClient::connect(server.tcp).await;
    for _ in 0..4 {
        guesser.send("/login alice wrong").await;
        guesser.expect("! wrong name or password").await;
    }
    // The register above was the first attempt from this address.
    guesser.send("/login alice right").await;
    let limited = guesser.recv().await;
    assert!(
        limited.starts_with("! too many attempts, wait ") && limited.ends_with('s'),
        "{limited}"
    );
    // Another account from the same address is limited too: the address is spent.
    guesser.send("/login bob x").await;
    let again = guesser.recv().await;
    assert!(again.starts_with("! too many attempts, wait "), "{again}");
    server.shutdown().await;
}

#[tokio::test]
async fn password_change_and_unregister_need_the_password() {
    let server = start_server(CHEAP).await;
    let mut alice = register(server.tcp, "alice", "old").await;
    alice.send("/password wrong new").await;
    alice.expect("! wrong name or password").await;
    alice.send("/password old new").await;
    alice.expect("* password changed").await;
    alice.send("/unregister old").await;
    alice.expect("! wrong name or password").await;
    alice.send("/unregister new").await;
    alice.expect("* alice is no longer registered").await;
    let mut guest = TcpClient::connect(server.tcp).await;
    guest.send("/password a b").await;
    guest.expect("! log in first: /login NAME PASSWORD").await;
    guest.send("/register pw").await;
    guest
        .expect("! pick a name first (/nick NAME), then /register PASSWORD")
        .await;
    guest.send("/register").await;
    guest.expect("! usage: /register PASSWORD (one word)").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    guest.send("/nick alice").await;
    guest.expect("* you are now known as alice").await;
    server.shutdown().await;
}

#[tokio::test]
async fn accounts_survive_a_restart_with_a_database() {
    let db = temp_db("restart");
    let flags = format!("{CHEAP} --db {}", db.display());
    let server = start_server(&flags).await;
    register(server.tcp, "alice", "kept").await;
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut guest = TcpClient::connect(server.tcp).await;
    guest.send("/nick alice").await;
    guest
        .expect("! alice is registered; /login alice PASSWORD")
        .await;
    guest.send("/login alice kept").await;
    guest.expect("* you are logged in as alice").await;
    server.shutdown().await;

    // Without a database they are gone at restart.
    let server = start_server(CHEAP).await;
    let mut guest = TcpClient::connect(server.tcp).await;
    guest.send("/login alice kept").await;
    guest.expect("! wrong name or password").await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn no_password_ever_appears_in_the_servers_log() {
    let args: Vec<&str> = CHEAP.split_whitespace().collect();
    let (mut child, addr, before, mut lines) = spawn_logged_chatd(&args, "trace").await;
    let log = Arc::new(Mutex::new(before.concat()));
    let collected = Arc::clone(&log);
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = collected.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut alice = register(addr, "alice", "Zebra-1st-secret").await;
    alice
        .send("/password Zebra-1st-secret Zebra-2nd-secret")
        .await;
    alice.expect("* password changed").await;
    let mut other = TcpClient::connect(addr).await;
    other.send("/login alice Zebra-3rd-wrong").await;
    other.expect("! wrong name or password").await;
    alice.send("/unregister Zebra-2nd-secret").await;
    alice.expect("* alice is no longer registered").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    // SIGTERM: the server logs its shutdown and exits, so the log is complete.
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("chatd exits")
        .expect("wait");
    tokio::time::timeout(TIMEOUT, drain)
        .await
        .expect("log drained")
        .expect("drain task");
    let log = log.lock().expect("log").clone();
    assert!(log.contains("account registered"), "the log is read: {log}");
    assert!(log.contains("login refused"), "{log}");
    for secret in ["Zebra-1st", "Zebra-2nd", "Zebra-3rd"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
