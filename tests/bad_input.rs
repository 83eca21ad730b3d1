//! Over-long lines, invalid UTF-8 and terminal escapes: a clear answer, nothing else lost.
mod common;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn over_long_tcp_line_is_refused_and_the_connection_keeps_working() {
    // No partial-line timer: a stall between the writes below must not turn a piece into a line.
    let server = start_server("--max-line 100 --partial-timeout off").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;

    alice.send("before").await;
    // A long line arriving in pieces, followed by a normal one in the same write.
    alice.send_raw(&[b'x'; 60]).await;
    alice.send_raw(&[b'y'; 60]).await;
    alice.send_raw(&[b'z'; 5000]).await;
    alice.send_raw(b"\nafter\n").await;
    assert_eq!(
        alice.recv().await,
        "! line too long (max 100 bytes); discarded"
    );
    assert_eq!(bob.recv().await, format!("<{}> before", alice.name));
    assert_eq!(bob.recv().await, format!("<{}> after", alice.name));

    // Exactly at the limit is fine.
    let exact = "e".repeat(100);
    alice.send(&exact).await;
    assert_eq!(bob.recv().await, format!("<{}> {exact}", alice.name));
    server.shutdown().await;
}

#[tokio::test]
async fn over_long_datagram_is_refused_not_truncated() {
    let server = start_server("--max-line 100").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", udp.name)).await;
    udp.send(&"u".repeat(101)).await;
    assert_eq!(
        udp.recv().await,
        "! datagram too long (max 100 bytes); discarded"
    );
    udp.send("short").await;
    // Nothing of the long datagram reached the room.
    assert_eq!(watcher.recv().await, format!("<{}> short", udp.name));
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_is_relayed_lossily() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;
    alice.send_raw(b"caf\xc3 \xff\xfe ok\n").await;
    assert_eq!(
        bob.recv().await,
        format!("<{}> caf\u{fffd} \u{fffd}\u{fffd} ok", alice.name)
    );
    let udp = UdpClient::join(server.udp).await;
    bob.expect(&format!("* {} joined", udp.name)).await;
    udp.send_raw(b"\x80binary\x00junk\x01").await;
    assert_eq!(
        bob.recv().await,
        format!("<{}> \u{fffd}binaryjunk", udp.name)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn escape_sequences_and_control_characters_are_stripped() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;
    alice
        .send_raw(b"\x1b[2J\x1b[31mred\x1b[0m \x1b]0;pwned\x07title\x07\x08 tab\there\n")
        .await;
    assert_eq!(
        bob.recv().await,
        format!("<{}> red title tab\there", alice.name)
    );
    // A line that is nothing but escapes is dropped rather than sent empty.
    alice.send_raw(b"\x1b[H\x1b[2J\n").await;
    alice.send("next").await;
    assert_eq!(bob.recv().await, format!("<{}> next", alice.name));
    server.shutdown().await;
}
