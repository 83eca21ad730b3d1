//! History over real sockets: replay on joining, the seam between history and live lines under
//! concurrent traffic, `/history`, `/history since`, ids, history off, and history kept across a
//! restart in SQLite, including a database that is locked while the server runs.

mod common;

use std::time::Duration;

use common::{start_server, temp_db, TcpClient, UdpClient, TIMEOUT};

/// `[HH:MM] <from> text` with any time: the text after the stamp, checking the stamp's shape.
fn replayed(line: &str) -> &str {
    let (stamp, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("not a history line: {line:?}"));
    assert!(
        stamp.len() == 5 && stamp.as_bytes()[2] == b':',
        "stamp {stamp:?}"
    );
    rest
}

/// The history epoch a line names (`... epoch k3f9x2)`).
fn epoch_of(line: &str) -> String {
    let epoch: String = line
        .split("epoch ")
        .nth(1)
        .unwrap_or_else(|| panic!("no epoch in {line:?}"))
        .chars()
        .take(6)
        .collect();
    assert!(
        epoch.len() == 6 && epoch.chars().all(|c| c.is_ascii_alphanumeric()),
        "{line:?}"
    );
    epoch
}

/// `line` with the epoch it names written `E`, for lines otherwise compared exactly.
fn unepoch(line: String) -> String {
    match line.split_once("epoch ") {
        Some((head, rest)) => format!("{head}epoch E{}", rest.get(6..).unwrap_or_default()),
        None => line,
    }
}

#[tokio::test]
async fn a_joiner_gets_the_rooms_history_between_markers_on_both_transports() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    for text in ["one", "two", "three"] {
        alice.send(text).await;
    }
    // A command is handled after the lines before it: once answered, all three are in history.
    alice.send("/who").await;
    alice.expect("* 1 here:").await;
    let mut bob = TcpClient::connect(server.tcp).await;
    assert_eq!(
        unepoch(bob.recv().await),
        "* last 3 messages in #lobby (ids 1-3, epoch E)"
    );
    for text in ["one", "two", "three"] {
        assert_eq!(replayed(&bob.recv().await), format!("<alice> {text}"));
    }
    assert_eq!(bob.recv().await, "* end of history");
    alice.send("live").await;
    assert_eq!(bob.recv().await, "<alice> live");

    let udp = UdpClient::join(server.udp).await;
    assert_eq!(
        unepoch(udp.recv().await),
        "* last 4 messages in #lobby (ids 1-4, epoch E)"
    );
    for text in ["one", "two", "three", "live"] {
        assert_eq!(replayed(&udp.recv().await), format!("<alice> {text}"));
    }
    assert_eq!(udp.recv().await, "* end of history");
    server.shutdown().await;
}

#[tokio::test]
async fn the_seam_between_history_and_live_lines_loses_and_repeats_nothing() {
    const LINES: u32 = 300;
    const JOINERS: usize = 6;
    let server = start_server("--rate off --history 1000").await;
    let mut talker = TcpClient::with_nick(server.tcp, "talker").await;
    let tcp = server.tcp;
    let talk = tokio::spawn(async move {
        for i in 0..LINES {
            talker.send(&format!("n {i}")).await;
            if i % 25 == 0 {
                tokio::task::yield_now().await;
            }
        }
        talker
    });
    // Joiners arrive while the talker talks; each must see 0, 1, 2, ... with no gap or repeat,
    // whichever part came as history and whichever live.
    let mut joiners = Vec::new();
    for _ in 0..JOINERS {
        joiners.push(TcpClient::connect(tcp).await);
        tokio::task::yield_now().await;
    }
    let talker = talk.await.expect("talker");
    for (j, mut joiner) in joiners.into_iter().enumerate() {
        let mut lines = Vec::new();
        let mut numbers = Vec::new();
        while numbers.last() != Some(&(LINES - 1)) {
            let line = match tokio::time::timeout(TIMEOUT, joiner.recv_line()).await {
                Ok(Some(line)) => line,
                other => panic!("joiner {j}: {other:?} after {lines:?}"),
            };
            let text = if line.starts_with('[') {
                replayed(&line)
            } else {
                &line
            };
            if let Some(n) = text.strip_prefix("<talker> n ") {
                numbers.push(n.parse::<u32>().expect("number"));
            }
            lines.push(line);
        }
        assert_eq!(
            numbers,
            (0..LINES).collect::<Vec<u32>>(),
            "joiner {j}: {lines:?}"
        );
    }
    drop(talker);
    server.shutdown().await;
}

#[tokio::test]
async fn history_on_request_with_ids_and_catching_up_since_an_id() {
    let server = start_server("--history 5").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/ids on").await;
    let on = bob.recv().await;
    let epoch = epoch_of(&on);
    assert_eq!(
        on,
        format!("* message ids on: chat lines start with #ID (epoch {epoch}: /history since ID@{epoch})")
    );
    for i in 1..=8 {
        alice.send(&format!("m{i}")).await;
    }
    // Live lines carry their ids for a member that asked.
    for i in 1..=8 {
        assert_eq!(bob.recv().await, format!("#{i} <alice> m{i}"));
    }
    bob.send("/history 2").await;
    assert_eq!(
        bob.recv().await,
        format!("* last 2 messages in #lobby (ids 7-8, epoch {epoch})")
    );
    assert!(bob.recv().await.starts_with("#7 ["));
    assert!(bob.recv().await.ends_with("] <alice> m8"));
    assert_eq!(bob.recv().await, "* end of history");
    // Catching up after line 6: lines 7 and 8.
    bob.send("/history since 6").await;
    assert_eq!(
        bob.recv().await,
        format!("* last 2 messages in #lobby (ids 7-8, epoch {epoch})")
    );
    bob.recv().await;
    bob.recv().await;
    assert_eq!(bob.recv().await, "* end of history");
    // Since line 1: only the last 5 are kept, and the reply says so before the lines.
    alice.send("/history since 1").await;
    alice
        .expect(&format!(
            "* last 5 messages in #lobby (ids 4-8, epoch {epoch})"
        ))
        .await;
    assert_eq!(alice.recv().await, "* 2 earlier messages are gone");
    for i in 4..=8 {
        assert_eq!(replayed(&alice.recv().await), format!("<alice> m{i}"));
    }
    assert_eq!(alice.recv().await, "* end of history");
    alice.send("/history since 8").await;
    assert_eq!(
        alice.recv().await,
        format!("* no messages in #lobby after that (next id 9@{epoch})")
    );
    // The same id with the epoch it is of, as the header showed it.
    alice.send(&format!("/history since 8@{epoch}")).await;
    assert_eq!(
        alice.recv().await,
        format!("* no messages in #lobby after that (next id 9@{epoch})")
    );
    alice.send("/history since x").await;
    assert_eq!(
        alice.recv().await,
        "! usage: /history [N] or /history since ID"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn history_zero_turns_history_off() {
    let server = start_server("--history 0").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("said before").await;
    alice.send("/history").await;
    assert_eq!(alice.recv().await, "* history is off on this server");
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.send("after").await;
    assert_eq!(
        bob.recv().await,
        "<alice> after",
        "no replay before live lines"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn history_survives_a_restart_with_history_db() {
    let db = temp_db("restart");
    let flags = format!("--history-db {}", db.display());
    let server = start_server(&flags).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("before the restart").await;
    alice.send("/join other").await;
    alice.expect("* you are in #other with 0 others").await;
    alice.send("in another room").await;
    alice.send("/history 1").await;
    let first_epoch = epoch_of(&alice.recv().await);
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    // The same database: the same epoch, so ids given out before the restart still hold.
    assert_eq!(
        bob.recv().await,
        format!("* last 1 message in #lobby (ids 1-1, epoch {first_epoch})")
    );
    assert_eq!(replayed(&bob.recv().await), "<alice> before the restart");
    assert_eq!(bob.recv().await, "* end of history");
    bob.send("/join #OTHER").await;
    bob.expect("* you are in #OTHER with 0 others").await;
    assert_eq!(
        unepoch(bob.recv().await),
        "* last 1 message in #OTHER (ids 1-1, epoch E)"
    );
    assert_eq!(replayed(&bob.recv().await), "<alice> in another room");
    assert_eq!(bob.recv().await, "* end of history");
    // Ids go on from where they were.
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    bob.send("after the restart").await;
    bob.send("/history 1").await;
    assert_eq!(
        bob.recv().await,
        format!("* last 1 message in #OTHER (ids 2-2, epoch {first_epoch})")
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn a_locked_database_never_delays_delivery() {
    let db = temp_db("locked");
    let server = start_server(&format!("--history-db {}", db.display())).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    // Another process takes the database's write lock and keeps it.
    let locker = rusqlite::Connection::open(&db).expect("open db");
    locker
        .execute_batch("BEGIN EXCLUSIVE;")
        .expect("exclusive lock");
    let started = std::time::Instant::now();
    for i in 0..20 {
        alice.send(&format!("while locked {i}")).await;
        assert_eq!(bob.recv().await, format!("<alice> while locked {i}"));
    }
    // The history writer waits up to seconds for the lock; delivery never did.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "delivery waited on the database: {:?}",
        started.elapsed()
    );
    locker.execute_batch("ROLLBACK;").expect("unlock");
    drop(locker);
    alice.send("after").await;
    assert_eq!(bob.recv().await, "<alice> after");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

/// Starts the built chatd with the database `db` given by `flag`, expecting it to refuse at
/// start; returns what it said.
async fn refused_start(flag: &str, db: &std::path::Path) -> String {
    let output = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--tcp", "0", "--bind", "127.0.0.1", flag])
            .arg(db)
            // A chatd that wrongly starts serving must not outlive the failed test.
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chatd exits in time")
    .expect("run chatd");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_a_clear_startup_error() {
    let db = temp_db("junk");
    std::fs::write(&db, vec![0x42; 16 * 1024]).expect("write junk");
    let stderr = refused_start("--history-db", &db).await;
    assert!(
        stderr.contains("cannot open history database")
            && stderr.contains(&db.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn a_database_whose_tables_have_another_shape_is_refused_at_start_naming_the_table() {
    for (table, create) in [
        ("history", "CREATE TABLE history (room TEXT, said TEXT)"),
        (
            "accounts",
            "CREATE TABLE accounts (key TEXT PRIMARY KEY, password TEXT)",
        ),
    ] {
        let db = temp_db(&format!("shape-{table}"));
        rusqlite::Connection::open(&db)
            .and_then(|conn| conn.execute_batch(create))
            .expect("another program's table");
        let stderr = refused_start("--db", &db).await;
        assert!(
            stderr.contains(&format!("table {table} has columns")),
            "{stderr}"
        );
        let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    }
}

#[tokio::test]
async fn since_an_id_of_another_epoch_is_answered_clearly_not_served() {
    // Without a database each start is a new epoch: ids start over at 1.
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("said in the first run").await;
    alice.send("/history").await;
    let header = alice.recv().await;
    assert!(
        header.starts_with("* last 1 message in #lobby (ids 1-1, epoch "),
        "{header}"
    );
    let first = epoch_of(&header);
    server.shutdown().await;

    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("said in the second run").await;
    bob.send("/history 1").await;
    let second = epoch_of(&bob.recv().await);
    assert_ne!(first, second, "a restart without a database is a new epoch");
    bob.expect("* end of history").await;
    // Line 0 of the old run: not the new run's line 1 under the same number.
    bob.send(&format!("/history since 0@{first}")).await;
    assert_eq!(
        bob.recv().await,
        format!(
            "! message id 0@{first} is of history epoch {first}, but ids now are of epoch \
             {second} (the server's history started over since); nothing is replayed after \
             it: /history shows the last lines"
        )
    );
    // The current epoch's ids, qualified or plain, are served.
    for since in [
        format!("0@{second}"),
        "0".to_string(),
        format!("0@{}", second.to_uppercase()),
    ] {
        bob.send(&format!("/history since {since}")).await;
        assert_eq!(
            bob.recv().await,
            format!("* last 1 message in #lobby (ids 1-1, epoch {second})")
        );
        assert_eq!(replayed(&bob.recv().await), "<bob> said in the second run");
        bob.expect("* end of history").await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_new_database_is_a_new_epoch_and_the_same_one_keeps_its_epoch() {
    let db = temp_db("epoch");
    let flags = format!("--db {}", db.display());
    let server = start_server(&flags).await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("kept").await;
    alice.send("/history").await;
    let first = epoch_of(&alice.recv().await);
    server.shutdown().await;

    let server = start_server(&flags).await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send(&format!("/history since 0@{first}")).await;
    assert_eq!(
        bob.recv().await,
        format!("* last 1 message in #lobby (ids 1-1, epoch {first})")
    );
    assert_eq!(replayed(&bob.recv().await), "<alice> kept");
    server.shutdown().await;

    // The database replaced by a new one: its ids start over, in an epoch of its own.
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    let db = temp_db("epoch");
    let server = start_server(&format!("--db {}", db.display())).await;
    let mut carol = TcpClient::with_nick(server.tcp, "carol").await;
    carol.send(&format!("/history since 0@{first}")).await;
    let refused = carol.recv().await;
    assert!(
        refused.starts_with(&format!(
            "! message id 0@{first} is of history epoch {first}"
        )),
        "{refused}"
    );
    assert!(
        !refused.contains(&format!("now are of epoch {first}")),
        "{refused}"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}
