//! Issue 15 §3: a room's lines go out to its UDP peers in batches (`sendmmsg`), several events per
//! round; every peer still gets every line once, each sender's lines in the order they were sent,
//! whether they came over TCP or UDP, one line or several per datagram. (The fallback to one
//! `sendto` per datagram is tested in `src/transport/udp/batch.rs`, where the refusal is faked.)
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{name_from_welcome, start_server, TcpClient, TIMEOUT};
use tokio::net::UdpSocket;

const PEERS: usize = 100;
/// Lines each of the two senders sends, in a burst.
const LINES: usize = 30;

/// Joins a UDP peer with a receive buffer big enough for the burst, and returns it with its name.
async fn join(server: SocketAddr) -> (Arc<UdpSocket>, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    // The kernel caps it at net.core.rmem_max; the default already holds a few hundred lines.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
    socket.connect(server).await.expect("connect udp");
    socket.send(b"#ping#").await.expect("send ping");
    let mut buf = vec![0u8; 2048];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("welcome in time")
        .expect("recv welcome");
    let welcome = String::from_utf8_lossy(&buf[..len]).into_owned();
    (Arc::new(socket), name_from_welcome(welcome.trim_end()))
}

/// Reads datagrams until `chat` lines starting with `<` have arrived, checking each datagram is
/// one line; returns those chat lines in arrival order.
async fn read_chat(socket: Arc<UdpSocket>, chat: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 2048];
    while lines.len() < chat {
        let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {} of {chat} lines arrived: {lines:?}", lines.len()))
            .expect("recv");
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let line = text.strip_suffix('\n').expect("datagram ends its line");
        assert!(!line.contains('\n'), "one line per datagram: {text:?}");
        if line.starts_with('<') {
            lines.push(line.to_string());
        }
    }
    lines
}

#[tokio::test]
async fn a_burst_reaches_every_udp_peer_once_and_in_each_senders_order() {
    let server = start_server("--rate off --max-per-ip 1000").await;
    let mut tcp = TcpClient::with_nick(server.tcp, "teller").await;
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(join(server.udp).await);
    }
    // Peer 0 sends too; it gets the TCP sender's lines only.
    let readers: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, (socket, _))| {
            let want = if i == 0 { LINES } else { 2 * LINES };
            tokio::spawn(read_chat(Arc::clone(socket), want))
        })
        .collect();
    let (udp_sender, udp_name) = &peers[0];
    for i in (0..LINES).step_by(3) {
        // Three lines per datagram: each is a message of its own.
        let datagram = format!("u {i}\nu {}\nu {}\n", i + 1, i + 2);
        udp_sender.send(datagram.as_bytes()).await.expect("send");
        tcp.send(&format!("t {i}")).await;
        tcp.send(&format!("t {}", i + 1)).await;
        tcp.send(&format!("t {}", i + 2)).await;
    }
    let from_tcp: Vec<String> = (0..LINES).map(|i| format!("<teller> t {i}")).collect();
    let from_udp: Vec<String> = (0..LINES).map(|i| format!("<{udp_name}> u {i}")).collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let got = tokio::time::timeout(TIMEOUT, reader)
            .await
            .expect("reader in time")
            .expect("reader did not panic");
        let of = |prefix: &str| -> Vec<String> {
            got.iter()
                .filter(|l| l.starts_with(prefix))
                .cloned()
                .collect()
        };
        assert_eq!(of("<teller> "), from_tcp, "peer {i}: TCP sender's lines");
        let udp_lines = of(&format!("<{udp_name}> "));
        if i == 0 {
            assert!(udp_lines.is_empty(), "no echo of its own lines");
        } else {
            assert_eq!(udp_lines, from_udp, "peer {i}: UDP sender's lines");
        }
    }
    server.shutdown().await;
}
