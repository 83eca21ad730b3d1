//! Server info (issue 11 §2): `--name` and `--meta` describe the server, `/info` answers one line of
//! JSON on both transports, and a UDP `#info#` is answered without joining, within three times the
//! request's bytes and a per-source rate.
mod common;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};
use serde_json::Value;
use tokio::net::UdpSocket;

const FLAGS: &str = "--name lab-7 --meta height=178 --meta weight=60.5 --meta size=XXL \
                     --meta id=\"1527406014\"";

fn parse(line: &str) -> Value {
    assert!(line.starts_with("{\"name\":"), "an info document: {line}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("JSON ({e}): {line}"))
}

/// `#info#` padded with spaces to `size` bytes.
fn request(size: usize) -> String {
    format!("{:<size$}", "#info#")
}

/// The next line that is an info document, over TCP.
async fn tcp_info(client: &mut TcpClient) -> Value {
    client.send("/info").await;
    loop {
        let line = client.recv().await;
        if line.starts_with('{') {
            return parse(&line);
        }
    }
}

/// Sends `text` from `socket` to `to` and returns the answer datagram, whole.
async fn ask(socket: &UdpSocket, to: std::net::SocketAddr, text: &str) -> String {
    socket.send_to(text.as_bytes(), to).await.expect("send");
    recv(socket).await
}

async fn recv(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 70_000];
    let (len, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    String::from_utf8(buf[..len].to_vec()).expect("utf-8")
}

async fn stranger() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test]
async fn info_over_tcp_is_one_line_of_json_describing_the_server() {
    let server = start_server(FLAGS).await;
    let mut ann = TcpClient::with_nick(server.tcp, "ann").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join lab").await;
    bob.expect_match(|l| l.starts_with("* you are in #lab"))
        .await;
    let doc = tcp_info(&mut ann).await;
    assert_eq!(doc["name"], "lab-7");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["motd"], "welcome to chatd");
    assert_eq!(doc["members"], 2);
    assert_eq!(
        doc["rooms"],
        serde_json::json!([{"name": "lab", "members": 1}, {"name": "lobby", "members": 1}])
    );
    // The test server serves HTTP too, so browser members are listed.
    assert_eq!(doc["transports"], serde_json::json!(["tcp", "udp", "web"]));
    assert!(doc["uptime_s"].is_u64());
    assert_eq!(
        doc["meta"],
        serde_json::json!({"height": 178, "weight": 60.5, "size": "XXL", "id": "1527406014"})
    );
    assert!(
        doc.get("cluster").is_none(),
        "no cluster without --cluster: {doc}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_udp_member_gets_the_same_document_with_info() {
    let server = start_server(FLAGS).await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/info").await;
    let line = loop {
        let line = udp.recv().await;
        if line.starts_with('{') {
            break line;
        }
    };
    let doc = parse(&line);
    assert_eq!(doc["name"], "lab-7");
    assert_eq!(doc["members"], 1);
    assert_eq!(doc["meta"]["height"], 178);
    server.shutdown().await;
}

#[tokio::test]
async fn a_padded_info_datagram_is_answered_without_joining() {
    let server = start_server(FLAGS).await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let socket = stranger().await;
    let answer = ask(&socket, server.udp, &format!("{}\n", request(512))).await;
    let line = answer.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'), "one line: {answer:?}");
    assert!(answer.len() <= 3 * 513);
    let doc = parse(line);
    assert_eq!(doc["members"], 1, "the asker did not join");
    assert_eq!(doc["name"], "lab-7");
    // Asking again changes nothing either, and the watcher saw nobody come.
    let again = parse(ask(&socket, server.udp, &request(512)).await.trim_end());
    assert_eq!(again["members"], 1);
    assert_eq!(tcp_info(&mut watcher).await["members"], 1);
    watcher.send("/who").await;
    let skipped = watcher.expect("* 1 here:").await;
    assert!(skipped.iter().all(|l| !l.contains("joined")), "{skipped:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_info_answer_is_never_more_than_three_times_the_request() {
    let server = start_server(FLAGS).await;
    let socket = stranger().await;
    // The bare request (6 bytes) earns nothing at all, not even the hint: the first datagram
    // that comes back answers the second request.
    socket.send_to(b"#info#", server.udp).await.expect("send");
    let hint = ask(&socket, server.udp, &request(30)).await;
    assert!(hint.len() <= 90, "{hint:?}");
    let needed: usize = hint
        .strip_prefix("! pad #info# to ")
        .and_then(|rest| rest.strip_suffix(" bytes\n"))
        .unwrap_or_else(|| panic!("a padding hint, got {hint:?}"))
        .parse()
        .expect("a byte count");
    // One byte short is still a hint; padded as asked, the document fits in three times that.
    let short = ask(&socket, server.udp, &request(needed - 1)).await;
    assert!(short.starts_with("! pad #info#"), "{short:?}");
    let answer = ask(&socket, server.udp, &request(needed)).await;
    assert!(
        answer.len() <= 3 * needed,
        "{} > 3 x {needed}",
        answer.len()
    );
    assert_eq!(parse(answer.trim_end())["name"], "lab-7");
    server.shutdown().await;
}

#[tokio::test]
async fn info_requests_are_rate_limited_per_source() {
    let server = start_server(&format!("{FLAGS} --rate 0.01 --burst 2")).await;
    let greedy = stranger().await;
    // Limits are per IP address: the other source is another loopback address.
    let other = UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    for _ in 0..6 {
        greedy
            .send_to(request(512).as_bytes(), server.udp)
            .await
            .expect("send");
    }
    // Another source is not held back by the first; once its answer is here, every answer to
    // the first (sent before it, in order, over loopback) is here too.
    parse(ask(&other, server.udp, &request(512)).await.trim_end());
    let mut answered = 0;
    let mut buf = vec![0u8; 70_000];
    while let Ok((len, _)) = greedy.try_recv_from(&mut buf) {
        parse(std::str::from_utf8(&buf[..len]).expect("utf-8").trim_end());
        answered += 1;
    }
    assert_eq!(answered, 2, "the burst, then nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn an_info_document_from_a_stranger_is_not_a_chat_line() {
    // Two servers must not talk to each other: a forged `#info#` makes one send its document to
    // the other, which must drop it rather than seat the first as a member.
    let server = start_server(FLAGS).await;
    let socket = stranger().await;
    socket
        .send_to(br#"{"name":"other","version":"0.1.0"}"#, server.udp)
        .await
        .expect("send");
    let answer = ask(&socket, server.udp, &request(512)).await;
    let doc = parse(answer.trim_end());
    assert_eq!(doc["members"], 0, "the document did not join anyone");
    server.shutdown().await;
}

#[test]
fn bad_meta_and_names_are_refused_at_startup() {
    for args in [
        &["--meta", "novalue"][..],
        &["--meta", "a b=1"],
        &["--meta", "a=1", "--meta", "a=2"],
        &["--name", ""],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--tcp", "0", "--bind", "127.0.0.1"])
            .args(args)
            .output()
            .expect("run chatd");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("meta") || stderr.contains("name"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn info_answers_count_against_the_udp_reply_budget() {
    // The budget refills one answer a second, so the check below means something only when the
    // second stranger's request came within that second; on a machine stalled for longer the
    // round is tried again (at most 3 rounds).
    for round in 1..=3 {
        let server = start_server(&format!("{FLAGS} --udp-reply-budget 1 --rate off")).await;
        // A member first: its own replies are not unsolicited, so it can show what the server did.
        let member = UdpClient::join(server.udp).await;
        let first = stranger().await;
        let second = UdpSocket::bind("127.0.0.2:0")
            .await
            .expect("bind 127.0.0.2");
        let spent = tokio::time::Instant::now();
        parse(ask(&first, server.udp, &request(512)).await.trim_end());
        // The budget (one a second) is spent: this one goes unanswered...
        second
            .send_to(request(512).as_bytes(), server.udp)
            .await
            .expect("send");
        // ...which shows once the member's answer, asked for after it, is here.
        member.send("/info").await;
        loop {
            if member.recv().await.starts_with('{') {
                break;
            }
        }
        if spent.elapsed() >= std::time::Duration::from_millis(900) {
            eprintln!(
                "round {round} took {:?}: the budget may have refilled",
                spent.elapsed()
            );
            server.shutdown().await;
            continue;
        }
        let mut buf = vec![0u8; 70_000];
        assert!(
            second.try_recv_from(&mut buf).is_err(),
            "no answer past the budget"
        );
        server.shutdown().await;
        return;
    }
    panic!("three rounds in a row took a second or more: the machine is too slow to check this");
}
