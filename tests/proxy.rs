//! `--proxy-protocol` and `--trusted-proxy`: behind a trusted proxy members get their real
//! address (PROXY v1/v2 on TCP, `X-Forwarded-For` on `/ws`), so per-address limits count them
//! apart; headers from anyone else, or malformed ones, close the connection; a direct netcat user
//! is not kept waiting.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{other_address, start_server, TcpClient, OPER_ROOT, TIMEOUT};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

fn v1(source: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 {port} 9000\r\n").into_bytes()
}

fn v2(source: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let destination: SocketAddr = "127.0.0.1:9000".parse().expect("address");
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    )
    .build()
    .expect("v2 header")
}

/// Connects (from 127.0.0.1), sends `header` at once and reads the first line back.
async fn through_proxy(addr: SocketAddr, header: &[u8]) -> (TcpClient, String) {
    let mut client = TcpClient::connect_raw(addr).await;
    client.send_raw(header).await;
    let first = client.recv().await;
    if first.starts_with("* ") && first.contains(" - you are ") {
        client.name = common::name_from_welcome(&first);
    }
    (client, first)
}

#[tokio::test]
async fn proxy_headers_from_a_trusted_proxy_give_members_their_real_address() {
    let server = start_server("--proxy-protocol --trusted-proxy 127.0.0.1 --max-per-ip 1").await;
    let (mut ann, welcome) = through_proxy(server.tcp, &v1("203.0.113.7", 40000)).await;
    assert!(
        welcome.ends_with("(203.0.113.7:40000); type /help for commands"),
        "{welcome}"
    );
    let source: SocketAddr = "198.51.100.9:4242".parse().expect("address");
    // The header and the first line in one segment: the line is the member's, not the header's.
    let mut bytes = v2(source);
    bytes.extend_from_slice(b"/nick bob\n");
    let (mut bob, welcome) = through_proxy(server.tcp, &bytes).await;
    assert!(welcome.contains("(198.51.100.9:4242)"), "{welcome}");
    bob.expect("* you are now known as bob").await;
    // One member per real address: the proxy's own address is not what counts.
    let (mut again, refusal) = through_proxy(server.tcp, &v1("203.0.113.7", 40001)).await;
    assert!(
        refusal.contains("too many connections from your address"),
        "{refusal}"
    );
    again.expect_closed().await;
    ann.send("hello through the proxy").await;
    bob.expect(&format!("<{}> hello through the proxy", ann.name))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_source_closes_the_connection() {
    let server = start_server("--proxy-protocol --trusted-proxy 10.0.0.0/8").await;
    for header in [
        v1("203.0.113.7", 40000),
        v2("198.51.100.9:4242".parse().unwrap()),
    ] {
        let mut forged = TcpClient::connect_raw(server.tcp).await;
        forged.send_raw(&header).await;
        let lines = forged.expect_closed().await;
        assert!(
            lines.iter().all(|l| !l.contains("203.0.113.7")),
            "{lines:?}"
        );
    }
    // Sent after the welcome, once the server is no longer looking at connection starts, it is
    // still caught as the first bytes.
    let mut late = TcpClient::connect(server.tcp).await;
    late.send_raw(&v1("203.0.113.7", 40000)).await;
    late.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_or_missing_header_from_a_trusted_proxy_closes_the_connection() {
    let server = start_server("--proxy-protocol --trusted-proxy 127.0.0.1").await;
    let mut broken = TcpClient::connect_raw(server.tcp).await;
    broken
        .send_raw(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n")
        .await;
    assert_eq!(
        broken.expect_closed().await,
        Vec::<String>::new(),
        "never a member"
    );
    let mut chatter = TcpClient::connect_raw(server.tcp).await;
    chatter.send_raw(b"hello, no header here\n").await;
    assert_eq!(chatter.expect_closed().await, Vec::<String>::new());
    // A proxy that sends nothing is dropped after the header timeout, not held forever.
    let started = Instant::now();
    let mut silent = TcpClient::connect_raw(server.tcp).await;
    assert_eq!(silent.expect_closed().await, Vec::<String>::new());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_complete_but_malformed_v1_header_is_refused_at_once() {
    let server = start_server("--proxy-protocol --trusted-proxy 127.0.0.1").await;
    let started = Instant::now();
    let mut broken = TcpClient::connect_raw(server.tcp).await;
    broken.send_raw(b"PROXY TCP4 nonsense\r\n").await;
    assert_eq!(broken.expect_closed().await, Vec::<String>::new());
    // Before, this waited out the whole 3 s header timeout; a loaded machine gets 1.5 s of room.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_direct_client_without_a_header_is_welcomed_at_once_and_chats() {
    let server = start_server("--proxy-protocol --trusted-proxy 10.0.0.0/8").await;
    // Like netcat: connects and waits for the welcome before typing anything.
    let started = Instant::now();
    let mut ann = TcpClient::connect(server.tcp).await;
    // Well under the 3 s a header is waited for, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut bob = TcpClient::connect(server.tcp).await;
    // Words that start like a header are still chat.
    ann.send("PROXY server is down again").await;
    bob.expect(&format!("<{}> PROXY server is down again", ann.name))
        .await;
    server.shutdown().await;
}

/// Opens `/ws` from `from` with these `X-Forwarded-For` values; returns the first line.
async fn ws_first_line(http: SocketAddr, from: IpAddr, forwarded: &[&str]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let stream = tokio::time::timeout(TIMEOUT, socket.connect(http))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut request = format!("ws://{http}/ws")
        .into_client_request()
        .expect("request");
    for value in forwarded {
        request.headers_mut().append(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let (mut ws, _) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("handshake in time")
            .expect("upgrade");
    let first = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("no line: {other:?}"),
            }
        }
    };
    let line = tokio::time::timeout(TIMEOUT, first)
        .await
        .expect("a line in time");
    // Kept open (leaked into a task) so the member stays counted.
    tokio::spawn(async move { while ws.next().await.is_some() {} });
    line
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let server = start_server("--trusted-proxy 127.0.0.1 --max-per-ip 1").await;
    let first = ws_first_line(server.http, [127, 0, 0, 1].into(), &["203.0.113.7"]).await;
    assert!(first.contains("(203.0.113.7:0)"), "{first}");
    // A forged leftmost entry does not help: the hop the proxy saw is what counts.
    let second = ws_first_line(
        server.http,
        [127, 0, 0, 1].into(),
        &["203.0.113.7, 198.51.100.9"],
    )
    .await;
    assert!(second.contains("(198.51.100.9:0)"), "{second}");
    let third = ws_first_line(server.http, [127, 0, 0, 1].into(), &["203.0.113.7"]).await;
    assert!(
        third.contains("too many connections from your address"),
        "{third}"
    );
    // From an address that is not a proxy the header is ignored: both count as 127.0.0.2.
    let direct = ws_first_line(server.http, other_address(), &["192.0.2.1"]).await;
    assert!(direct.contains("(127.0.0.2:"), "{direct}");
    let spoofed = ws_first_line(server.http, other_address(), &["192.0.2.2"]).await;
    assert!(
        spoofed.contains("too many connections from your address"),
        "{spoofed}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_ban_hits_the_real_address_not_the_proxy() {
    let server = start_server(&format!(
        "--proxy-protocol --trusted-proxy 127.0.0.1 --argon2-memory 64 --argon2-passes 1 {OPER_ROOT}"
    ))
    .await;
    // The operator connects directly, from an address that is not a proxy.
    let mut root = TcpClient::connect_from(server.tcp, other_address()).await;
    root.send("/login root pw-root").await;
    root.expect("* you are logged in as root").await;
    let (mut abuser, _) = through_proxy(server.tcp, &v1("203.0.113.66", 1000)).await;
    let (mut neighbour, _) = through_proxy(server.tcp, &v1("203.0.113.67", 1001)).await;
    root.send("/gban 203.0.113.66 1h abuse").await;
    root.expect_match(|l| l.starts_with("* address 203.0.113.66 is banned from the server"))
        .await;
    abuser.expect_closed().await;
    let (mut again, refusal) = through_proxy(server.tcp, &v1("203.0.113.66", 1002)).await;
    assert_eq!(refusal, "! you are banned from this server");
    again.expect_closed().await;
    // Everyone else behind the same proxy is unaffected.
    neighbour.send("still here").await;
    root.expect(&format!("<{}> still here", neighbour.name))
        .await;
    let (_, welcome) = through_proxy(server.tcp, &v1("203.0.113.68", 1003)).await;
    assert!(welcome.contains("(203.0.113.68:1003)"), "{welcome}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_header_is_logged_with_the_peer() {
    let (_child, addr, _, mut lines) = common::spawn_logged_chatd(
        &["--proxy-protocol", "--trusted-proxy", "127.0.0.1"],
        "info",
    )
    .await;
    let mut broken = TcpClient::connect_raw(addr).await;
    broken
        .send_raw(b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n")
        .await;
    broken.expect_closed().await;
    let logged = async {
        loop {
            match lines.next_line().await.expect("read log") {
                Some(line) if line.contains("closing connection") => return line,
                Some(_) => {}
                None => panic!("chatd exited"),
            }
        }
    };
    let line = tokio::time::timeout(TIMEOUT, logged)
        .await
        .expect("the refusal is logged");
    assert!(line.contains("malformed PROXY header"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}
