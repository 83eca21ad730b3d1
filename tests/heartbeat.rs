//! UDP heartbeat eviction, with a short interval so the test is quick.
mod common;

use std::time::Duration;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn silent_peer_is_evicted_and_pinging_peer_stays() {
    // Eviction after two intervals: 1 s of silence, wide enough that a loaded machine's stalls
    // cannot make a pinging peer look silent.
    let server = start_server("--heartbeat 500ms").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let silent = UdpClient::join(server.udp).await;
    // The silent peer's last datagram went out just before this, so its clock starts no later.
    let started = tokio::time::Instant::now();
    watcher.expect(&format!("* {} joined", silent.name)).await;
    let pinger = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", pinger.name)).await;

    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pinger_name = pinger.name.clone();
    let pinging = tokio::spawn(async move {
        // Bounded: at most 100 pings (10 s), normally stopped much sooner.
        for _ in 0..100 {
            pinger.send("#ping#").await;
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        pinger
    });

    let skipped = watcher
        .expect(&format!("* {} left (timed out)", silent.name))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "evicted too early"
    );
    assert!(
        !skipped.iter().any(|l| l.contains(&pinger_name.to_string())),
        "{skipped:?}"
    );

    // Several more intervals pass; the pinger is still a member and still gets messages.
    watcher.send("still there?").await;
    let _ = stop.send(());
    let pinger = tokio::time::timeout(common::TIMEOUT, pinging)
        .await
        .expect("pinger stops")
        .expect("pinger task");
    pinger.expect("<watcher> still there?").await;
    // A fresh proof of life, so the check below does not race the pinger's own eviction.
    pinger.send("#ping#").await;
    watcher.send("/who").await;
    assert_eq!(watcher.recv().await, "* 2 here:");
    let who = [watcher.recv().await, watcher.recv().await];
    assert!(who.contains(&format!("*   {pinger_name} (udp)")), "{who:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn any_datagram_counts_as_proof_of_life() {
    // Eviction after 1 s of silence.
    let server = start_server("--heartbeat 500ms").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let talker = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", talker.name)).await;
    let silent = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", silent.name)).await;
    // Chat lines instead of pings, well inside the 1 s window each time, until the silent peer
    // is evicted (bounded: 60 lines, 6 s).
    let silent_left = format!("* {} left (timed out)", silent.name);
    let mut seen = Vec::new();
    for i in 0..60 {
        talker.send(&format!("line {i}")).await;
        seen.extend(watcher.expect(&format!("<{}> line {i}", talker.name)).await);
        if seen.contains(&silent_left) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.send("/who").await;
    seen.extend(watcher.expect(&format!("*   {} (udp)", talker.name)).await);
    assert!(
        seen.contains(&silent_left),
        "the silent peer was evicted meanwhile: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with(&format!("* {} left", talker.name))),
        "the talker was never silent for two intervals: {seen:?}"
    );
    server.shutdown().await;
}
