//! Tests for the bundled client: the library driven with in-memory input and
//! output against small fake servers on loopback and against the real server
//! in-process, and the `chatc` binary with piped stdin against fake servers
//! and the built `chatd`. Every network wait is bounded so a broken build
//! fails fast.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use chatd::client::{run_with_notices, ClientConfig, ClientError, Exit, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Upper bound for any single wait; generous for a loaded 2-core machine.
const T: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn tcp_cfg(addr: SocketAddr) -> ClientConfig {
    ClientConfig::new(addr.to_string(), Transport::Tcp)
}

fn udp_cfg(addr: SocketAddr) -> ClientConfig {
    ClientConfig::new(addr.to_string(), Transport::Udp)
}

/// A client session running in the background, with its stdin, stdout and
/// notices reachable from the test.
struct Driven {
    input: Option<DuplexStream>,
    output: BufReader<DuplexStream>,
    task: JoinHandle<Result<Exit, ClientError>>,
}

impl Driven {
    fn spawn(cfg: ClientConfig) -> Self {
        let (input, client_in) = tokio::io::duplex(1 << 16);
        let (client_out, output) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(run_with_notices(
            cfg,
            client_in,
            client_out,
            tokio::io::sink(),
        ));
        Self {
            input: Some(input),
            output: BufReader::new(output),
            task,
        }
    }

    async fn type_in(&mut self, text: &str) {
        let input = self.input.as_mut().expect("input already closed");
        within("writing input", input.write_all(text.as_bytes()))
            .await
            .expect("client input closed");
    }

    fn close_input(&mut self) {
        self.input = None;
    }

    /// The next printed line, including its `\n`.
    async fn printed(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        within("client output", self.output.read_until(b'\n', &mut line))
            .await
            .expect("reading client output");
        line
    }

    async fn exit(self) -> (Result<Exit, ClientError>, Vec<u8>) {
        let Driven {
            input: _input,
            mut output,
            task,
            ..
        } = self;
        let res = within("client exit", task).await.expect("client panicked");
        let mut rest = Vec::new();
        within("rest of output", output.read_to_end(&mut rest))
            .await
            .expect("reading output");
        (res, rest)
    }
}

// ---------------------------------------------------------------- TCP ----

async fn tcp_server() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("local addr");
    (l, addr)
}

async fn accept(l: &TcpListener) -> BufReader<TcpStream> {
    let (s, _) = within("accept", l.accept()).await.expect("accept");
    BufReader::new(s)
}

/// Next line the fake server gets, without `\n`; `None` at EOF.
async fn recv_line(s: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    let n = within("a line from the client", s.read_line(&mut line))
        .await
        .expect("server read");
    (n > 0).then(|| line.trim_end_matches('\n').to_owned())
}

#[tokio::test]
async fn tcp_piped_input_is_sent_with_nick_and_quit_and_late_lines_are_printed() {
    let (l, addr) = tcp_server().await;
    let mut cfg = tcp_cfg(addr);
    cfg.nick = Some("bob".into());
    let server = async {
        let mut s = accept(&l).await;
        s.get_mut()
            .write_all(b"* welcome to chatd - you are bob; type /help for commands\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        while let Some(line) = recv_line(&mut s).await {
            got.push(line);
        }
        // Sent after the client has left: it must still be printed.
        s.get_mut().write_all(b"* bob left\n").await.expect("write");
        got
    };
    let mut out = Vec::new();
    let mut notices = Vec::new();
    let client = run_with_notices(cfg, &b"hello\nworld\n"[..], &mut out, &mut notices);
    let (res, got) = within("session", async { tokio::join!(client, server) }).await;
    assert_eq!(res.expect("client"), Exit::InputEnded);
    assert_eq!(got, ["/nick bob", "hello", "world", "/quit"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "* welcome to chatd - you are bob; type /help for commands\n* bob left\n"
    );
    assert!(notices.is_empty());
}

#[tokio::test]
async fn tcp_quit_command_stops_sending() {
    let (l, addr) = tcp_server().await;
    let server = async {
        let mut s = accept(&l).await;
        let mut got = Vec::new();
        while let Some(line) = recv_line(&mut s).await {
            got.push(line);
        }
        s.get_mut().write_all(b"* see you\n").await.expect("write");
        got
    };
    let mut out = Vec::new();
    let input = &b"one\n/quit gone fishing\ntwo\n"[..];
    let client = run_with_notices(tcp_cfg(addr), input, &mut out, Vec::new());
    let (res, got) = within("session", async { tokio::join!(client, server) }).await;
    assert_eq!(res.expect("client"), Exit::Quit);
    assert_eq!(got, ["one", "/quit gone fishing"]);
    assert_eq!(out, b"* see you\n");
}

#[tokio::test]
async fn tcp_invalid_utf8_is_replaced_and_long_lines_are_skipped_with_a_notice() {
    let (l, addr) = tcp_server().await;
    let mut cfg = tcp_cfg(addr);
    cfg.max_line = 8;
    let server = async {
        let mut s = accept(&l).await;
        let mut got = Vec::new();
        while let Some(line) = recv_line(&mut s).await {
            got.push(line);
        }
        got
    };
    let input = &b"caf\xc3\xa9\n\xff\xfeok\n0123456789abcdef\r\nafter\r\n"[..];
    let mut notices = Vec::new();
    let client = run_with_notices(cfg, input, Vec::new(), &mut notices);
    let (res, got) = within("session", async { tokio::join!(client, server) }).await;
    assert_eq!(res.expect("client"), Exit::InputEnded);
    assert_eq!(got, ["café", "\u{fffd}\u{fffd}ok", "after", "/quit"]);
    let notices = String::from_utf8_lossy(&notices);
    assert_eq!(
        notices.matches("longer than 8 bytes").count(),
        1,
        "{notices}"
    );
}

#[tokio::test]
async fn tcp_server_bytes_are_printed_as_is_one_per_line() {
    let (l, addr) = tcp_server().await;
    let mut c = Driven::spawn(tcp_cfg(addr));
    let mut s = accept(&l).await;
    within(
        "server write",
        s.get_mut()
            .write_all(b"<ann> caf\xff\r\n<ann> two\n<ann> no newline"),
    )
    .await
    .expect("write");
    assert_eq!(c.printed().await, b"<ann> caf\xff\n");
    assert_eq!(c.printed().await, b"<ann> two\n");
    drop(s);
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerClosed);
    assert_eq!(rest, b"<ann> no newline\n");
}

#[tokio::test]
async fn tcp_server_close_ends_the_session_while_input_is_open() {
    let (l, addr) = tcp_server().await;
    let mut c = Driven::spawn(tcp_cfg(addr));
    let mut s = accept(&l).await;
    c.type_in("hi\n").await;
    assert_eq!(recv_line(&mut s).await.as_deref(), Some("hi"));
    within("server write", s.get_mut().write_all(b"! server full\n"))
        .await
        .expect("write");
    drop(s);
    // The input stays open: the server going away alone must end the session.
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerClosed);
    assert_eq!(rest, b"! server full\n");
}

#[tokio::test]
async fn tcp_connection_reset_is_server_closed() {
    let (l, addr) = tcp_server().await;
    let mut c = Driven::spawn(tcp_cfg(addr));
    let mut s = accept(&l).await;
    c.type_in("hi\n").await;
    assert_eq!(recv_line(&mut s).await.as_deref(), Some("hi"));
    let s = s.into_inner();
    s.set_zero_linger().expect("linger");
    drop(s); // RST instead of FIN
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerClosed);
    assert!(rest.is_empty());
}

#[tokio::test]
async fn tcp_shutdown_notice_ends_the_session_even_if_the_socket_stays_open() {
    let (l, addr) = tcp_server().await;
    let c = Driven::spawn(tcp_cfg(addr));
    let mut s = accept(&l).await;
    within(
        "server write",
        s.get_mut().write_all(
            b"* welcome to chatd - you are x; type /help for commands\n* server shutting down\n",
        ),
    )
    .await
    .expect("write");
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerShuttingDown);
    assert_eq!(
        rest,
        &b"* welcome to chatd - you are x; type /help for commands\n* server shutting down\n"[..]
    );
    drop(s);
}

#[tokio::test]
async fn tcp_a_slow_reply_after_quit_is_still_printed() {
    let (l, addr) = tcp_server().await;
    let server = async {
        let mut s = accept(&l).await;
        while recv_line(&mut s).await.is_some() {}
        // The scenario under test, not synchronisation: a server that takes a
        // moment to send its goodbye, well within the client's quit wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.get_mut()
            .write_all(b"* slow goodbye\n")
            .await
            .expect("write");
    };
    let mut out = Vec::new();
    let client = run_with_notices(tcp_cfg(addr), &b"/quit\n"[..], &mut out, Vec::new());
    let (res, ()) = within("session", async { tokio::join!(client, server) }).await;
    assert_eq!(res.expect("client"), Exit::Quit);
    assert_eq!(out, b"* slow goodbye\n");
}

#[tokio::test]
async fn tcp_waiting_for_the_server_to_close_after_quit_is_bounded() {
    let (l, addr) = tcp_server().await;
    let mut cfg = tcp_cfg(addr);
    cfg.quit_wait = Duration::from_millis(200);
    let mut c = Driven::spawn(cfg);
    let mut s = accept(&l).await;
    c.type_in("/quit\n").await;
    assert_eq!(recv_line(&mut s).await.as_deref(), Some("/quit"));
    within("server write", s.get_mut().write_all(b"* still here\n"))
        .await
        .expect("write");
    // The server never closes; the client must give up waiting by itself.
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::Quit);
    assert_eq!(rest, b"* still here\n");
    drop(s);
}

#[tokio::test]
async fn tcp_connection_refused_is_an_error() {
    let (l, addr) = tcp_server().await;
    drop(l);
    let res = within(
        "client",
        run_with_notices(tcp_cfg(addr), &b""[..], Vec::new(), Vec::new()),
    )
    .await;
    match res {
        Err(ClientError::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_addresses_and_settings_are_errors() {
    let res = run_with_notices(
        ClientConfig::new("127.0.0.1", Transport::Tcp),
        &b""[..],
        Vec::new(),
        Vec::new(),
    );
    // A host without its port is asked for the port, not called an invalid address.
    assert!(matches!(
        within("client", res).await,
        Err(ClientError::NoPort { .. })
    ));
    let res = run_with_notices(
        ClientConfig::new("no.such.host.invalid:9", Transport::Tcp),
        &b""[..],
        Vec::new(),
        Vec::new(),
    );
    assert!(matches!(
        within("client", res).await,
        Err(ClientError::Resolve { .. })
    ));

    let mut cfg = ClientConfig::new("127.0.0.1:9", Transport::Udp);
    cfg.heartbeat = Duration::ZERO;
    let res = run_with_notices(cfg, &b""[..], Vec::new(), Vec::new());
    assert!(matches!(
        within("client", res).await,
        Err(ClientError::Config(_))
    ));

    let mut cfg = ClientConfig::new("127.0.0.1:9", Transport::Tcp);
    cfg.nick = Some("a\n/quit".into());
    let res = run_with_notices(cfg, &b""[..], Vec::new(), Vec::new());
    assert!(matches!(
        within("client", res).await,
        Err(ClientError::Config(_))
    ));
}

// ---------------------------------------------------------------- UDP ----

async fn udp_server(ip: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((ip, 0)).await.expect("bind");
    let addr = s.local_addr().expect("local addr");
    (s, addr)
}

/// Next datagram the fake server gets, and where from.
async fn recv_dgram(s: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = within("a datagram from the client", s.recv_from(&mut buf))
        .await
        .expect("recv");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

async fn send_dgram(s: &UdpSocket, to: SocketAddr, data: &[u8]) {
    within("server send", s.send_to(data, to))
        .await
        .expect("send");
}

/// Asserts nothing more was sent. Loopback delivery happens within `send`,
/// so once the client has returned anything it sent is already queued.
fn assert_no_more_datagrams(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    match s.try_recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("unexpected datagram: {other:?}"),
    }
}

#[tokio::test]
async fn udp_pings_first_then_sends_nick_lines_and_quit() {
    let (s, addr) = udp_server("127.0.0.1").await;
    let mut cfg = udp_cfg(addr);
    cfg.nick = Some("bob".into());
    let mut c = Driven::spawn(cfg);
    let (first, client) = recv_dgram(&s).await;
    assert_eq!(first.trim_end(), "#ping#");
    // Padded so that a validating server, which answers an unknown address
    // only with less than what it sent, can afford the join challenge.
    assert!(first.len() > b"* to join, send: #pong# 0123456789abcdef\n".len());
    assert_eq!(recv_dgram(&s).await.0, "/nick bob");
    send_dgram(
        &s,
        client,
        b"* welcome to chatd - you are bob; type /help for commands\n",
    )
    .await;
    // Welcomed, it asks for a session token; the answer is not printed.
    assert_eq!(recv_dgram(&s).await.0, "#token#");
    send_dgram(&s, client, &chatd::protocol::token_answer("f00d")).await;
    // No trailing newline and invalid UTF-8: still printed as one line, as is.
    send_dgram(&s, client, b"<ann> caf\xff").await;
    assert_eq!(
        c.printed().await,
        b"* welcome to chatd - you are bob; type /help for commands\n"
    );
    assert_eq!(c.printed().await, b"<ann> caf\xff\n");
    // From then on every datagram carries the token.
    c.type_in("hi there\n/quit bye\nnot sent\n").await;
    assert_eq!(recv_dgram(&s).await.0, "#t:f00d# hi there");
    assert_eq!(recv_dgram(&s).await.0, "#t:f00d# /quit bye");
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::Quit);
    assert!(rest.is_empty());
    assert_no_more_datagrams(&s);
}

#[tokio::test]
async fn udp_heartbeats_keep_coming_and_end_of_input_sends_quit() {
    let (s, addr) = udp_server("127.0.0.1").await;
    let mut cfg = udp_cfg(addr);
    cfg.heartbeat = Duration::from_millis(50);
    let mut c = Driven::spawn(cfg);
    for _ in 0..3 {
        assert_eq!(recv_dgram(&s).await.0.trim_end(), "#ping#");
    }
    c.close_input();
    // Heartbeats may still be in flight before the quit.
    loop {
        let (d, _) = recv_dgram(&s).await;
        if d.trim_end() != "#ping#" {
            assert_eq!(d, "/quit");
            break;
        }
    }
    let (res, _) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::InputEnded);
}

#[tokio::test]
async fn udp_join_challenge_is_answered_once_and_nick_resent() {
    let (s, addr) = udp_server("127.0.0.1").await;
    let mut cfg = udp_cfg(addr);
    cfg.nick = Some("bob".into());
    let mut c = Driven::spawn(cfg);
    let challenge = b"* to join, send: #pong# c0ffee42\n";
    // Like a stateless validating server: every datagram from an unknown
    // address gets the challenge, so the ping and the nick both do.
    let (d, client) = recv_dgram(&s).await;
    assert_eq!(d.trim_end(), "#ping#");
    send_dgram(&s, client, challenge).await;
    assert_eq!(recv_dgram(&s).await.0, "/nick bob");
    send_dgram(&s, client, challenge).await;
    assert_eq!(recv_dgram(&s).await.0, "#pong# c0ffee42");
    assert_eq!(recv_dgram(&s).await.0, "/nick bob");
    send_dgram(
        &s,
        client,
        b"* welcome to chatd - you are bob; type /help for commands\n",
    )
    .await;
    // The challenge is printed like any line, and the same challenge once: a validating server
    // now answers every line sent before joining, however short.
    assert_eq!(c.printed().await, challenge);
    assert_eq!(
        c.printed().await,
        b"* welcome to chatd - you are bob; type /help for commands\n"
    );
    // Both challenges were handled before the welcome was printed, so a
    // second answer would arrive before the token request.
    assert_eq!(recv_dgram(&s).await.0, "#token#");
    send_dgram(&s, client, &chatd::protocol::token_answer("f00d")).await;
    c.type_in("hello\n").await;
    assert_eq!(recv_dgram(&s).await.0, "#t:f00d# hello");
    c.close_input();
    assert_eq!(recv_dgram(&s).await.0, "#t:f00d# /quit");
    let (res, _) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::InputEnded);
    assert_no_more_datagrams(&s);
}

#[tokio::test]
async fn udp_shutdown_notice_ends_the_session() {
    let (s, addr) = udp_server("127.0.0.1").await;
    let c = Driven::spawn(udp_cfg(addr));
    let (d, client) = recv_dgram(&s).await;
    assert_eq!(d.trim_end(), "#ping#");
    send_dgram(&s, client, b"<ann> last words\n").await;
    send_dgram(&s, client, b"* server shutting down\n").await;
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerShuttingDown);
    assert_eq!(rest, b"<ann> last words\n* server shutting down\n");
}

#[tokio::test]
async fn udp_closed_server_port_is_reported_as_unreachable() {
    let (s, addr) = udp_server("127.0.0.1").await;
    drop(s);
    // Input stays open: the refused ping alone must end the session.
    let c = Driven::spawn(udp_cfg(addr));
    let (res, rest) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerUnreachable);
    assert!(rest.is_empty());
}

#[tokio::test]
async fn udp_over_ipv6_binds_a_matching_socket() {
    let (s, addr) = udp_server("::1").await;
    let mut c = Driven::spawn(udp_cfg(addr));
    let (d, client) = recv_dgram(&s).await;
    assert_eq!(d.trim_end(), "#ping#");
    assert!(client.is_ipv6());
    send_dgram(&s, client, b"<ann> hi six\n").await;
    assert_eq!(c.printed().await, b"<ann> hi six\n");
    c.type_in("/quit\n").await;
    assert_eq!(recv_dgram(&s).await.0, "/quit");
    let (res, _) = c.exit().await;
    assert_eq!(res.expect("client"), Exit::Quit);
}

// --------------------------------------------------- the chatc binary ----

/// Starts `chatc` with piped stdio.
fn chatc(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chatc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chatc")
}

#[tokio::test]
async fn chatc_binary_tcp_with_piped_stdin_exits_zero_at_end_of_input() {
    let (l, addr) = tcp_server().await;
    let mut child = chatc(&[&addr.to_string(), "--nick", "pipe"]);
    let mut stdin = child.stdin.take().expect("stdin");
    within("stdin", stdin.write_all(b"hello from a script\n"))
        .await
        .expect("write stdin");
    drop(stdin);
    let mut s = accept(&l).await;
    within("server write", s.get_mut().write_all(b"<ann> hi pipe\n"))
        .await
        .expect("write");
    let mut got = Vec::new();
    while let Some(line) = recv_line(&mut s).await {
        got.push(line);
    }
    drop(s);
    assert_eq!(got, ["/nick pipe", "hello from a script", "/quit"]);
    let out = within("chatc exit", child.wait_with_output())
        .await
        .expect("wait");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<ann> hi pipe\n");
}

#[tokio::test]
async fn chatc_binary_reports_server_close_while_stdin_stays_open() {
    let (l, addr) = tcp_server().await;
    let mut child = chatc(&[&addr.to_string()]);
    // Keep stdin open and idle, like a terminal nobody types in: chatc must
    // not wait for its blocked stdin read before exiting.
    let _stdin = child.stdin.take();
    let s = accept(&l).await;
    drop(s);
    let out = within("chatc exit", child.wait_with_output())
        .await
        .expect("wait");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "chatc: server closed the connection"
    );
}

#[tokio::test]
async fn chatc_binary_udp_reports_shutdown_notice() {
    let (s, addr) = udp_server("127.0.0.1").await;
    let mut child = chatc(&["--udp", &addr.to_string()]);
    let _stdin = child.stdin.take();
    let (d, client) = recv_dgram(&s).await;
    assert_eq!(d.trim_end(), "#ping#");
    send_dgram(&s, client, b"* server shutting down\n").await;
    let out = within("chatc exit", child.wait_with_output())
        .await
        .expect("wait");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "* server shutting down\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "chatc: server is shutting down"
    );
}

#[tokio::test]
async fn chatc_binary_rejects_a_zero_heartbeat() {
    let child = chatc(&["--udp", "--heartbeat", "0s", "127.0.0.1:9"]);
    let out = within("chatc exit", child.wait_with_output())
        .await
        .expect("wait");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("greater than zero"));
}

// ------------------------------------- end to end with the real server ----

/// Receives lines until one satisfies `wanted`, returning it.
async fn tcp_recv_until(c: &mut common::TcpClient, wanted: impl Fn(&str) -> bool) -> String {
    loop {
        let line = c.recv().await;
        if wanted(&line) {
            return line;
        }
    }
}

async fn e2e_library_chat(transport: Transport) {
    let server = common::start_server("").await;
    let mut bob = common::TcpClient::with_nick(server.tcp, "bob").await;
    let addr = match transport {
        Transport::Tcp => server.tcp,
        Transport::Udp => server.udp,
    };
    let mut cfg = ClientConfig::new(addr.to_string(), transport);
    cfg.nick = Some("alice".into());
    let mut alice = Driven::spawn(cfg);

    let welcome = String::from_utf8_lossy(&alice.printed().await).into_owned();
    assert!(
        welcome.starts_with("* ") && welcome.contains(" - you are "),
        "{welcome:?}"
    );
    assert_eq!(alice.printed().await, b"* you are now known as alice\n");
    tcp_recv_until(&mut bob, |l| l.ends_with(" is now known as alice")).await;

    alice.type_in("hello bob\n").await;
    assert_eq!(bob.recv().await, "<alice> hello bob");
    bob.send("hi alice").await;
    assert_eq!(alice.printed().await, b"<bob> hi alice\n");

    server.shutdown().await;
    let (res, rest) = alice.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerShuttingDown);
    assert_eq!(rest, b"* server shutting down\n");
}

#[tokio::test]
async fn e2e_library_tcp_chat_with_the_in_process_server() {
    e2e_library_chat(Transport::Tcp).await;
}

#[tokio::test]
async fn e2e_library_udp_chat_with_the_in_process_server() {
    e2e_library_chat(Transport::Udp).await;
}

#[tokio::test]
async fn e2e_library_udp_quit_makes_the_server_drop_us() {
    let server = common::start_server("").await;
    let mut bob = common::TcpClient::with_nick(server.tcp, "bob").await;
    let mut cfg = udp_cfg(server.udp);
    cfg.nick = Some("erin".into());
    let mut erin = Driven::spawn(cfg);
    assert_eq!(erin.printed().await.first(), Some(&b'*'));
    assert_eq!(erin.printed().await, b"* you are now known as erin\n");
    erin.type_in("bye all\n/EXIT\n").await;
    let (res, _) = erin.exit().await;
    // The server's parser takes /EXIT as leaving; the client must agree.
    assert_eq!(res.expect("client"), Exit::Quit);
    tcp_recv_until(&mut bob, |l| l == "<erin> bye all").await;
    assert_eq!(bob.recv().await, "* erin left");
    server.shutdown().await;
}

#[tokio::test]
async fn e2e_library_udp_joins_a_validating_server() {
    let server = common::start_server("--udp-validate").await;
    let mut bob = common::TcpClient::with_nick(server.tcp, "bob").await;
    let mut cfg = udp_cfg(server.udp);
    cfg.nick = Some("vic".into());
    let mut vic = Driven::spawn(cfg);
    let challenge = String::from_utf8_lossy(&vic.printed().await).into_owned();
    assert!(
        challenge.starts_with("* to join, send: #pong# "),
        "{challenge:?}"
    );
    let welcome = String::from_utf8_lossy(&vic.printed().await).into_owned();
    assert!(welcome.contains(" - you are "), "{welcome:?}");
    assert_eq!(vic.printed().await, b"* you are now known as vic\n");
    tcp_recv_until(&mut bob, |l| l.ends_with(" is now known as vic")).await;
    vic.type_in("validated hello\n").await;
    assert_eq!(bob.recv().await, "<vic> validated hello");
    server.shutdown().await;
    let (res, rest) = vic.exit().await;
    assert_eq!(res.expect("client"), Exit::ServerShuttingDown);
    assert_eq!(rest, b"* server shutting down\n");
}

/// The built `chatd`, listening on loopback ports the OS picked.
struct Chatd {
    child: tokio::process::Child,
    tcp: SocketAddr,
    udp: SocketAddr,
}

/// The address logged after `key` in a line like `... listening tcp=127.0.0.1:4000`.
fn logged_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl Chatd {
    async fn start() -> Chatd {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--tcp", "0", "--udp", "0", "--bind", "127.0.0.1"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chatd");
        let stderr = child.stderr.take().expect("chatd stderr");
        let mut log = BufReader::new(stderr).lines();
        let (mut tcp, mut udp) = (None, None);
        while tcp.is_none() || udp.is_none() {
            let line = within("chatd to listen", log.next_line())
                .await
                .expect("chatd stderr")
                .expect("chatd exited before listening");
            tcp = tcp.or_else(|| logged_addr(&line, "listening tcp="));
            udp = udp.or_else(|| logged_addr(&line, "listening udp="));
        }
        // Keep draining the log so chatd never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        Chatd {
            child,
            tcp: tcp.expect("tcp address"),
            udp: udp.expect("udp address"),
        }
    }

    /// Asks chatd to shut down gracefully, as an operator's Ctrl-C would.
    fn terminate(&self) {
        let pid = self.child.id().expect("chatd still running");
        let pid = libc::pid_t::try_from(pid).expect("pid fits");
        // SAFETY: kill() only sends a signal to the child we started.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }
}

/// A running `chatc` with its stdin kept open and its stdout read line by line.
struct Chatc {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Chatc {
    fn start(args: &[&str]) -> Chatc {
        let mut child = chatc(args);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("chatc stdout"));
        Chatc {
            child,
            stdin,
            stdout,
        }
    }

    async fn type_in(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        within("chatc stdin", stdin.write_all(text.as_bytes()))
            .await
            .expect("write chatc stdin");
    }

    /// The next stdout line without its `\n`; `None` once stdout has ended.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = within("chatc output", self.stdout.read_line(&mut line))
            .await
            .expect("read chatc stdout");
        (n > 0).then(|| line.trim_end_matches('\n').to_owned())
    }

    /// Reads stdout lines until `wanted`; returns those skipped on the way.
    async fn expect(&mut self, wanted: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            match self.line().await {
                Some(line) if line == wanted => return skipped,
                Some(line) => skipped.push(line),
                None => panic!("chatc stdout ended before {wanted:?}; got {skipped:?}"),
            }
        }
    }

    /// Waits for chatc to exit; returns its exit code, remaining stdout and stderr.
    async fn finish(mut self) -> (Option<i32>, String, String) {
        let mut rest = String::new();
        within("chatc stdout to end", self.stdout.read_to_string(&mut rest))
            .await
            .expect("read chatc stdout");
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            within("chatc stderr to end", stderr.read_to_string(&mut err))
                .await
                .expect("read chatc stderr");
        }
        let status = within("chatc exit", self.child.wait()).await.expect("wait");
        (status.code(), rest, err)
    }
}

async fn e2e_binary_chat_then_server_shutdown(udp: bool) {
    let chatd = Chatd::start().await;
    let mut bob = common::TcpClient::with_nick(chatd.tcp, "bob").await;
    let (tcp_addr, udp_addr) = (chatd.tcp.to_string(), chatd.udp.to_string());
    let args: Vec<&str> = if udp {
        vec![
            "--udp",
            &udp_addr,
            "--nick",
            "carol",
            "--heartbeat",
            "300ms",
        ]
    } else {
        vec![&tcp_addr, "--nick", "carol"]
    };
    let mut carol = Chatc::start(&args);
    carol.expect("* you are now known as carol").await;
    tcp_recv_until(&mut bob, |l| l.ends_with(" is now known as carol")).await;

    carol.type_in("hello from carol\n").await;
    assert_eq!(bob.recv().await, "<carol> hello from carol");
    bob.send("hi carol").await;
    carol.expect("<bob> hi carol").await;

    chatd.terminate();
    // stdin stays open: the server going away alone must end chatc.
    carol.expect("* server shutting down").await;
    let (code, rest, err) = carol.finish().await;
    assert_eq!(code, Some(1), "stderr: {err}");
    assert_eq!(rest, "");
    assert_eq!(err.trim_end(), "chatc: server is shutting down");
}

#[tokio::test]
async fn e2e_chatc_binary_over_tcp_chats_and_reports_shutdown() {
    e2e_binary_chat_then_server_shutdown(false).await;
}

#[tokio::test]
async fn e2e_chatc_binary_over_udp_chats_and_reports_shutdown() {
    e2e_binary_chat_then_server_shutdown(true).await;
}

async fn e2e_binary_script(udp: bool) {
    let chatd = Chatd::start().await;
    let mut bob = common::TcpClient::with_nick(chatd.tcp, "bob").await;
    let (tcp_addr, udp_addr) = (chatd.tcp.to_string(), chatd.udp.to_string());
    let args: Vec<&str> = if udp {
        vec!["--udp", &udp_addr, "--nick", "dave"]
    } else {
        vec![&tcp_addr, "--nick", "dave"]
    };
    let mut dave = Chatc::start(&args);
    // Like `printf ... | chatc`: all input at once, then end of input.
    dave.type_in("one-shot message\n").await;
    dave.stdin = None;
    tcp_recv_until(&mut bob, |l| l == "<dave> one-shot message").await;
    assert_eq!(bob.recv().await, "* dave left");
    let (code, _, err) = dave.finish().await;
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "");
    drop(chatd);
}

#[tokio::test]
async fn e2e_chatc_binary_over_tcp_runs_a_piped_script_and_leaves() {
    e2e_binary_script(false).await;
}

#[tokio::test]
async fn e2e_chatc_binary_over_udp_runs_a_piped_script_and_leaves() {
    e2e_binary_script(true).await;
}

#[tokio::test]
async fn e2e_chatc_binary_reports_a_killed_server() {
    let mut chatd = Chatd::start().await;
    let mut erin = Chatc::start(&[&chatd.tcp.to_string()]);
    let welcome = erin.line().await.expect("welcome line");
    assert!(welcome.contains(" - you are "), "{welcome:?}");
    // No goodbye: the process just dies, so only the socket closing tells.
    within("kill chatd", chatd.child.kill())
        .await
        .expect("kill chatd");
    let (code, _, err) = erin.finish().await;
    assert_eq!(code, Some(1), "stderr: {err}");
    assert_eq!(err.trim_end(), "chatc: server closed the connection");
}
