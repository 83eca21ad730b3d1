//! Replies (errors, `/who`, `/help`, private messages) count against `--sendq` like room traffic,
//! and arrive whole or end with an explicit notice: never silently cut.
mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use chatd::protocol::HELP;
use common::{name_from_welcome, start_server, TcpClient, UdpClient, TIMEOUT};

/// An unknown command whose error reply is about 4 KB, since it quotes the word back.
fn long_unknown_command() -> String {
    format!("/{}\n", "x".repeat(4000))
}

/// Connects a raw stream and reads its welcome line byte by byte, leaving nothing buffered, so the
/// test decides exactly what is read afterwards; returns the stream and the member's name.
async fn connect_raw(server: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    let name = read_welcome(&mut stream).await;
    (stream, name)
}

/// Reads the welcome line byte by byte; returns the member's name.
async fn read_welcome(stream: &mut TcpStream) -> String {
    let mut welcome = Vec::new();
    while !welcome.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut byte))
            .await
            .expect("welcome in time")
            .expect("read welcome");
        assert_eq!(n, 1, "closed before the welcome ended: {welcome:?}");
        welcome.push(byte[0]);
        assert!(welcome.len() < 4096, "welcome too long");
    }
    let welcome = String::from_utf8(welcome).expect("utf-8 welcome");
    name_from_welcome(welcome.trim_end())
}

/// Reads until the server closes the stream (or resets it); panics if it stays open.
async fn expect_closed(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reader_spamming_long_unknown_commands_is_disconnected_past_sendq() {
    // Default flood control: 30 commands, mostly within the burst, nowhere near a flood kick.
    // Before, the replies filled the kernel's buffers and 64 queued lines, the rest were dropped,
    // and the non-reader stayed forever.
    let server = start_server("--sendq 16384").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    // A small receive buffer, so a few replies of 4 KB fill both sides' buffers and the queue.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut spammer = tokio::time::timeout(TIMEOUT, socket.connect(server.tcp))
        .await
        .expect("connect in time")
        .expect("connect");
    let name = read_welcome(&mut spammer).await;
    watcher.expect(&format!("* {name} joined")).await;
    let command = long_unknown_command();
    for _ in 0..30 {
        if tokio::time::timeout(TIMEOUT, spammer.write_all(command.as_bytes()))
            .await
            .is_err()
        {
            panic!("the server stopped reading the spammer");
        }
    }
    watcher.expect(&format!("* {name} left (too slow)")).await;
    expect_closed(&mut spammer).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reader_spamming_as_fast_as_it_can_is_disconnected_past_sendq() {
    // Flood control off, so nothing but the send queue can cut the spammer off, and it writes
    // faster than the server reads: its own writer must still get its turn to check the queue.
    let server = start_server("--sendq 65536 --rate off").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let (spammer, name) = connect_raw(server.tcp).await;
    watcher.expect(&format!("* {name} joined")).await;
    let (mut unread, mut write) = spammer.into_split();
    let command = long_unknown_command();
    let spam = tokio::spawn(async move {
        // 2,000 replies of 4 KB: 8 MB, far past 64 KiB plus both sides' socket buffers. Stops at
        // the first failed write, once the server has closed the connection.
        for sent in 0..2000 {
            match tokio::time::timeout(TIMEOUT, write.write_all(command.as_bytes())).await {
                Ok(Ok(())) => {}
                _ => return sent,
            }
        }
        2000
    });
    watcher.expect(&format!("* {name} left (too slow)")).await;
    let sent = tokio::time::timeout(TIMEOUT, spam)
        .await
        .expect("spammer stops in time")
        .expect("spammer task");
    eprintln!("non-reader disconnected; it had sent {sent} long unknown commands");
    // What it never read is still there, and then the server's close.
    expect_closed(&mut unread).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_in_a_room_of_121_counts_all_121_and_says_how_many_more_it_did_not_list() {
    let server = start_server("--max-per-ip 200").await;
    let mut asker = TcpClient::connect(server.tcp).await;
    let mut others = Vec::new();
    for _ in 0..120 {
        others.push(TcpClient::connect(server.tcp).await);
    }
    for other in &others {
        asker.expect(&format!("* {} joined", other.name)).await;
    }
    asker.send("/who").await;
    asker.send("/nick done").await;
    let lines = asker.expect("* you are now known as done").await;
    // Before, the reply queue held 64 lines: the count and 63 names, and nothing said so.
    assert_eq!(lines.len(), 1 + 100 + 1, "{lines:#?}");
    assert_eq!(lines[0], "* 121 here:");
    let listed = &lines[1..101];
    assert!(listed.iter().all(|l| l.starts_with("*   guest-")));
    let mut distinct = listed.to_vec();
    distinct.dedup();
    assert_eq!(distinct.len(), 100, "each member listed once");
    assert_eq!(lines[101], "*   ... and 21 more");
    server.shutdown().await;
}

#[tokio::test]
async fn ten_pasted_helps_give_exactly_ten_help_lists() {
    let server = start_server("").await;
    let mut client = TcpClient::connect(server.tcp).await;
    // One write, as a paste arrives: every command is handled before the writer runs.
    let paste = format!("{}/nick done\n", "/help\n".repeat(10));
    client.send_raw(paste.as_bytes()).await;
    let lines = client.expect("* you are now known as done").await;
    // Before, the reply queue held 64 lines of the 70, and the last reply was lost too.
    assert_eq!(lines.len(), 10 * HELP.len(), "{lines:#?}");
    for help in lines.chunks(HELP.len()) {
        let expected: Vec<String> = HELP.iter().map(|l| format!("* {l}")).collect();
        assert_eq!(help, expected);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_private_messages_is_disconnected_as_too_slow() {
    let server = start_server("--sendq 65536 --rate off").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let stuck = TcpClient::with_nick(server.tcp, "stuck").await;
    alice.expect_renamed("stuck").await;
    // Never read again. 1,000 private messages of 4 KB are far past 64 KiB plus its socket
    // buffers. alice reads her answer to each (the confirmation echoes the 4 KB back to her).
    let text = "p".repeat(4000);
    let confirmed = format!("[private to stuck] {text}");
    let mut left = false;
    for _ in 0..1000 {
        alice.send(&format!("/msg stuck {text}")).await;
        // Before, stuck's 64-line queue filled and every later message was dropped with a
        // notice, but stuck was never let go. Now it goes once its queue is over --sendq; every
        // message is confirmed, or reported dropped, or finds nobody: never lost in silence.
        let answer = loop {
            match alice.recv().await {
                l if l == "* stuck left (too slow)" => left = true,
                answer => break answer,
            }
        };
        assert!(
            answer == confirmed
                || answer == "! stuck is not keeping up; message dropped"
                || answer == "! no such member: stuck",
            "{answer}"
        );
        if left {
            break;
        }
    }
    if !left {
        alice.expect("* stuck left (too slow)").await;
    }
    alice.send("/nick done").await;
    let after = alice.expect("* you are now known as done").await;
    assert!(
        after.iter().all(|l| l == "! no such member: stuck"),
        "{after:#?}"
    );
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sendq_a_non_reader_is_told_exactly_how_many_replies_it_missed() {
    // `--sendq off` never disconnects a slow reader, but its replies still stop at a fixed budget:
    // refused whole, counted, and reported once it reads again.
    let server = start_server("--sendq off --rate off").await;
    let (stream, _) = connect_raw(server.tcp).await;
    let (read, mut write) = stream.into_split();
    // 4,000 replies of 4 KB: 16 MB, far past the 1 MiB budget plus autotuned socket buffers.
    let total = 4000u64;
    let paste = long_unknown_command().repeat(100);
    for _ in 0..total / 100 {
        tokio::time::timeout(TIMEOUT, write.write_all(paste.as_bytes()))
            .await
            .expect("write in time")
            .expect("write");
    }
    let mut lines = tokio_util::codec::FramedRead::new(
        read,
        tokio_util::codec::LinesCodec::new_with_max_length(1 << 20),
    );
    let (mut received, mut missed) = (0u64, 0u64);
    while received + missed < total {
        use futures::StreamExt;
        let line = tokio::time::timeout(TIMEOUT, lines.next())
            .await
            .unwrap_or_else(|_| panic!("{received} received, {missed} missed of {total}"))
            .expect("connection open")
            .expect("a line");
        if line.starts_with("! unknown command /xxx") {
            received += 1;
        } else if let Some(n) = line.strip_prefix("! you missed ") {
            missed += n
                .trim_end_matches(" replies or private messages")
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("a count in {line:?}"));
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    assert_eq!(received + missed, total, "every reply delivered or counted");
    assert!(
        missed > 0,
        "16 MB of replies cannot all wait for a non-reader"
    );
    eprintln!("{received} replies delivered, {missed} counted as missed");
    tokio::time::timeout(TIMEOUT, write.write_all(b"/nick done\n"))
        .await
        .expect("write in time")
        .expect("write");
    use futures::StreamExt;
    let line = tokio::time::timeout(TIMEOUT, lines.next()).await;
    assert!(
        matches!(&line, Ok(Some(Ok(l))) if l == "* you are now known as done"),
        "{line:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_multi_line_reply_over_udp_is_one_datagram_per_line() {
    let server = start_server("").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/help").await;
    for line in HELP {
        assert_eq!(udp.recv().await, format!("* {line}"));
    }
    server.shutdown().await;
}
