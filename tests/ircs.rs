//! IRC inside TLS (`--ircs`): over a real TLS session with `--self-signed`'s certificate, an IRC
//! client registers, joins a room and talks with a plain TCP (netcat-style) member both ways, and
//! hears the shutdown as `ERROR`; PROXY headers and stalled handshakes are dealt with as on `--tls`;
//! without a certificate the listener is refused at start.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd::client::tls::Verify;
use chatd::config::ServerArgs;
use chatd::server::Listeners;
use common::irc::end_of_welcome;
use common::{connect_with_header, start_server, TcpClient, TIMEOUT};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Connects to `addr` over TLS and registers as `nick`, waiting for the end of the welcome.
async fn ircs(addr: SocketAddr, nick: &str) -> (TcpClient, Vec<String>) {
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut client = register(tcp, nick).await.expect("handshake");
    let welcome = end_of_welcome(&mut client).await;
    (client, welcome)
}

/// Shakes hands over a connected `tcp` (the self-signed certificate is for localhost, unchecked
/// here: a test CA would add nothing) and sends `nick`'s registration.
async fn register(tcp: TcpStream, nick: &str) -> Result<TcpClient, chatd::client::ClientError> {
    let server = format!("localhost:{}", tcp.peer_addr().expect("peer").port());
    let tls = tokio::time::timeout(
        TIMEOUT,
        chatd::client::tls::connect(tcp, &server, &Verify::Insecure),
    )
    .await
    .expect("handshake in time")?;
    let (read, write) = tokio::io::split(tls);
    let mut client = TcpClient::over(read, write);
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick} here")).await;
    Ok(client)
}

#[tokio::test]
async fn irc_over_tls_talks_with_a_netcat_member_both_ways_and_hears_the_shutdown() {
    let server = start_server("--ircs 0 --self-signed --name chatd").await;
    let (mut alice, welcome) = ircs(server.ircs.expect("ircs address"), "alice").await;
    assert!(
        welcome[0].starts_with(":chatd 001 alice :Welcome"),
        "{welcome:?}"
    );
    let _bob = common::irc::meet_a_line_member(&mut alice, server.tcp).await;
    server.shutdown().await;
    let last = alice.expect_closed().await;
    assert!(
        last.iter()
            .any(|l| l.starts_with("ERROR ") && l.contains("server shutting down")),
        "no ERROR at shutdown: {last:?}"
    );
}

#[tokio::test]
async fn ircs_without_a_certificate_is_refused_at_start() {
    let args: ServerArgs = "--ircs 0 --bind 127.0.0.1".parse().expect("arguments");
    let refused = Listeners::bind(&args).await.expect_err("no certificate");
    assert_eq!(
        refused.to_string(),
        "--ircs needs a certificate: --cert PEM --key PEM, or --self-signed"
    );
}

#[tokio::test]
async fn a_trusted_proxy_header_before_the_handshake_gives_the_irc_member_its_real_address() {
    let server = start_server(
        "--ircs 0 --self-signed --proxy-protocol --trusted-proxy 127.0.0.1 --max-per-ip 1",
    )
    .await;
    let ircs = server.ircs.expect("ircs address");
    let v1 = |source: &str, port: u16| {
        format!("PROXY TCP4 {source} 127.0.0.1 {port} 6697\r\n").into_bytes()
    };
    // --max-per-ip 1 counts the addresses the proxy names: two of them, two members.
    let mut ann = register(
        connect_with_header(ircs, None, &v1("203.0.113.7", 40000)).await,
        "ann",
    )
    .await
    .expect("handshake after the header");
    end_of_welcome(&mut ann).await;
    let mut bob = register(
        connect_with_header(ircs, None, &v1("198.51.100.9", 4242)).await,
        "bob",
    )
    .await
    .expect("a second real address");
    end_of_welcome(&mut bob).await;
    // A third from ann's real address is over the limit, though every socket is 127.0.0.1's.
    let mut again = register(
        connect_with_header(ircs, None, &v1("203.0.113.7", 40001)).await,
        "cat",
    )
    .await
    .expect("handshake");
    let refused = again.expect_closed().await;
    assert!(
        refused
            .iter()
            .any(|l| l.starts_with("ERROR ") && l.contains("your address")),
        "not refused for its real address: {refused:?}"
    );
    // A malformed header from the proxy, and any header from elsewhere, close the connection.
    let malformed = connect_with_header(ircs, None, b"PROXY TCP4 nonsense\r\n").await;
    assert!(register(malformed, "dan").await.is_err());
    let stranger =
        connect_with_header(ircs, Some(common::other_address()), &v1("192.0.2.1", 1)).await;
    assert!(register(stranger, "eve").await.is_err());
    drop((ann, bob));
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_in_time() {
    let server = start_server("--ircs 0 --self-signed --tls-handshake-timeout 1500ms").await;
    let addr = server.ircs.expect("ircs address");
    let mut stalled = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, stalled.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "nothing but a close: {read:?}"
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "dropped in time: {took:?}");
    // A real client still gets in afterwards.
    let (alice, _) = ircs(addr, "alice").await;
    drop(alice);
    server.shutdown().await;
}
