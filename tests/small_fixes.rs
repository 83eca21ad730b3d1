//! Issue 10 §6, one test per finding: control words over TCP, quoted quit reasons, replies to
//! `/nick` and `/msg` aimed at oneself, consistent trimming, invisible characters, the motd, and
//! the shutdown notice for a member far behind the room.
mod common;

use clap::Parser;
use tokio::io::AsyncReadExt;

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};
use common::{name_from_welcome, start_server, TcpClient, UdpClient, TIMEOUT};

#[tokio::test]
async fn ping_and_pong_typed_over_tcp_are_relayed_as_chat() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    let udp = UdpClient::join(server.udp).await;
    bob.expect(&format!("* {} joined", udp.name)).await;

    alice.send("#ping#").await;
    alice.send("#pong# 0123456789abcdef").await;
    assert_eq!(bob.recv().await, "<alice> #ping#");
    assert_eq!(bob.recv().await, "<alice> #pong# 0123456789abcdef");
    assert_eq!(udp.recv().await, "<alice> #ping#");
    assert_eq!(udp.recv().await, "<alice> #pong# 0123456789abcdef");
    // Over UDP they are still the heartbeat, never shown.
    udp.send("#ping#").await;
    udp.send("after").await;
    assert_eq!(bob.recv().await, format!("<{}> after", udp.name));
    server.shutdown().await;
}

#[tokio::test]
async fn a_quit_reason_is_quoted_so_it_cannot_pass_for_the_servers_own() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    bob.send("/quit timed out").await;
    bob.expect_closed().await;
    assert_eq!(alice.recv().await, "* bob left: \"timed out\"");

    let udp = UdpClient::join(server.udp).await;
    alice.expect(&format!("* {} joined", udp.name)).await;
    udp.send("/quit flooding").await;
    assert_eq!(
        alice.recv().await,
        format!("* {} left: \"flooding\"", udp.name)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn nick_to_ones_current_name_says_so() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    bob.send("/nick bob").await;
    assert_eq!(bob.recv().await, "* you are already bob");
    // Nobody else hears of it: alice's next line is bob's next message.
    bob.send("still bob").await;
    assert_eq!(alice.recv().await, "<bob> still bob");
    server.shutdown().await;
}

#[tokio::test]
async fn msg_to_oneself_answers_that_is_you() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/msg ALICE note to self").await;
    assert_eq!(alice.recv().await, "! that is you");
    let udp = UdpClient::join(server.udp).await;
    udp.send(&format!("/msg {} hi me", udp.name)).await;
    assert_eq!(udp.recv().await, "! that is you");
    server.shutdown().await;
}

#[tokio::test]
async fn leading_whitespace_is_trimmed_consistently() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    alice.send(" //x").await;
    assert_eq!(bob.recv().await, "<alice> /x");
    alice.send("\t//shrug").await;
    assert_eq!(bob.recv().await, "<alice> /shrug");
    alice.send(" /who").await;
    assert_eq!(alice.recv().await, "* 2 here:");
    server.shutdown().await;
}

#[tokio::test]
async fn invisible_and_format_characters_are_stripped_from_relayed_text() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.expect_renamed("bob").await;
    let udp = UdpClient::join(server.udp).await;
    bob.expect(&format!("* {} joined", udp.name)).await;
    // Zero-width space, word joiner, BOM, a tag letter, soft hyphen, line separator, Hangul
    // filler, Arabic letter mark, an inhibit-swapping control, a paragraph separator.
    let sneaky =
        "a\u{200b}b\u{2060}c\u{feff}d\u{e0041}e\u{ad}f\u{2028}g\u{3164}h\u{61c}i\u{206a}j\u{2029}k";
    alice.send(sneaky).await;
    assert_eq!(bob.recv().await, "<alice> abcdefghijk");
    assert_eq!(udp.recv().await, "<alice> abcdefghijk");
    udp.send(sneaky).await;
    assert_eq!(bob.recv().await, format!("<{}> abcdefghijk", udp.name));
    // Text that only consists of them is nothing at all.
    alice.send("\u{200b}\u{2060}\u{115f}").await;
    alice.send("visible").await;
    assert_eq!(bob.recv().await, "<alice> visible");
    server.shutdown().await;
}

#[tokio::test]
async fn the_motd_is_sanitised_so_a_newline_cannot_forge_a_line() {
    let args = ServerArgs::try_parse_from([
        "chatd",
        "--tcp",
        "0",
        "--udp",
        "0",
        "--bind",
        "127.0.0.1",
        "--motd",
        "hello\n* alice is now known as admin\u{202e}\u{200b}",
    ])
    .expect("args");
    let listeners = Listeners::bind(&args).await.expect("bind");
    let (tcp, udp) = (
        listeners.tcp_addr().expect("tcp"),
        listeners.udp_addr().expect("udp"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(args.config(), listeners, async move {
        let _ = stopped.await;
    }));
    let mut client = TcpClient::connect_raw(tcp).await;
    let greeting = "* hello* alice is now known as admin - you are ";
    let welcome = client.recv().await;
    assert!(welcome.starts_with(greeting), "{welcome:?}");
    let peer = UdpClient::bind(udp).await;
    peer.send("#ping#").await;
    let peer_welcome = peer.recv().await;
    assert!(peer_welcome.starts_with(greeting), "{peer_welcome:?}");
    // The next thing the TCP member hears is the UDP join, not a forged line.
    assert_eq!(
        client.recv().await,
        format!("* {} joined", name_from_welcome(&peer_welcome))
    );
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("server stops in time")
        .expect("server task")
        .expect("the server ran");

    // An over-long motd is refused with a clear message rather than sent in every welcome.
    let err = ServerArgs::try_parse_from(["chatd", "--motd", &"m".repeat(2000)])
        .expect_err("a 2000-byte motd");
    assert!(err.to_string().contains("at most 1024 bytes"), "{err}");
}

/// Reads everything until the server closes (bounded by a timeout per read and a count).
async fn read_all(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for _ in 0..1_000_000 {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close within {TIMEOUT:?}"),
        }
    }
    panic!("the server never closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_still_gets_the_shutdown_notice_as_its_last_line() {
    // Without a send-queue limit a member may fall far behind the room and stay connected.
    let server = start_server("--rate off --sendq off --backlog 4096 --max-line 65000").await;
    let mut behind = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(server.tcp))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut sender = TcpClient::connect(server.tcp).await;
    // The member must be in the room before the traffic starts: had it joined later, the lines
    // before its join would reach it as timestamped history instead of live lines.
    sender.send("/who").await;
    sender.expect("* 2 here:").await;

    // 4 MB of room traffic that the member does not read: far more than the sockets between it
    // and the server hold, so most of it is still in the room's ring at shutdown.
    let pad = "b".repeat(64_000);
    let lines = 64;
    for i in 0..lines {
        sender.send(&format!("{i} {pad}")).await;
    }
    // Replies come after everything before them was handled: all of it is in the room now.
    sender.send("/who").await;
    sender.expect("* 2 here:").await;

    // It reads only once the server has gone.
    server.shutdown().await;
    let got = read_all(&mut behind).await;
    let text = String::from_utf8_lossy(&got);
    let received: Vec<&str> = text.lines().collect();
    assert!(
        received.len() < lines + 2,
        "the member was meant to be far behind, yet read everything"
    );
    assert_eq!(
        received.last().copied(),
        Some("* server shutting down"),
        "after {} lines ({} bytes)",
        received.len(),
        got.len()
    );
    // What came before it are whole lines: the one cut short by the shutdown was completed.
    for line in &received[1..received.len() - 1] {
        assert!(
            line.starts_with(&format!("<{}> ", sender.name)) || line.starts_with("* "),
            "a whole line, not a fragment: {:.60}",
            line
        );
    }
}
