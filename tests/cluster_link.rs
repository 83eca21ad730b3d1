//! `--cluster` link loss: when nats-server goes away under traffic, every node keeps serving its
//! own members and tells them; when it is back (same port, same store), presence is resynchronised
//! and nobody who left meanwhile is left behind as a ghost.
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_server, TcpClient};
use nats::Nats;

#[tokio::test]
async fn nodes_carry_on_locally_without_nats_and_resynchronise_when_it_is_back() {
    let mut nats = Nats::start("link").await;
    let a = start_server(&nats.quick_flags("a")).await;
    let b = start_server(&nats.quick_flags("b")).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut amy = TcpClient::with_nick(a.tcp, "amy").await;
    let mut bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    let mut cal = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", cal.name)).await;
    cal.send("/nick cal").await;
    cal.expect("* you are now known as cal").await;
    ann.expect(&format!("* {} is now known as cal", cal.name))
        .await;
    bob.send("before").await;
    ann.expect("<bob> before").await;

    nats.kill().await;
    ann.expect("* cluster link lost").await;
    bob.expect("* cluster link lost").await;
    // Each node goes on serving its own members.
    for i in 0..20 {
        ann.send(&format!("local on a {i}")).await;
    }
    for i in 0..20 {
        amy.expect(&format!("<ann> local on a {i}")).await;
    }
    bob.send("local on b").await;
    cal.expect("<bob> local on b").await;
    // The other node's members are gone from here once it has been silent for the timeout,
    cal.send("/quit").await;
    ann.expect("* bob left (node lost)").await;
    // and the one who left meanwhile must not come back.
    nats.restart().await;
    ann.expect("* cluster link restored").await;
    bob.expect("* cluster link restored").await;
    ann.expect("* bob joined").await;
    ann.send("/who").await;
    ann.expect("* 3 here:").await;
    assert_eq!(ann.recv().await, "*   amy (tcp)");
    assert_eq!(ann.recv().await, "*   ann (tcp) (you)");
    assert_eq!(ann.recv().await, "*   bob (tcp on b)");
    bob.send("after").await;
    ann.expect("<bob> after").await;
    ann.send("hello again").await;
    bob.expect("<ann> hello again").await;
    // cal's name was given back after all: it can be claimed again.
    amy.send("/nick cal").await;
    amy.expect("* you are now known as cal").await;
}

/// The numbers of the `<loud> n N` lines a client gets until `<loud> done`, and its other lines.
async fn loud_numbers(client: &mut TcpClient) -> (Vec<u32>, Vec<String>) {
    let (mut seen, mut other) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        let line = client.recv().await;
        if line == "<loud> done" {
            return (seen, other);
        }
        match line.strip_prefix("<loud> n ").and_then(|n| n.parse().ok()) {
            Some(n) => seen.push(n),
            None => other.push(line),
        }
    }
    panic!("never got <loud> done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_under_a_steady_stream_of_lines_loses_nothing_locally_and_nothing_twice() {
    let mut nats = Nats::start("link-load").await;
    let a = start_server(&format!("{} --rate off", nats.flags("a"))).await;
    let b = start_server(&format!("{} --rate off", nats.flags("b"))).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    ann.expect_renamed("bob").await;
    let mut loud = TcpClient::with_nick(a.tcp, "loud").await;
    bob.expect_renamed("loud").await;
    ann.expect_renamed("loud").await;

    // One line a millisecond from a member of a, across the outage, until 300 lines after the
    // link is back (bounded: 20,000 lines).
    let restored = Arc::new(AtomicBool::new(false));
    let sending = {
        let restored = restored.clone();
        tokio::spawn(async move {
            let mut after = 0;
            for i in 0..20_000u32 {
                loud.send(&format!("n {i}")).await;
                if restored.load(Ordering::SeqCst) {
                    after += 1;
                    if after == 300 {
                        loud.send("done").await;
                        return (loud, i);
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            panic!("the link never came back");
        })
    };
    let bob_reads = tokio::spawn(async move {
        let got = loud_numbers(&mut bob).await;
        (bob, got)
    });
    // Let lines flow, then take NATS away and bring it back while they keep coming.
    let mut on_a = Vec::new();
    for _ in 0..200 {
        on_a.push(ann.recv().await);
    }
    nats.kill().await;
    on_a.extend(ann.expect("* cluster link lost").await);
    nats.restart().await;
    on_a.extend(ann.expect("* cluster link restored").await);
    restored.store(true, Ordering::SeqCst);
    let (rest, other) = loud_numbers(&mut ann).await;
    // Notices only (a long outage may also show the other node's members leaving and coming
    // back); never a missed-lines notice.
    assert!(other.iter().all(|l| l.starts_with("* ")), "on a: {other:?}");
    let mut ann_seen: Vec<u32> = on_a
        .iter()
        .filter_map(|l| l.strip_prefix("<loud> n ").and_then(|n| n.parse().ok()))
        .collect();
    ann_seen.extend(rest);
    let (_loud, last) = sending.await.expect("loud sends");
    let (mut bob, (bob_seen, bob_other)) = bob_reads.await.expect("bob reads");

    // Locally nothing was lost, whatever NATS did.
    assert_eq!(ann_seen, (0..=last).collect::<Vec<_>>(), "a's own member");
    // Across the nodes: in order, never twice, and the stream resumed after the outage.
    assert!(
        bob_other.iter().all(|l| l.starts_with("* ")),
        "on b: {bob_other:?}"
    );
    eprintln!("b got {} of the {} lines", bob_seen.len(), last + 1);
    assert!(
        bob_seen.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {bob_seen:?}"
    );
    assert_eq!(
        bob_seen.last(),
        Some(&last),
        "b hears the lines after the outage"
    );
    // Nobody missing and no ghost on either node, once presence is resynchronised (bounded:
    // 50 tries, 5 s).
    for client in [&mut ann, &mut bob] {
        let mut tries = 0;
        loop {
            client.send("/who").await;
            let count = loop {
                let line = client.recv().await;
                if line.ends_with(" here:") {
                    break line;
                }
            };
            if count == "* 3 here:" {
                break;
            }
            tries += 1;
            assert!(tries < 50, "never 3 here: {count}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Where the tests' members connect from, unless they need another address.
const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// How long a cluster whose NATS lost its store may take to take names again.
const REMADE_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn names_work_again_soon_after_nats_lost_its_store() {
    let mut nats = Nats::start("lost-store").await;
    let cheap = "--argon2-memory 64 --argon2-passes 1";
    let a = start_server(&format!("{} {cheap}", nats.flags("a"))).await;
    let b = start_server(&format!("{} {cheap}", nats.flags("b"))).await;
    // An account registered before the loss, known to both nodes.
    nats.account(a.tcp, "cora", LOCAL).await;
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    let mut bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/nick bob").await;
    bob.expect("* you are now known as bob").await;
    ann.expect(&format!("* {} is now known as bob", bob.name))
        .await;

    // Back on the same port with an empty store dir: the names bucket is gone with every claim.
    nats.restart_empty().await;
    ann.expect("* cluster link restored").await;
    bob.expect("* cluster link restored").await;
    let lost = Instant::now();
    loop {
        bob.send("/nick robert").await;
        let line = loop {
            let line = bob.recv().await;
            if line.starts_with("* you are now known as") || line.starts_with("! ") {
                break line;
            }
        };
        if line == "* you are now known as robert" {
            break;
        }
        assert!(
            lost.elapsed() < REMADE_WITHIN,
            "/nick still refused after {:?}: {line}",
            lost.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ann.expect("* bob is now known as robert").await;
    // A login claims its name too. The account reached b through its watch of the bucket before
    // the loss, a moment after it was stored: b is asked again if it did not know it yet.
    let mut back = TcpClient::connect(b.tcp).await;
    let mut answer = String::new();
    for _ in 0..3 {
        back.send("/login cora pw-cora").await;
        let line = loop {
            let line = back.recv().await;
            if line.starts_with("* you are logged in as") || line.starts_with("! ") {
                break line;
            }
        };
        answer = line;
        if answer != "! wrong name or password" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answer, "* you are logged in as cora");
    nats.claimed("cora").await;
    // An account registered now reaches the state bucket, made again, and so the other node.
    nats.account(a.tcp, "dora", LOCAL).await;
    back.send("/login dora pw-dora").await;
    back.expect("* you are logged in as dora").await;
    // The names held before are claimed again in the new bucket, so they stay their holders'
    // cluster-wide; the one given up is free.
    tokio::time::timeout(REMADE_WITHIN, nats.claimed("ann"))
        .await
        .expect("ann's name claimed again in time");
    nats.claimed("robert").await;
    ann.send("/nick bob").await;
    ann.expect("* you are now known as bob").await;
    bob.expect("* ann is now known as bob").await;
}

#[tokio::test]
async fn state_set_after_nats_lost_its_store_reaches_the_other_node() {
    let mut nats = Nats::start("lost-state").await;
    let a = start_server(&nats.flags("a")).await;
    let b = start_server(&nats.flags("b")).await;
    // ann opens #den on a, so operates it; vic sits in it on b, from another address.
    let mut ann = TcpClient::with_nick(a.tcp, "ann").await;
    ann.send("/join #den").await;
    ann.expect("* you are in #den with 0 others").await;
    let elsewhere = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let mut vic = TcpClient::connect_from(b.tcp, elsewhere).await;
    // b has heard that ann is in #den before vic opens the room there (else vic operates it on b).
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries < 50, "b never heard that ann is in #den");
        vic.send("/rooms").await;
        let header = loop {
            let line = vic.recv().await;
            if line.starts_with("* ") && (line.ends_with(" rooms:") || line.ends_with(" room:")) {
                break line;
            }
        };
        let count: usize = header[2..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a room count");
        let mut listed = Vec::new();
        for _ in 0..count {
            listed.push(vic.recv().await);
        }
        if listed.iter().any(|l| l == "*   #den (1 member)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    vic.send("/join #den").await;
    vic.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    ann.expect(&format!("* {} joined #den", vic.name)).await;

    nats.restart_empty().await;
    ann.expect("* cluster link restored").await;
    vic.expect("* cluster link restored").await;
    // A room ban goes to the state bucket, made again, and b's watch of it applies it.
    ann.send("/ban 127.0.0.2 1h").await;
    ann.expect("* address 127.0.0.2 is banned from #den for 1h")
        .await;
    let mut seen = Vec::new();
    let banned = tokio::time::timeout(REMADE_WITHIN, async {
        while let Some(line) = vic.recv_line().await {
            if line == "! you are banned from #den" {
                return true;
            }
            seen.push(line);
        }
        false
    })
    .await;
    assert_eq!(
        banned,
        Ok(true),
        "b never applied the ban set after the loss; vic got {seen:?}"
    );
}
