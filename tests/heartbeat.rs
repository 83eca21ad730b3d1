//! UDP heartbeat eviction, with a short interval so the test is quick.
mod common;

use std::time::Duration;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn silent_peer_is_evicted_and_pinging_peer_stays() {
    // Eviction after two intervals: 400 ms of silence.
    let server = start_server("--heartbeat 200ms").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let silent = UdpClient::join(server.udp).await;
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
                _ = tokio::time::sleep(Duration::from_millis(80)) => {}
            }
        }
        pinger
    });

    let started = tokio::time::Instant::now();
    let skipped = watcher
        .expect(&format!("* {} left (timed out)", silent.name))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
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
    watcher.send("/who").await;
    assert_eq!(watcher.recv().await, "* 2 here:");
    let who = [watcher.recv().await, watcher.recv().await];
    assert!(who.contains(&format!("*   {pinger_name} (udp)")), "{who:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn any_datagram_counts_as_proof_of_life() {
    let server = start_server("--heartbeat 200ms").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let talker = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", talker.name)).await;
    let silent = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", silent.name)).await;
    // Chat lines instead of pings, well inside the 400 ms window each time.
    let mut seen = Vec::new();
    for i in 0..8 {
        talker.send(&format!("line {i}")).await;
        seen.extend(watcher.expect(&format!("<{}> line {i}", talker.name)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.send("/who").await;
    seen.extend(watcher.expect(&format!("*   {} (udp)", talker.name)).await);
    assert!(
        seen.iter()
            .any(|l| l == &format!("* {} left (timed out)", silent.name)),
        "the silent peer was evicted meanwhile: {seen:?}"
    );
    server.shutdown().await;
}
