//! The seed's own clients (issue 9 §1), reproduced by `tests/seed_client.py`: a TCP client that
//! sends each message without a newline and quits with `/quit` and an abrupt close, and a UDP
//! client that pings and sends one datagram per message. Also `--partial-timeout` and `--echo`.
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};

/// How long the seed's user takes between messages: well over the default partial timeout.
const GAP: &str = "1.0";

/// Runs `tests/seed_client.py` with `args` and waits (bounded) for it; returns what it printed.
async fn seed_client(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed_client.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the seed client tests need python3 (Debian/Ubuntu package `python3`: \
                 apt-get install python3): {e}"
            )
        });
    // Messages are GAP apart: a handful of them fit well inside a few timeouts.
    let output = tokio::time::timeout(TIMEOUT * 3, child.wait_with_output())
        .await
        .expect("the seed client finishes in time")
        .expect("seed client output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "seed client failed: {stdout}");
    stdout
}

#[tokio::test]
async fn seed_tcp_client_reaches_netcat_as_two_lines_and_a_leave() {
    let server = start_server("").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let port = server.tcp.port().to_string();
    let client = tokio::spawn(async move {
        seed_client(&[
            "tcp",
            "127.0.0.1",
            &port,
            GAP,
            "--",
            "hello from seed",
            "second seed msg",
        ])
        .await
    });
    let seed = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{seed}> hello from seed"));
    assert_eq!(watcher.recv().await, format!("<{seed}> second seed msg"));
    // The pending `/quit` is a quit, even though the connection was reset rather than closed.
    assert_eq!(watcher.recv().await, format!("* {seed} left"));
    let printed = client.await.expect("seed client task");
    assert!(
        printed.contains("unread before close: yes"),
        "the seed client must close with the welcome unread (a reset): {printed}"
    );
    server.shutdown().await;
}

/// Once the seed's TCP client has shown it sends no line ends (its first message ended by the
/// partial timer), each of its sends is one message at once: two sends 300 ms apart do not merge,
/// and `/quit` 100 ms after `bye` is a quit, not the chat line `bye/quit`.
#[tokio::test]
async fn seed_tcp_client_without_line_ends_gets_each_send_as_one_message() {
    let server = start_server("").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let port = server.tcp.port().to_string();
    let client = tokio::spawn(async move {
        let gaps = "1.0,0.3,0.3,0.1";
        let messages = ["--", "hello", "one", "two", "bye"];
        seed_client(&[&["tcp", "127.0.0.1", &port, gaps][..], &messages].concat()).await
    });
    let seed = watcher.expect_joined().await;
    for said in ["hello", "one", "two", "bye"] {
        assert_eq!(watcher.recv().await, format!("<{seed}> {said}"));
    }
    assert_eq!(watcher.recv().await, format!("* {seed} left"));
    client.await.expect("seed client task");

    server.shutdown().await;

    // Each send is taken at once, not when the partial timer ends it: with a 2 s timer, only the
    // first send (which shows there are no line ends) waits for it.
    let server = start_server("--partial-timeout 2s").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    sender.send_raw(b"first").await;
    assert_eq!(watcher.recv().await, format!("<{}> first", sender.name));
    let sent = Instant::now();
    sender.send_raw(b"second").await;
    assert_eq!(watcher.recv().await, format!("<{}> second", sender.name));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "taken at once, not after the 2 s partial timeout: {:?}",
        sent.elapsed()
    );
    // A client that sends a line end is back to lines: a partial one waits for its end again.
    sender.send_raw(b"third\npart").await;
    sender.send_raw(b"ial\n").await;
    assert_eq!(watcher.recv().await, format!("<{}> third", sender.name));
    assert_eq!(watcher.recv().await, format!("<{}> partial", sender.name));
    server.shutdown().await;
}

/// The seed's classroom client reads a desk's description from its info port: one `recv`, JSON,
/// the desk's fields (`--meta`) at the top level.
#[tokio::test]
async fn seed_info_client_reads_the_description_from_the_info_port() {
    let flags = "--tcp 0 --info-port 0 --bind 127.0.0.1 --name desk-7 --meta id=\"1527406014\" \
                 --meta height=178 --meta size=XXL";
    let args: chatd::config::ServerArgs = flags.parse().expect("arguments");
    let listeners = chatd::server::Listeners::bind(&args).await.expect("bind");
    let port = listeners.info_addr().expect("info port").port().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chatd::server::run(args.config(), listeners, async move {
        let _ = stopped.await;
    }));
    let printed = seed_client(&["info", "127.0.0.1", &port]).await;
    let desk: serde_json::Value = printed
        .lines()
        .find_map(|l| l.strip_prefix("desk "))
        .map(|doc| serde_json::from_str(doc).expect("json"))
        .unwrap_or_else(|| panic!("the seed's client read no description: {printed}"));
    assert_eq!(desk["id"], "1527406014", "{desk}");
    assert_eq!(desk["height"], 178, "{desk}");
    assert_eq!(desk["size"], "XXL", "{desk}");
    assert_eq!(desk["name"], "desk-7", "{desk}");
    assert_eq!(desk["members"], 0, "asking joins nobody: {desk}");
    drop(stop);
}

#[tokio::test]
async fn seed_style_udp_client_keeps_working() {
    // Evicted after 600 ms of silence: only the client's own pings keep it in across the gaps.
    let server = start_server("--heartbeat 300ms").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let port = server.udp.port().to_string();
    let client = tokio::spawn(async move {
        seed_client(&[
            "udp",
            "127.0.0.1",
            &port,
            GAP,
            "0.2",
            "--",
            "udp one",
            "udp two",
        ])
        .await
    });
    let seed = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{seed}> udp one"));
    assert_eq!(watcher.recv().await, format!("<{seed}> udp two"));
    assert_eq!(watcher.recv().await, format!("* {seed} left"));
    let printed = client.await.expect("seed client task");
    assert!(printed.contains("sent 1"), "{printed}");
    server.shutdown().await;
}

#[tokio::test]
async fn line_cap_applies_to_partial_lines() {
    let server = start_server("--max-line 16 --history 0").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let port = server.tcp.port().to_string();
    let client = tokio::spawn(async move {
        let fits = "f".repeat(16);
        let over = "o".repeat(17);
        seed_client(&["tcp", "127.0.0.1", &port, GAP, "--", &fits, &over, "after"]).await
    });
    let seed = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{seed}> {}", "f".repeat(16)));
    // The 17-byte partial line is refused; the timeout still ends it, so the next one goes through.
    assert_eq!(watcher.recv().await, format!("<{seed}> after"));
    assert_eq!(watcher.recv().await, format!("* {seed} left"));
    client.await.expect("seed client task");

    // The sender is told, as soon as the partial line passes the cap.
    let mut sender = TcpClient::connect(server.tcp).await;
    sender.send_raw(&[b'x'; 17]).await;
    assert_eq!(
        sender.recv().await,
        "! line too long (max 16 bytes); discarded"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn partial_line_is_delivered_after_the_timeout() {
    let server = start_server("--partial-timeout 200ms").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    let sent = Instant::now();
    sender.send_raw(b"no newline").await;
    assert_eq!(
        watcher.recv().await,
        format!("<{}> no newline", sender.name)
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "delivered after {:?}, before the partial timeout",
        sent.elapsed()
    );
    // A line completed normally is not held back.
    sender.send("with newline").await;
    assert_eq!(
        watcher.recv().await,
        format!("<{}> with newline", sender.name)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn partial_timeout_off_keeps_joining_partial_writes() {
    let server = start_server("--partial-timeout off").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    sender.send_raw(b"hello").await;
    // Nothing can be awaited here: what is under test is that nothing happens for a while. A
    // second is more than three default partial timeouts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sender.send_raw(b"world\n").await;
    assert_eq!(
        watcher.recv().await,
        format!("<{}> helloworld", sender.name)
    );
    server.shutdown().await;
}

/// Connects, sends `bytes`, then resets the connection (linger 0), as a client killed with unread
/// data does.
async fn send_and_reset(server: std::net::SocketAddr, bytes: &[u8]) {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(stream);
}

#[tokio::test]
async fn complete_lines_and_a_pending_quit_survive_a_reset() {
    let server = start_server("").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    send_and_reset(server.tcp, b"one\ntwo\n/quit").await;
    let name = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{name}> one"));
    assert_eq!(watcher.recv().await, format!("<{name}> two"));
    assert_eq!(watcher.recv().await, format!("* {name} left"));
    server.shutdown().await;
}

#[tokio::test]
async fn pending_text_is_delivered_on_a_reset() {
    let server = start_server("").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    send_and_reset(server.tcp, b"last words").await;
    let name = watcher.expect_joined().await;
    assert_eq!(watcher.recv().await, format!("<{name}> last words"));
    assert_eq!(
        watcher.recv().await,
        format!("* {name} left (connection error)")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn echo_sends_own_chat_lines_back_over_tcp_and_udp() {
    let server = start_server("--echo --history 0").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    // Its own join notice is not echoed: the reply to /nick is the next line, and then not the
    // room's notice of the rename either.
    alice.send("/nick alice").await;
    assert_eq!(alice.recv().await, "* you are now known as alice");
    alice.send("hi from tcp").await;
    assert_eq!(alice.recv().await, "<alice> hi from tcp");

    let udp = UdpClient::join(server.udp).await;
    alice.expect(&format!("* {} joined", udp.name)).await;
    udp.send("hi from udp").await;
    assert_eq!(udp.recv().await, format!("<{}> hi from udp", udp.name));
    assert_eq!(alice.recv().await, format!("<{}> hi from udp", udp.name));
    // Private messages are not chat lines: the sender gets its confirmation, not the line back.
    udp.send("/msg alice psst").await;
    assert_eq!(alice.recv().await, format!("[private] <{}> psst", udp.name));
    assert_eq!(udp.recv().await, "[private to alice] psst");
    alice.send("back to you").await;
    assert_eq!(alice.recv().await, "<alice> back to you");
    assert_eq!(udp.recv().await, "<alice> back to you");
    server.shutdown().await;
}
