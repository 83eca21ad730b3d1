//! Send-queue limit, idle timeout and per-address limits.
mod common;

use std::net::SocketAddr;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_disconnected_past_its_send_queue() {
    let server = start_server("--rate off --sendq 65536").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let stuck = TcpClient::with_nick(server.tcp, "stuck").await;
    watcher.expect_renamed("stuck").await;
    let mut sender = TcpClient::with_nick(server.tcp, "sender").await;
    watcher.expect_renamed("sender").await;
    // Bounded: 20 MB at most, far past the stuck member's socket buffers plus 64 KiB.
    let pad = "s".repeat(1000);
    let mut kicked = false;
    for i in 0..20_000 {
        sender.send(&format!("{i} {pad}")).await;
        if i % 50 == 49 {
            // Drain what the watcher got so far and look for the verdict.
            let lines = watcher.expect(&format!("<sender> {i} {pad}")).await;
            if lines.iter().any(|l| l == "* stuck left (too slow)") {
                kicked = true;
                break;
            }
        }
    }
    assert!(kicked, "the stuck member was never disconnected");
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_member_is_disconnected_when_asked() {
    let server = start_server("--idle-timeout 300ms").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut idle = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", idle.name)).await;
    // The watcher keeps talking, the idle one does not.
    let mut seen = Vec::new();
    for i in 0..100 {
        watcher.send(&format!("tick {i}")).await;
        let line = idle.recv().await;
        if line == "! disconnected: idle timeout" {
            break;
        }
        seen.push(line);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rest = idle.expect_closed().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(seen.len() < 100, "never disconnected");
    watcher
        .expect(&format!("* {} left (idle timeout)", idle.name))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_may_hold_only_max_per_ip_members_across_transports() {
    let server = start_server("--max-per-ip 3").await;
    let _a = TcpClient::connect(server.tcp).await;
    let mut b = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    b.expect(&format!("* {} joined", udp.name)).await;
    let mut refused = TcpClient::connect_raw(server.tcp).await;
    assert_eq!(
        refused.recv().await,
        "! too many connections from your address"
    );
    refused.expect_closed().await;
    let late_udp = UdpClient::bind(server.udp).await;
    late_udp.send("#ping# please").await;
    assert_eq!(
        late_udp.recv().await,
        "! too many connections from your address"
    );

    // Another loopback address is another source: it gets in.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse::<SocketAddr>().expect("addr"))
        .expect("bind 127.0.0.2");
    let stream = tokio::time::timeout(common::TIMEOUT, socket.connect(server.tcp))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut lines =
        tokio_util::codec::FramedRead::new(stream, tokio_util::codec::LinesCodec::new());
    let welcome = tokio::time::timeout(common::TIMEOUT, futures::StreamExt::next(&mut lines))
        .await
        .expect("welcome in time");
    let welcome = welcome.expect("a line").expect("utf-8");
    assert!(welcome.contains("(127.0.0.2:"), "{welcome}");

    // A slot frees up when a member from the full address leaves.
    let gone = b.name.clone();
    drop(b);
    udp.expect(&format!("* {gone} left")).await;
    let mut again = TcpClient::connect_raw(server.tcp).await;
    assert!(again.recv().await.starts_with("* welcome"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_instead_of_spinning() {
    // 48 descriptors: a dozen for the runtime and sockets, the rest for members.
    let (child, tcp, _udp) = common::spawn_chatd(&["--max-per-ip", "1000"], Some(48)).await;
    let pid = child.id().expect("pid");
    let mut greeted = Vec::new();
    let mut waiting = Vec::new();
    // Bounded: 60 connections; the kernel queues those the server cannot accept.
    for _ in 0..60 {
        let mut client = TcpClient::connect_raw(tcp).await;
        match tokio::time::timeout(std::time::Duration::from_millis(150), client.recv_line()).await
        {
            Ok(Some(line)) => {
                assert!(line.starts_with("* welcome"), "{line}");
                greeted.push(client);
            }
            Ok(None) => panic!("server closed a connection"),
            Err(_) => waiting.push(client),
        }
    }
    assert!(
        !waiting.is_empty(),
        "the descriptor limit was never reached"
    );
    assert!(greeted.len() > 20, "only {} greeted", greeted.len());

    // Out of descriptors with connections pending: the acceptor must sleep, not spin.
    let before = common::cpu_time(pid);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let used = common::cpu_time(pid) - before;
    assert!(
        used < std::time::Duration::from_millis(500),
        "busy while stuck: {used:?}"
    );

    // Free some descriptors: the waiting clients are accepted and greeted.
    greeted.truncate(greeted.len() - waiting.len().min(greeted.len()));
    for client in &mut waiting {
        let line = client.recv().await;
        assert!(line.starts_with("* welcome"), "{line}");
    }
    drop(child);
}
