//! TCP and UDP members share one room.
mod common;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn tcp_to_udp_and_udp_to_tcp() {
    let server = start_server("").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    tcp.expect(&format!("* {} joined", udp.name)).await;

    tcp.send("from tcp").await;
    assert_eq!(udp.recv().await, format!("<{}> from tcp", tcp.name));

    udp.send("from udp\n").await;
    assert_eq!(tcp.recv().await, format!("<{}> from udp", udp.name));
    server.shutdown().await;
}

#[tokio::test]
async fn udp_to_udp_without_self_echo() {
    let server = start_server("").await;
    let a = UdpClient::join(server.udp).await;
    let b = UdpClient::join(server.udp).await;
    a.expect(&format!("* {} joined", b.name)).await;
    a.send("one").await;
    assert_eq!(b.recv().await, format!("<{}> one", a.name));
    b.send("two").await;
    // Had a been echoed "one", it would come first.
    assert_eq!(a.recv().await, format!("<{}> two", b.name));
    server.shutdown().await;
}

#[tokio::test]
async fn first_chat_datagram_joins_and_is_delivered() {
    let server = start_server("").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    let mut udp = UdpClient::bind(server.udp).await;
    udp.send("hello without a ping").await;
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    udp.name = common::name_from_welcome(&welcome);
    tcp.expect(&format!("* {} joined", udp.name)).await;
    assert_eq!(
        tcp.recv().await,
        format!("<{}> hello without a ping", udp.name)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pings_are_never_shown() {
    let server = start_server("").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    tcp.expect(&format!("* {} joined", udp.name)).await;
    udp.send("#ping#").await;
    udp.send("#ping#\n").await;
    udp.send("after pings").await;
    assert_eq!(tcp.recv().await, format!("<{}> after pings", udp.name));
    server.shutdown().await;
}

#[tokio::test]
async fn lines_sent_together_stay_separate_lines_and_in_order_with_commands() {
    // A pasted block reaches the room as one event (one wake-up per reader); UDP peers must still
    // get one datagram per line, and a command in the middle must stay in its place.
    let server = start_server("").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    tcp.expect(&format!("* {} joined", udp.name)).await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    udp.expect(&format!("* {} joined", watcher.name)).await;

    tcp.send_raw(b"one\ntwo\r\nthree\n/nick paster\nfour\n")
        .await;
    let old = tcp.name.clone();
    let expected = [
        format!("<{old}> one"),
        format!("<{old}> two"),
        format!("<{old}> three"),
        format!("* {old} is now known as paster"),
        "<paster> four".to_string(),
    ];
    for line in &expected {
        assert_eq!(&udp.recv().await, line, "UDP peer, one datagram per line");
        assert_eq!(&watcher.recv().await, line, "TCP member");
    }
    server.shutdown().await;
}
