//! `--cluster` presence: `/who`, `/rooms` and `/info` show the whole cluster, names are unique across it
//! (claimed in a JetStream key-value bucket), and a node killed with SIGKILL is noticed within
//! `--cluster-timeout`: its members are shown leaving and their names are free again.
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use chatd::cluster::names::{bucket_key, Holder};
use common::{spawn_chatd, start_server, TcpClient, UdpClient, TIMEOUT};
use nats::Nats;

#[tokio::test]
async fn who_and_rooms_list_the_whole_cluster() {
    let nats = Nats::start("who").await;
    let a = start_server(&nats.flags("a")).await;
    let b = start_server(&nats.flags("b")).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let cy = UdpClient::join(b.udp).await;
    ann.expect(&format!("* {} joined", cy.name)).await;
    let mut bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    bob.send("/join rust").await;
    // The move reached a before its notice did.
    ann.expect("* bob left #lobby").await;
    ann.send("/who").await;
    ann.expect("* 2 here:").await;
    assert_eq!(ann.recv().await, "*   ann (tcp) (you)");
    assert_eq!(ann.recv().await, format!("*   {} (udp on b)", cy.name));
    ann.send("/rooms").await;
    ann.expect("* 2 rooms:").await;
    assert_eq!(ann.recv().await, "*   #lobby (2 members) (you are here)");
    assert_eq!(ann.recv().await, "*   #rust (1 member)");
    // `/info` counts this node's members, and the cluster's beside them.
    let doc = info(&mut ann).await;
    assert_eq!(doc["members"], 1, "{doc}");
    assert_eq!(
        doc["cluster"],
        serde_json::json!({"name": "chatd", "node": "a", "nodes": 2, "members": 3, "link": "up"}),
        "{doc}"
    );
    // A node that stops says so: its members are shown leaving.
    b.shutdown().await;
    ann.expect(&format!("* {} left (node stopped)", cy.name))
        .await;
    ann.send("/who").await;
    ann.expect("* 1 here:").await;
    let doc = info(&mut ann).await;
    assert_eq!(doc["cluster"]["nodes"], 1, "{doc}");
    assert_eq!(doc["cluster"]["members"], 1, "{doc}");
}

/// Asks for `/info` and returns the document.
async fn info(client: &mut TcpClient) -> serde_json::Value {
    client.send("/info").await;
    for _ in 0..100 {
        let line = client.recv().await;
        if line.starts_with('{') {
            return serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
    panic!("no /info document");
}

#[tokio::test]
async fn a_name_held_by_nobody_known_is_taken_once_its_claim_goes_back_a_moment_later() {
    let nats = Nats::start("free-soon").await;
    let a = start_server(&nats.flags("a")).await;
    let mut taker = TcpClient::connect(a.tcp).await;
    // The first claim opens the names bucket.
    taker.send("/nick warm").await;
    taker.expect("* you are now known as warm").await;
    // Claims by a member nobody here knows of: like one of another node who just left, whose
    // node gives the name back in the background a moment after its leave was seen.
    let names = nats.names_bucket().await;
    let ghost = Holder {
        node: "gone".into(),
        boot: 1,
        id: 7,
    };
    for name in ["seat", "kept"] {
        let created = names.create(bucket_key(&chatd::names::key(name)), ghost.encode());
        tokio::time::timeout(TIMEOUT, created)
            .await
            .expect("in time")
            .expect("claim for the ghost");
    }
    taker.send("/nick seat").await;
    // Given back 100 ms after the claim was asked for: within the second the node keeps trying.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let deleted = names.delete(bucket_key(&chatd::names::key("seat")));
        tokio::time::timeout(TIMEOUT, deleted)
            .await
            .expect("in time")
            .expect("give the claim back");
    });
    taker.expect("* you are now known as seat").await;
    release.await.expect("released");
    // A claim that stays is refused after the few tries, not waited on.
    let asked = Instant::now();
    taker.send("/nick kept").await;
    taker.expect("! that name is taken").await;
    assert!(asked.elapsed() < TIMEOUT, "{:?}", asked.elapsed());
}

#[tokio::test]
async fn two_nodes_claiming_one_name_at_once_exactly_one_wins() {
    let nats = Nats::start("race").await;
    let a = start_server(&nats.flags("a")).await;
    let b = start_server(&nats.flags("b")).await;
    let mut x = TcpClient::connect(a.tcp).await;
    let mut y = TcpClient::connect(b.tcp).await;
    x.expect(&format!("* {} joined", y.name)).await;
    let won = |line: &str, name: &str| line == format!("* you are now known as {name}");
    let mut wins = (0, 0);
    for round in 0..15 {
        let name = format!("racer{round}");
        let command = format!("/nick {name}");
        tokio::join!(x.send(&command), y.send(&command));
        let answer =
            |line: &str| line.starts_with("* you are now known as") || line.starts_with("! ");
        let (mut from_x, mut from_y) = (String::new(), String::new());
        for (client, out) in [(&mut x, &mut from_x), (&mut y, &mut from_y)] {
            loop {
                let line = client.recv().await;
                if answer(&line) {
                    *out = line;
                    break;
                }
            }
        }
        let (x_won, y_won) = (won(&from_x, &name), won(&from_y, &name));
        assert!(
            x_won != y_won,
            "round {round}: exactly one wins: {from_x:?} / {from_y:?}"
        );
        let lost = if x_won { &from_y } else { &from_x };
        assert_eq!(lost, "! that name is taken", "round {round}");
        if x_won {
            wins.0 += 1;
        } else {
            wins.1 += 1;
        }
    }
    assert_eq!(wins.0 + wins.1, 15);
}

#[tokio::test]
async fn a_node_killed_with_sigkill_is_noticed_in_time_and_its_names_are_free() {
    let nats = Nats::start("kill").await;
    let url = nats.url();
    let flags = |node: &'static str| {
        vec![
            "--cluster".to_string(),
            url.clone(),
            "--node".into(),
            node.into(),
            "--cluster-timeout".into(),
            "1s".into(),
        ]
    };
    let (fa, fb) = (flags("a"), flags("b"));
    let (_a, a_tcp, _) =
        spawn_chatd(&fa.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    let (mut b, b_tcp, _) =
        spawn_chatd(&fb.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    let mut watcher = TcpClient::connect(a_tcp).await;
    let mut victim = TcpClient::connect(b_tcp).await;
    watcher.expect(&format!("* {} joined", victim.name)).await;
    victim.send("/nick victim").await;
    victim.expect("* you are now known as victim").await;
    watcher
        .expect(&format!("* {} is now known as victim", victim.name))
        .await;
    watcher.send("/nick victim").await;
    watcher.expect("! that name is taken").await;
    b.start_kill().expect("kill -9 node b");
    let killed = Instant::now();
    watcher.expect("* victim left (node lost)").await;
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_millis(1800),
        "noticed after {noticed:?}, bound 1s (+ one heartbeat)"
    );
    watcher.send("/nick victim").await;
    watcher.expect("* you are now known as victim").await;
    watcher.send("/who").await;
    watcher.expect("* 1 here:").await;
}

/// Members node b holds in the lost-node test: enough to be well over `--announce-max` there,
/// modest for a loaded 2-core machine.
const CROWD: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_with_a_crowd_is_one_summary_line_and_chat_carries_on() {
    let nats = Nats::start("crowd").await;
    let a = start_server(&format!("{} --announce-max 100", nats.flags("a"))).await;
    let url = nats.url();
    let (mut b, b_tcp, _) = spawn_chatd(
        &[
            "--cluster",
            &url,
            "--node",
            "b",
            "--announce-max",
            "100",
            "--max-clients",
            "1000",
        ],
        None,
    )
    .await;
    let mut reader = TcpClient::with_nick(a.tcp, "reader").await;
    let mut amy = TcpClient::with_nick(a.tcp, "amy").await;
    // Ten members from each of 30 loopback addresses, within every per-address limit.
    let mut crowd = Vec::with_capacity(CROWD);
    for batch in 0..CROWD / 10 {
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, batch as u8 + 1));
        let joins = (0..10).map(|_| TcpClient::connect_from(b_tcp, from));
        crowd.extend(futures::future::join_all(joins).await);
    }
    // b's last member is known on a: one more line from a member of b arrives after its join.
    let last = crowd.last_mut().expect("a crowd");
    last.send("all here").await;
    let joined = reader.expect(&format!("<{}> all here", last.name)).await;
    assert!(
        joined.len() <= 101,
        "joins are announced up to --announce-max only: {} lines",
        joined.len()
    );
    b.start_kill().expect("kill -9 node b");
    // The loss, once b has been silent for the timeout: one line, not one per member.
    let wanted = format!("* {CROWD} members left with node b (node lost)");
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let line = tokio::time::timeout_at(deadline, reader.recv_line())
            .await
            .unwrap_or_else(|_| {
                let leaves = before
                    .iter()
                    .filter(|l: &&String| l.contains(" left"))
                    .count();
                panic!("no summary line in time; {leaves} leave lines instead")
            })
            .expect("reader still connected");
        if line == wanted {
            break;
        }
        before.push(line);
        assert!(
            before.len() < 10 * CROWD,
            "no summary line among {} lines, {} of them leaves",
            before.len(),
            before.iter().filter(|l| l.contains(" left")).count()
        );
    }
    let unwanted: Vec<&String> = before
        .iter()
        .filter(|l| l.contains(" left") || l.contains("missed"))
        .collect();
    assert!(
        unwanted.is_empty(),
        "{} lines: {unwanted:?}",
        unwanted.len()
    );
    // Chat said afterwards arrives, with nothing lost or left over between.
    amy.send("still here").await;
    let between = reader.expect("<amy> still here").await;
    assert!(between.is_empty(), "{between:?}");
    reader.send("/who").await;
    reader.expect("* 2 here:").await;
}
