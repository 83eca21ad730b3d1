//! Issue 10 §5, "Lines glued together": a datagram holding several lines is several messages, and
//! over TCP a lone `\r` ends a line, so neither transport glues one member's lines into one.
mod common;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn udp_datagram_with_two_lines_is_two_messages() {
    // What `printf 'first line\nsecond line\n' | nc -u -w1 HOST PORT` sends: one datagram.
    let server = start_server("").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::bind(server.udp).await;
    udp.send_raw(b"first line\nsecond line\n").await;
    let name = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{name}> first line"));
    assert_eq!(watcher.recv().await, format!("<{name}> second line"));
    // Every line end counts, `\r\n` as one.
    udp.send_raw(b"third\r\nfourth\rfifth").await;
    for line in ["third", "fourth", "fifth"] {
        assert_eq!(watcher.recv().await, format!("<{name}> {line}"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn each_line_of_a_datagram_is_subject_to_the_rate() {
    let server = start_server("--rate 1 --burst 2").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut other = TcpClient::with_nick(server.tcp, "other").await;
    let udp = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", udp.name)).await;
    udp.send_raw(b"one\ntwo\nthree\nfour\n").await;
    assert_eq!(udp.recv().await, "! slow down");
    assert_eq!(watcher.recv().await, format!("<{}> one", udp.name));
    assert_eq!(watcher.recv().await, format!("<{}> two", udp.name));
    // The rest of the datagram was over the rate and dropped: the next line in the room is this.
    other.send("marker").await;
    assert_eq!(watcher.recv().await, "<other> marker");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stranger_gets_one_challenge_per_datagram_not_per_line() {
    let server = start_server("--udp-validate").await;
    let udp = UdpClient::bind(server.udp).await;
    udp.send_raw(b"a line long enough to be challenged\nanother such line, to be ignored\n")
        .await;
    let challenge = udp.recv().await;
    let cookie = challenge
        .strip_prefix("* to join, send: #pong# ")
        .unwrap_or_else(|| panic!("a challenge, got {challenge:?}"))
        .to_string();
    udp.send(&format!("#pong# {cookie}")).await;
    // Had the second line earned a challenge too, it would come before the welcome.
    let welcome = udp.recv().await;
    assert!(welcome.starts_with("* welcome"), "{welcome:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn lone_cr_ends_a_tcp_line() {
    // No partial timeout, so nothing but the `\r` can end these lines.
    let server = start_server("--partial-timeout off").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    sender.send_raw(b"a\rb\n").await;
    assert_eq!(watcher.recv().await, format!("<{}> a", sender.name));
    assert_eq!(watcher.recv().await, format!("<{}> b", sender.name));
    server.shutdown().await;
}

#[tokio::test]
async fn client_ending_lines_with_cr_alone_is_not_joined_until_too_long() {
    let server = start_server("--partial-timeout off --max-line 32").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    // Together well over the 32-byte cap: joined, they would be refused as one long line.
    sender
        .send_raw(b"the first line\rthe second line\rthe third line\r")
        .await;
    for line in ["the first line", "the second line", "the third line"] {
        assert_eq!(watcher.recv().await, format!("<{}> {line}", sender.name));
    }
    sender.send_raw(b"/nick crlover\r").await;
    // No `! line too long` came first.
    assert_eq!(sender.recv().await, "* you are now known as crlover");
    server.shutdown().await;
}

#[tokio::test]
async fn crlf_split_across_reads_is_one_line_end() {
    for flags in ["--partial-timeout off", "--partial-timeout 100ms"] {
        let server = start_server(flags).await;
        let mut watcher = TcpClient::connect(server.tcp).await;
        let mut sender = TcpClient::connect(server.tcp).await;
        watcher.expect(&format!("* {} joined", sender.name)).await;
        sender.send_raw(b"split\r").await;
        // The line is complete at its `\r`: it does not wait for a `\n` or for the timeout.
        assert_eq!(watcher.recv().await, format!("<{}> split", sender.name));
        sender.send_raw(b"\nnext\r").await;
        assert_eq!(watcher.recv().await, format!("<{}> next", sender.name));
        sender.send_raw(b"\n/nick crlf\r\n").await;
        // The `\n` halves glued nothing together. (As empty lines they would not show either; the
        // codec's unit tests pin down that they are no lines at all.)
        assert_eq!(sender.recv().await, "* you are now known as crlf");
        server.shutdown().await;
    }
}
