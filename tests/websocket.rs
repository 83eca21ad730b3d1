//! Browser members over WebSocket (`--http`, `/ws`): the same protocol and the same rules as TCP,
//! one text frame per line.
mod common;
#[path = "common/ws.rs"]
mod ws;

use std::time::Duration;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use ws::{ping_flood, WsClient};

#[tokio::test]
async fn a_websocket_member_chats_with_tcp_and_udp_members_across_rooms() {
    let server = start_server("").await;
    let mut web = WsClient::with_nick(server.http, "webby").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", tcp.name)).await;
    tcp.send("/nick tcpy").await;
    web.expect(&format!("* {} is now known as tcpy", tcp.name))
        .await;
    let udp = UdpClient::join(server.udp).await;
    web.expect(&format!("* {} joined", udp.name)).await;

    web.send("hello from a browser").await;
    tcp.expect("<webby> hello from a browser").await;
    udp.expect("<webby> hello from a browser").await;
    tcp.send("hello back").await;
    web.expect("<tcpy> hello back").await;
    udp.send("and from udp").await;
    web.expect(&format!("<{}> and from udp", udp.name)).await;

    web.send("/who").await;
    let mut who = Vec::new();
    web.expect("* 3 here:").await;
    for _ in 0..3 {
        who.push(web.recv().await);
    }
    assert!(
        who.contains(&"*   webby (web) (you)".to_string()),
        "{who:?}"
    );
    assert!(who.contains(&"*   tcpy (tcp)".to_string()), "{who:?}");

    // Into another room: only those there hear it, in both directions.
    web.send("/join dev").await;
    web.expect("* you are in #dev with 0 others").await;
    tcp.send("/join dev").await;
    web.expect("* tcpy joined #dev").await;
    web.send("in dev").await;
    tcp.expect("<webby> in dev").await;
    tcp.send("dev reply").await;
    web.expect("<tcpy> dev reply").await;
    udp.send("lobby only").await;
    web.send("/rooms").await;
    let listed = web.expect("* 2 rooms:").await;
    assert!(
        listed.iter().all(|l| !l.contains("lobby only")),
        "lobby chat leaked into #dev: {listed:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_page_from_another_site_cannot_open_a_socket() {
    let server = start_server("--allow-origin https://app.example").await;
    let own = format!("http://{}", server.http);
    let refused = ws::open(server.http, Some("http://evil.example")).await;
    assert_eq!(refused.err(), Some(403));
    let other_port = ws::open(server.http, Some("http://127.0.0.1:1")).await;
    assert_eq!(other_port.err(), Some(403));
    // The page's own origin, and one listed with --allow-origin, are let in.
    let same = ws::open(server.http, Some(&own)).await.expect("own origin");
    WsClient::welcomed(same).await;
    let listed = ws::open(server.http, Some("https://app.example"))
        .await
        .expect("listed origin");
    WsClient::welcomed(listed).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reading_websocket_is_cut_off_by_the_send_queue_while_others_get_everything() {
    let server = start_server("--sendq 65536 --rate off").await;
    let mut reader = WsClient::connect(server.http).await;
    // Greeted, then never read again.
    let stuck = WsClient::connect(server.http).await;
    reader.expect(&format!("* {} joined", stuck.name)).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    reader.expect(&format!("* {} joined", sender.name)).await;

    // 1.5 MB of room traffic: far more than 64 KiB plus both sides' socket buffers.
    let pad = "w".repeat(500);
    let total = 3000;
    let from = sender.name.clone();
    let send = async {
        for i in 0..total {
            sender.send(&format!("{i} {pad}")).await;
        }
        sender
    };
    let receive = async {
        let mut left = None;
        for i in 0..total {
            loop {
                let line = reader.recv().await;
                if line.starts_with(&format!("* {} left", stuck.name)) {
                    left = Some(line);
                    continue;
                }
                assert_eq!(line, format!("<{from}> {i} {pad}"));
                break;
            }
        }
        (reader, left)
    };
    let (_sender, (mut reader, left)) = tokio::join!(send, receive);
    let left = match left {
        Some(line) => line,
        None => {
            let skipped = reader
                .expect(&format!("* {} left (too slow)", stuck.name))
                .await;
            assert!(skipped.is_empty(), "{skipped:?}");
            format!("* {} left (too slow)", stuck.name)
        }
    };
    assert_eq!(left, format!("* {} left (too slow)", stuck.name));
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test]
async fn a_dead_tab_that_answers_no_ping_is_let_go_within_two_heartbeats() {
    // Heartbeats no shorter than 300 ms: the live tab below answers pings only while this test's
    // task is polled, and a loaded machine may not poll it for a couple of hundred milliseconds.
    let server = start_server("--heartbeat 300ms").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    // Connected and greeted, then never polled again: its pings go unanswered.
    let dead = ws::open(server.http, None).await.expect("upgrade");
    let name = watcher.expect_match(|l| l.ends_with(" joined")).await;
    assert!(name.is_empty());
    let started = std::time::Instant::now();
    let left = watcher
        .expect_match(|l| l.ends_with(" left (ping timeout)"))
        .await;
    assert!(left.is_empty(), "{left:?}");
    assert!(
        started.elapsed() < TIMEOUT,
        "noticed only after {:?}",
        started.elapsed()
    );
    drop(dead);

    // A live tab answers its pings (tungstenite does as it reads) and stays.
    let mut live = WsClient::connect(server.http).await;
    watcher.expect(&format!("* {} joined", live.name)).await;
    let stay = tokio::time::timeout(Duration::from_millis(1200), live.recv()).await;
    assert!(stay.is_err(), "a live tab got {stay:?}");
    live.send("still here").await;
    watcher.expect(&format!("<{}> still here", live.name)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn lines_follow_the_tcp_rules_for_length_control_characters_and_flooding() {
    let server = start_server("--max-line 64 --rate 2/s --burst 3 --flood-kick 1s").await;
    let mut web = WsClient::connect(server.http).await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", tcp.name)).await;
    web.send(&"x".repeat(100)).await;
    web.expect("! line too long (max 64 bytes); discarded")
        .await;
    // Control characters are removed as over TCP; a frame with a line break is two lines.
    web.send("bell\u{7}ed").await;
    tcp.expect(&format!("<{}> belled", web.name)).await;
    web.send("one\ntwo").await;
    tcp.expect(&format!("<{}> one", web.name)).await;
    tcp.expect(&format!("<{}> two", web.name)).await;
    for i in 0..50 {
        web.send(&format!("flood {i}")).await;
    }
    let rest = web.expect_close().await;
    assert!(
        rest.contains(&"! disconnected: flooding".to_string()),
        "{rest:?}"
    );
    tcp.expect(&format!("* {} left (flooding)", web.name)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_then_sends_a_close_frame() {
    let server = start_server("").await;
    let mut web = WsClient::connect(server.http).await;
    server.shutdown().await;
    assert_eq!(web.expect_close().await, vec!["* server shutting down"]);
}

/// The closing handshake as RFC 6455 has it (and the Autobahn suite checks: contrib/autobahn/):
/// a tab that closes gets a close frame back, where chatd used to drop the connection without one
/// (browsers saw 1006, an abnormal close).
#[tokio::test]
async fn a_tab_that_closes_gets_its_close_frame_answered() {
    let server = start_server("").await;
    let mut web = WsClient::connect(server.http).await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", tcp.name)).await;
    web.send_message(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "tab closed".into(),
    })))
    .await;
    assert_eq!(web.close_code().await, Some(1001));
    tcp.expect(&format!("* {} left", web.name)).await;
    server.shutdown().await;
}

/// A peer that breaks the protocol is told which rule it broke, with RFC 6455's close code: a
/// message over the size limit (1009), text that is not UTF-8 (1007), a reserved bit (1002).
/// chatd used to close all three as normal (1000).
#[tokio::test]
async fn a_broken_frame_is_closed_with_the_code_that_says_why() {
    let server = start_server("").await;
    let too_big = chatd::transport::ws::max_message(4096) + 1;
    let not_utf8 = Frame::message(vec![b'a', 0xff, b'b'], OpCode::Data(Data::Text), true);
    let mut reserved = Frame::message(b"hi".to_vec(), OpCode::Data(Data::Text), true);
    reserved.header_mut().rsv2 = true;
    let cases = [
        (Message::text("x".repeat(too_big)), 1009),
        (Message::Frame(not_utf8), 1007),
        (Message::Frame(reserved), 1002),
    ];
    for (message, code) in cases {
        let mut web = WsClient::connect(server.http).await;
        web.send_message(message).await;
        assert_eq!(web.close_code().await, Some(code));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_member_registers_like_a_tcp_one() {
    // Account commands finish on the blocking pool and come back through the member's controls,
    // which the WebSocket reader waits on as the TCP reader does.
    let dir = std::env::temp_dir().join(format!("chatd-ws-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("chatd.db");
    let server = start_server(&format!(
        "--history 0 --argon2-memory 64 --argon2-passes 1 --db {}",
        db.display()
    ))
    .await;
    let mut web = WsClient::with_nick(server.http, "wanda").await;
    web.send("/register hunter2hunter2").await;
    web.expect("* wanda is registered to you; next time: /login wanda PASSWORD")
        .await;
    web.send("/who").await;
    web.expect("*   wanda (web, registered) (you)").await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_tab_in_a_busy_room_still_gets_pinged_and_stays() {
    // 300 ms heartbeats: shorter ones would let a stall of the reading task on a loaded machine
    // pass for a tab that stopped answering pings.
    let server = start_server("--heartbeat 300ms --rate off --sendq off").await;
    let mut web = WsClient::connect(server.http).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", sender.name)).await;
    // Traffic without a pause for well over two heartbeats, so the writer always has a line
    // ready; the tab only reads (tungstenite answers pings as it reads) and never says anything.
    let from = sender.name.clone();
    let flood = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut i = 0u64;
        while started.elapsed() < Duration::from_millis(2000) {
            sender.send(&format!("busy {i} {}", "b".repeat(200))).await;
            i += 1;
        }
        sender.send("done").await;
        sender
    });
    let done = format!("<{from}> done");
    let mut lines = 0u64;
    loop {
        let line = web.recv().await;
        assert!(!line.starts_with('!'), "after {lines} lines: {line:?}");
        if line == done {
            break;
        }
        lines += 1;
        assert!(lines < 10_000_000, "never got {done:?}");
    }
    let _sender = flood.await.expect("sender");
    server.shutdown().await;
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn a_ping_flood_that_never_reads_is_paced_then_let_go() {
    // Pings are paced like lines, and a flood past 2 s is kicked.
    let server = start_server("--sendq 65536 --flood-kick 2s").await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    assert!(
        ping_flood(server.http).await.is_some(),
        "a client that only pings and never reads was never let go"
    );
    // Everyone else went on chatting.
    ann.send("still here").await;
    bob.expect("<ann> still here").await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_flood_control_a_ping_flood_still_cannot_grow_the_server() {
    let args = [
        "--http",
        "0",
        "--bind",
        "127.0.0.1",
        "--rate",
        "off",
        "--sendq",
        "65536",
    ];
    let (child, http, _, mut lines) = common::spawn_listening(&args, "info", "http").await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id().expect("running");
    let before = rss_kib(pid);
    ping_flood(http).await;
    let grown = rss_kib(pid).saturating_sub(before);
    // 26 MB of pongs were owed; the write buffer holds the send queue plus one message.
    assert!(grown < 12 * 1024, "the server grew by {grown} KiB");
}

/// `chatd --http PORT` alone is a server: the page and its WebSocket members, nothing else.
#[tokio::test]
async fn chatd_with_only_http_serves_websocket_members() {
    let (mut child, http, _, _lines) =
        common::spawn_listening(&["--http", "0", "--bind", "127.0.0.1"], "info", "http").await;
    let mut ann = WsClient::with_nick(http, "ann").await;
    let mut bob = WsClient::with_nick(http, "bob").await;
    bob.send("hello over the page only").await;
    ann.expect("<bob> hello over the page only").await;
    child.kill().await.expect("stop chatd");
}

#[tokio::test]
async fn a_batched_member_gets_a_burst_in_few_frames_every_line_in_order() {
    // With /ws?batch=1 (what the page asks for), the lines waiting for a member leave as one
    // frame, "\n" between them: none lost, none split, none reordered.
    let server = start_server("--rate off").await;
    let mut web = WsClient::connect_batched(server.http).await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", tcp.name)).await;
    let sent: Vec<String> = (0..300).map(|i| format!("burst line {i}")).collect();
    let mut burst = sent.join("\n");
    burst.push('\n');
    tcp.send_raw(burst.as_bytes()).await;

    let expected: Vec<String> = sent.iter().map(|l| format!("<{}> {l}", tcp.name)).collect();
    let mut got = Vec::new();
    let mut most_in_a_frame = 0;
    while got.len() < expected.len() {
        match web.frame().await {
            Some(Message::Text(text)) => {
                let lines: Vec<&str> = text.split('\n').collect();
                most_in_a_frame = most_in_a_frame.max(lines.len());
                got.extend(lines.into_iter().map(str::to_string));
            }
            Some(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!(
                "a text frame expected after {} lines, got {other:?}",
                got.len()
            ),
        }
    }
    assert_eq!(got, expected);
    assert!(most_in_a_frame > 1, "300 lines came one frame each");

    // The other direction is unchanged, and the member can still be told goodbye in a frame.
    web.send("hello").await;
    tcp.expect(&format!("<{}> hello", web.name)).await;
    server.shutdown().await;
    assert!(web
        .expect_close()
        .await
        .contains(&"* server shutting down".to_string()));
}
