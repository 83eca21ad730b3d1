//! TLS (issue 13 §1): the line protocol inside TLS on `--tls`, HTTPS and `wss://` with a
//! certificate, certificate reload on SIGHUP, bounded handshakes, and `chatc --tls` refusing
//! certificates that do not check out. The certificates are made here with rcgen: a test CA,
//! leaves it signs (valid, expired, for another host), and `--self-signed`'s own.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::codec::{FramedRead, LinesCodec};

use chatd::client::tls::Verify;
use common::{start_server, TcpClient, TIMEOUT};

/// A test certificate authority and the files it writes.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM, for `--ca`.
    ca: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("chatd-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "chatd test CA");
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, cert.pem()).expect("write ca");
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A leaf for `names`, valid from `not_before` to `not_after` (years), as `NAME.crt` and
    /// `NAME.key`; returns the two paths and the certificate's DER.
    fn leaf(&self, name: &str, names: &[&str], years: (i32, i32)) -> (PathBuf, PathBuf, Vec<u8>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let (crt, pem_key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write cert");
        std::fs::write(&pem_key, key.serialize_pem()).expect("write key");
        (crt, pem_key, cert.der().to_vec())
    }

    /// A leaf valid now for localhost and 127.0.0.1.
    fn good(&self, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        self.leaf(name, &["localhost", "127.0.0.1"], (2000, 4000))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--cert A --key B` for a server's flags.
fn cert_flags(cert: &Path, key: &Path) -> String {
    format!("--cert {} --key {}", cert.display(), key.display())
}

/// Fails, naming the Debian package, when a tool the tests drive is missing.
fn need(tool: &str, package: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        // `openssl version` rather than --version: an error status still means it is there.
        let openssl = std::process::Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        assert!(
            openssl,
            "{tool} is missing: install the `{package}` package (apt-get install {package})"
        );
    }
}

/// A line client over TLS (as `chatc --tls` or `openssl s_client` would be), every wait bounded.
struct TlsMember {
    lines: FramedRead<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>, LinesCodec>,
    writer: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    /// The certificate the server presented.
    cert: Vec<u8>,
    /// The name the welcome gave.
    name: String,
    /// The welcome line.
    welcome: String,
}

impl TlsMember {
    /// Connects to `addr`, checking the certificate for `localhost` as `verify` says, and reads
    /// the welcome line.
    async fn connect(addr: SocketAddr, verify: &Verify) -> TlsMember {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        TlsMember::over(tcp, verify).await.expect("handshake")
    }

    /// Shakes hands over a connected `tcp` and reads the welcome line.
    async fn over(
        tcp: TcpStream,
        verify: &Verify,
    ) -> Result<TlsMember, chatd::client::ClientError> {
        let server = format!("localhost:{}", tcp.peer_addr().expect("peer").port());
        let tls = tokio::time::timeout(TIMEOUT, chatd::client::tls::connect(tcp, &server, verify))
            .await
            .expect("handshake in time")?;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .expect("a certificate")
            .to_vec();
        let (read, writer) = tokio::io::split(tls);
        let mut member = TlsMember {
            lines: FramedRead::new(read, LinesCodec::new_with_max_length(1 << 16)),
            writer,
            cert,
            name: String::new(),
            welcome: String::new(),
        };
        let welcome = member.recv().await;
        assert!(welcome.contains("welcome"), "{welcome}");
        member.name = common::name_from_welcome(&welcome);
        member.welcome = welcome;
        Ok(member)
    }

    async fn send(&mut self, line: &str) {
        let bytes = format!("{line}\n");
        tokio::time::timeout(TIMEOUT, async {
            self.writer.write_all(bytes.as_bytes()).await?;
            self.writer.flush().await
        })
        .await
        .expect("send in time")
        .expect("send");
    }

    async fn recv(&mut self) -> String {
        match tokio::time::timeout(TIMEOUT, self.lines.next()).await {
            Ok(Some(Ok(line))) => line,
            other => panic!("no line: {other:?}"),
        }
    }

    /// Reads until a line containing `text`.
    async fn expect_containing(&mut self, text: &str) -> String {
        for _ in 0..1000 {
            let line = self.recv().await;
            if line.contains(text) {
                return line;
            }
        }
        panic!("never got {text:?}");
    }
}

/// Reads `child`'s stdout until a line containing `text`.
async fn expect_output(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    text: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in time"))
            .expect("read output")
            .unwrap_or_else(|| panic!("output ended before {text:?}"));
        if line.contains(text) {
            return line;
        }
    }
}

/// Starts a line tool (chatc, openssl, ncat) with piped stdin/stdout.
fn spawn_tool(program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
}

/// Drives a line tool connected to the TLS port both ways with a plain TCP member: it says
/// hello to `tcp`, and gets `tcp`'s answer.
async fn chats_both_ways(mut tool: Child, tcp: &mut TcpClient, tag: &str) {
    let mut stdin = tool.stdin.take().expect("stdin");
    let mut out = BufReader::new(tool.stdout.take().expect("stdout")).lines();
    expect_output(&mut out, "welcome").await;
    let joined = tcp.expect_joined().await;
    stdin
        .write_all(format!("hello from {tag}\n").as_bytes())
        .await
        .expect("write");
    stdin.flush().await.expect("flush");
    tcp.expect(&format!("<{joined}> hello from {tag}")).await;
    tcp.send(&format!("hello back, {tag}")).await;
    expect_output(&mut out, &format!("hello back, {tag}")).await;
    drop(stdin);
    let _ = tokio::time::timeout(TIMEOUT, tool.wait()).await;
}

#[tokio::test]
async fn chatc_openssl_and_ncat_chat_through_tls_with_a_tcp_member() {
    need("openssl", "openssl");
    need("ncat", "ncat");
    let pki = Pki::new("tools");
    let (cert, key, _) = pki.good("server");
    let server = start_server(&format!("--tls 0 {}", cert_flags(&cert, &key))).await;
    let tls = server.tls.expect("tls address");
    let mut tcp = TcpClient::connect(server.tcp).await;
    let port = tls.port().to_string();
    let ca = pki.ca.display().to_string();

    let chatc = spawn_tool(
        env!("CARGO_BIN_EXE_chatc"),
        &["--tls", "--ca", &ca, &format!("localhost:{port}")],
    );
    chats_both_ways(chatc, &mut tcp, "chatc").await;

    let connect = format!("127.0.0.1:{port}");
    let openssl = spawn_tool(
        "openssl",
        &[
            "s_client",
            "-quiet",
            "-connect",
            &connect,
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ],
    );
    chats_both_ways(openssl, &mut tcp, "openssl").await;

    let ncat = spawn_tool(
        "ncat",
        &["--ssl", "--ssl-trustfile", &ca, "localhost", &port],
    );
    chats_both_ways(ncat, &mut tcp, "ncat").await;
    server.shutdown().await;
}

/// Runs `chatc` with `args` and one line of input against `server`; returns (success, stdout,
/// stderr).
async fn chatc_once(args: &[&str]) -> (bool, String, String) {
    let mut child = spawn_tool(env!("CARGO_BIN_EXE_chatc"), args);
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"/who\n").await;
    drop(stdin);
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("chatc ends in time")
        .expect("chatc output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn chatc_refuses_expired_and_wrong_host_certificates_unless_told() {
    let pki = Pki::new("refuse");
    let (expired_cert, expired_key, _) = pki.leaf("expired", &["localhost"], (2020, 2021));
    let (other_cert, other_key, _) = pki.leaf("other", &["chat.example"], (2000, 4000));
    let (good_cert, good_key, _) = pki.good("good");
    let ca = pki.ca.display().to_string();
    for (cert, key, why) in [
        (&expired_cert, &expired_key, "expired"),
        (&other_cert, &other_key, "not valid for name"),
    ] {
        let server = start_server(&format!("--tls 0 {}", cert_flags(cert, key))).await;
        let target = format!("localhost:{}", server.tls.expect("tls").port());
        let (ok, out, err) = chatc_once(&["--tls", "--ca", &ca, &target]).await;
        assert!(!ok, "a certificate that is {why} was accepted: {out}");
        assert!(
            err.contains("TLS with") && err.contains(why),
            "the error says why ({why}): {err}"
        );
        assert!(!out.contains("welcome"), "{out}");
        let (ok, out, err) = chatc_once(&["--tls", "--insecure", &target]).await;
        assert!(ok, "--insecure connects anyway: {err}");
        assert!(out.contains("welcome"), "{out}");
        assert!(err.contains("WARNING") && err.contains("NOT"), "{err}");
        server.shutdown().await;
    }
    let server = start_server(&format!("--tls 0 {}", cert_flags(&good_cert, &good_key))).await;
    let target = format!("localhost:{}", server.tls.expect("tls").port());
    let (ok, out, err) = chatc_once(&["--tls", "--ca", &ca, &target]).await;
    assert!(ok, "the right CA is trusted: {err}");
    assert!(out.contains("welcome") && out.contains("tls"), "{out}");
    assert!(!err.contains("WARNING"), "{err}");
    // The system's trust store does not know the test CA.
    let (ok, _, err) = chatc_once(&["--tls", &target]).await;
    assert!(!ok && err.to_lowercase().contains("issuer"), "{err}");
    server.shutdown().await;
}

/// The running `chatd` binary with `args` (plus `--tcp 0`), its TCP and TLS addresses, and its
/// log from there on.
async fn spawn_tls_chatd(
    args: &[&str],
) -> (
    Child,
    SocketAddr,
    SocketAddr,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let (child, tcp, _, mut log) = common::spawn_logged_chatd(args, "chatd=info").await;
    let line = next_log(&mut log, "listening tls=").await;
    let tls = line
        .split("listening tls=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("tls address");
    (child, tcp, tls, log)
}

/// Reads the server's log until a line containing `text`.
async fn next_log(
    log: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    text: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(TIMEOUT, log.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line with {text:?} in time"))
            .expect("read log")
            .unwrap_or_else(|| panic!("chatd exited before logging {text:?}"));
        eprintln!("chatd: {line}");
        if line.contains(text) {
            return line;
        }
    }
}

fn hangup(child: &Child) {
    let pid = child.id().expect("chatd running") as libc::pid_t;
    // SAFETY: kill only sends a signal to the child we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn sighup_swaps_the_certificate_while_members_stay_and_a_bad_file_keeps_the_old_one() {
    let pki = Pki::new("reload");
    let (cert, key, first_der) = pki.good("live");
    let (next_cert, next_key, next_der) = pki.good("next");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let (mut child, tcp_addr, tls, mut log) =
        spawn_tls_chatd(&["--tls", "0", "--cert", &cert_arg, "--key", &key_arg]).await;
    let verify = Verify::Ca(pki.ca.clone());
    let mut old = TlsMember::connect(tls, &verify).await;
    assert_eq!(old.cert, first_der);
    let mut tcp = TcpClient::connect(tcp_addr).await;

    std::fs::copy(&next_cert, &cert).expect("new cert");
    std::fs::copy(&next_key, &key).expect("new key");
    hangup(&child);
    next_log(&mut log, "TLS certificate reloaded").await;
    let new = TlsMember::connect(tls, &verify).await;
    assert_eq!(
        new.cert, next_der,
        "a new handshake presents the new certificate"
    );
    // The member from before the reload is still in and chatting, both ways.
    old.send("still here").await;
    tcp.expect_match(|l| l.ends_with("> still here")).await;
    tcp.send("good to hear").await;
    old.expect_containing("good to hear").await;

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("break cert");
    hangup(&child);
    let line = next_log(&mut log, "not reloaded").await;
    assert!(line.contains("live.crt"), "the log names the file: {line}");
    let after = TlsMember::connect(tls, &verify).await;
    assert_eq!(after.cert, next_der, "the certificate in use is kept");
    old.send("and now").await;
    tcp.expect_match(|l| l.ends_with("> and now")).await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "chatd still runs"
    );
    child.start_kill().expect("kill");
}

/// The certificate a handshake with `addr` presents, checked as `verify` says.
async fn presented(addr: SocketAddr, verify: &Verify) -> Vec<u8> {
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let server = format!("localhost:{}", addr.port());
    let tls = tokio::time::timeout(TIMEOUT, chatd::client::tls::connect(tcp, &server, verify))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let certs = tls.get_ref().1.peer_certificates();
    certs
        .and_then(|c| c.first())
        .expect("a certificate")
        .to_vec()
}

#[tokio::test]
async fn sighup_swaps_the_ircs_certificate_too() {
    let pki = Pki::new("ircs-reload");
    let (cert, key, first_der) = pki.good("live");
    let (next_cert, next_key, next_der) = pki.good("next");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let args = ["--ircs", "0", "--cert", &cert_arg, "--key", &key_arg];
    let (mut child, _, _, mut log) = common::spawn_logged_chatd(&args, "chatd=info").await;
    let line = next_log(&mut log, "listening ircs=").await;
    let ircs: SocketAddr = line
        .split("listening ircs=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("ircs address");
    let verify = Verify::Ca(pki.ca.clone());
    assert_eq!(presented(ircs, &verify).await, first_der);
    std::fs::copy(&next_cert, &cert).expect("new cert");
    std::fs::copy(&next_key, &key).expect("new key");
    hangup(&child);
    next_log(&mut log, "TLS certificate reloaded").await;
    assert_eq!(
        presented(ircs, &verify).await,
        next_der,
        "a new --ircs handshake presents the new certificate"
    );
    child.start_kill().expect("kill");
}

#[tokio::test]
async fn self_signed_logs_the_fingerprint_it_presents() {
    let (mut child, _, before, mut log) =
        common::spawn_logged_chatd(&["--tls", "0", "--self-signed"], "chatd=info").await;
    // Logged before the listening lines.
    let logged = before
        .iter()
        .find(|l| l.contains("self-signed certificate"))
        .cloned()
        .expect("fingerprint logged");
    assert!(logged.contains("localhost, 127.0.0.1, ::1"), "{logged}");
    let line = next_log(&mut log, "listening tls=").await;
    let tls: SocketAddr = line
        .split("listening tls=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("tls address");
    let member = TlsMember::connect(tls, &Verify::Insecure).await;
    let sha256 = logged.split("sha256=").nth(1).expect("sha256=").trim();
    assert_eq!(
        sha256,
        chatd::transport::tls::certs::fingerprint(&member.cert)
    );
    child.start_kill().expect("kill");
}

/// Opens a TCP connection that never starts its handshake.
async fn stalled(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Waits for the server to close `stream`; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "nothing but a close: {read:?}"
    );
    start.elapsed()
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_in_time_and_holds_no_member_slot() {
    // 1.5 s: the real member's debug-build handshake below must fit in it on a loaded machine.
    let server =
        start_server("--tls 0 --self-signed --max-clients 2 --tls-handshake-timeout 1500ms").await;
    let tls = server.tls.expect("tls");
    let mut stalls = Vec::new();
    for _ in 0..3 {
        stalls.push(stalled(tls).await);
    }
    // Three stalled handshakes, two member slots: both members still get in.
    let mut member = TlsMember::connect(tls, &Verify::Insecure).await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    member.expect_containing("joined").await;
    for stall in &mut stalls {
        let took = closed_after(stall).await;
        assert!(took < Duration::from_secs(3), "dropped in time: {took:?}");
    }
    let metrics = https_get(server.http, "/metrics").await;
    assert!(
        metrics.contains("chatd_members{transport=\"tls\"} 1"),
        "{metrics}"
    );
    // Members are not touched by the handshake timeout.
    tcp.send("after the stalls").await;
    member.expect_containing("after the stalls").await;
    // And they get the shutdown notice like everyone else.
    server.shutdown().await;
    member.expect_containing("* server shutting down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_member_that_never_reads_is_cut_off_like_a_tcp_one() {
    let server = start_server("--tls 0 --self-signed --sendq 65536 --rate off").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let stuck = TlsMember::connect(server.tls.expect("tls"), &Verify::Insecure).await;
    watcher.expect(&format!("* {} joined", stuck.name)).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;
    // 1.5 MB of room traffic: far more than --sendq plus the buffers on both sides.
    let pad = "t".repeat(1000);
    for i in 0..1500 {
        sender.send(&format!("{i} {pad}")).await;
    }
    watcher
        .expect_match(|l| l == format!("* {} left (too slow)", stuck.name))
        .await;
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test]
async fn handshakes_in_progress_are_bounded_per_address() {
    let server =
        start_server("--tls 0 --self-signed --max-per-ip 2 --tls-handshake-timeout 5s").await;
    let tls = server.tls.expect("tls");
    let first = stalled(tls).await;
    let second = stalled(tls).await;
    // Wait until the server has taken both, so the third is surely over the limit.
    let mut third = loop {
        let mut probe = stalled(tls).await;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), probe.read(&mut buf)).await {
            Ok(_) => break probe,
            // Still open: the server had not counted the first two yet; this one now stalls too
            // and the next probe is surely over.
            Err(_) => drop(probe),
        }
    };
    let took = closed_after(&mut third).await;
    assert!(took < Duration::from_secs(1), "refused at once: {took:?}");
    drop((first, second));
    // With the stalls gone, a real member gets in.
    let member = TlsMember::connect(tls, &Verify::Insecure).await;
    drop(member);
    server.shutdown().await;
}

#[tokio::test]
async fn https_serves_the_page_and_a_wss_member_chats_with_tcp() {
    let server = start_server("--tls 0 --self-signed").await;
    let body = https_get(server.http, "/").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body:.200}");
    assert!(
        body.contains(r#"location.protocol === "https:" ? "wss://""#),
        "the page picks wss:// under https"
    );

    let url = format!("wss://localhost:{}/ws", server.http.port());
    let (mut ws, _) = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::client_async(url.as_str(), https_connect(server.http).await),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    assert!(next_text(&mut ws).await.contains("welcome"));
    let mut tcp = TcpClient::connect(server.tcp).await;
    loop {
        if next_text(&mut ws).await.ends_with(" joined") {
            break;
        }
    }
    tcp.send("hello wss").await;
    loop {
        if next_text(&mut ws).await.ends_with("> hello wss") {
            break;
        }
    }
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello tcp".into(),
    ))
    .await
    .expect("send");
    tcp.expect_match(|l| l.ends_with("> hello tcp")).await;
    server.shutdown().await;
}

/// The next text frame from a WebSocket.
async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
) -> String {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("frame in time")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return text.to_string();
        }
    }
}

/// A TLS connection to the HTTPS listener (any certificate).
async fn https_connect(http: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(http))
        .await
        .expect("connect in time")
        .expect("connect");
    let name = format!("localhost:{}", http.port());
    tokio::time::timeout(
        TIMEOUT,
        chatd::client::tls::connect(tcp, &name, &Verify::Insecure),
    )
    .await
    .expect("handshake in time")
    .expect("https handshake")
}

/// The whole response to `GET path` over HTTPS.
async fn https_get(http: SocketAddr, path: &str) -> String {
    let mut stream = https_connect(http).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut body = Vec::new();
    // The server may end without close_notify once it has answered: what came is the answer.
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut body))
        .await
        .expect("response in time");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_chatd_at_start_with_a_clear_error() {
    let pki = Pki::new("start");
    let (cert, _, _) = pki.good("a");
    let (_, other_key, _) = pki.good("b");
    let missing = pki.dir.join("missing.crt");
    let (cert, other_key, missing) = (
        cert.display().to_string(),
        other_key.display().to_string(),
        missing.display().to_string(),
    );
    for (args, says) in [
        (vec!["--tls", "0"], "--tls needs a certificate"),
        (
            vec!["--tls", "0", "--cert", &missing, "--key", &other_key],
            "cannot read",
        ),
        (
            vec!["--tls", "0", "--cert", &cert, "--key", &other_key],
            "b.key",
        ),
    ] {
        let output = tokio::time::timeout(
            TIMEOUT,
            Command::new(env!("CARGO_BIN_EXE_chatd"))
                .args(["--bind", "127.0.0.1"])
                .args(&args)
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("chatd exits in time")
        .expect("run chatd");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_members_in_the_bench_get_every_line() {
    let bin = Path::new(env!("CARGO_BIN_EXE_chatd"));
    let args = [
        "--tcp",
        "0",
        "--tls",
        "0",
        "--self-signed",
        "--bind",
        "127.0.0.1",
        "--rate",
        "off",
        "--sendq",
        "off",
    ];
    let mut server = loadgen::ServerProc::start_chatd(bin, &args, false)
        .await
        .expect("chatd starts");
    assert!(server.tls.is_some(), "the tls address was read off the log");
    let spec = loadgen::FanoutSpec {
        tcp_over_tls: true,
        ..loadgen::FanoutSpec::small("mini-tls")
    };
    let result = loadgen::run_fanout(&mut server, &spec).await.expect("case");
    server.stop().await;
    assert_eq!(result.tcp_connected, 6, "{:?}", result.connect_errors);
    // 2 senders x 50 lines to 5 others each.
    assert_eq!(result.expected, 500);
    assert_eq!(result.received, 500, "loss {}", result.loss);
    assert_eq!(result.duplicates, 0);
}

/// A TCP connection to `addr` from `from` (the default source when `None`) that sends `header`
/// at once, before anything else.
#[tokio::test]
async fn a_trusted_proxy_header_before_the_handshake_names_the_tls_member() {
    let server = start_server(
        "--tls 0 --self-signed --proxy-protocol --trusted-proxy 127.0.0.1 --max-per-ip 1",
    )
    .await;
    let tls = server.tls.expect("tls");
    let v1 = |source: &str, port: u16| {
        format!("PROXY TCP4 {source} 127.0.0.1 {port} 9000\r\n").into_bytes()
    };
    let ann = TlsMember::over(
        common::connect_with_header(tls, None, &v1("203.0.113.7", 40000)).await,
        &Verify::Insecure,
    )
    .await
    .expect("handshake after the header");
    assert!(
        ann.welcome
            .ends_with("(203.0.113.7:40000); type /help for commands"),
        "{}",
        ann.welcome
    );
    // --max-per-ip 1 counts the real addresses, not the proxy's.
    let bob = TlsMember::over(
        common::connect_with_header(tls, None, &v1("198.51.100.9", 4242)).await,
        &Verify::Insecure,
    )
    .await
    .expect("a second real address");
    assert!(
        bob.welcome.contains("(198.51.100.9:4242)"),
        "{}",
        bob.welcome
    );
    // A malformed header from the proxy, and any header from elsewhere, close the connection.
    let malformed = common::connect_with_header(tls, None, b"PROXY TCP4 nonsense\r\n").await;
    assert!(TlsMember::over(malformed, &Verify::Insecure).await.is_err());
    let stranger =
        common::connect_with_header(tls, Some(common::other_address()), &v1("192.0.2.1", 1)).await;
    assert!(TlsMember::over(stranger, &Verify::Insecure).await.is_err());
    drop((ann, bob));
    server.shutdown().await;
}

/// Addresses that stall handshakes in [`real_clients_get_in_while_many_addresses_stall_handshakes`].
const STALLING_ADDRESSES: u8 = 70;
/// Stalled handshakes each of them keeps trying to hold: `--max-per-ip`, as the attack did.
const STALLS_EACH: usize = 16;
/// Real TLS clients, each from its own address.
const REAL_CLIENTS: u8 = 20;

/// Raises this process's open-file limit to what the test needs (both ends of every connection
/// live here), or fails saying so.
fn need_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write exactly one rlimit, a live local.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = limit.rlim_max.min(needed);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "this test needs {needed} open files; the hard limit is {} (raise it: ulimit -Hn)",
        limit.rlim_max
    );
}

/// Hardening item 13: 70 addresses each holding `--max-per-ip` stalled handshakes (and opening a
/// new one whenever one is closed) once filled every handshake slot, and 1 of 89 real TLS clients
/// got in over 45 s. Now each address has a small share of the slots and timeouts shorten under
/// pressure: every real client gets in within 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_get_in_while_many_addresses_stall_handshakes() {
    let stalls = usize::from(STALLING_ADDRESSES) * STALLS_EACH;
    need_open_files(2 * stalls as u64 + 1024);
    let server = start_server("--tls 0 --self-signed").await;
    let tls = server.tls.expect("tls");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut stallers = tokio::task::JoinSet::new();
    for address in 0..STALLING_ADDRESSES {
        let from = std::net::IpAddr::from([127, 0, 2, address + 1]);
        for _ in 0..STALLS_EACH {
            let stop = stop.clone();
            stallers.spawn(async move {
                // Hold a connection that never shakes hands; when the server closes it, open
                // another a moment later, as an attacker's loop would.
                while !stop.is_cancelled() {
                    if let Ok(mut stream) = stalled_from(tls, from).await {
                        let mut buf = [0u8; 64];
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = stream.read(&mut buf) => {}
                        }
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            });
        }
    }
    // Let the stalls take what they can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    // Less than the 10 s handshake timeout: real clients must not wait for stalls to time out
    // (before, the first got in only then, the slowest after 18 s and 178 tries).
    let bound = Duration::from_secs(8);
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..REAL_CLIENTS {
        clients.spawn(async move {
            let from = std::net::IpAddr::from([127, 0, 3, n + 1]);
            let mut tries = 0;
            while started.elapsed() < bound {
                tries += 1;
                if let Ok(tcp) = stalled_from(tls, from).await {
                    if let Ok(member) = TlsMember::over(tcp, &Verify::Insecure).await {
                        return Some((started.elapsed(), tries, member));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        });
    }
    let mut got_in = Vec::new();
    let mut left_out = 0;
    while let Some(done) = tokio::time::timeout(bound + TIMEOUT * 2, clients.join_next())
        .await
        .expect("every real client is done within the bound")
    {
        match done.expect("client task did not panic") {
            Some(joined) => got_in.push(joined),
            None => left_out += 1,
        }
    }
    stop.cancel();
    let slowest = got_in.iter().map(|(took, _, _)| *took).max();
    let most_tries = got_in.iter().map(|(_, tries, _)| *tries).max();
    eprintln!(
        "{} of {REAL_CLIENTS} real clients got in (slowest after {slowest:?}, at most {most_tries:?} \
         tries) beside {stalls} stalling connections from {STALLING_ADDRESSES} addresses",
        got_in.len()
    );
    assert_eq!(
        left_out, 0,
        "real clients that never got in within {bound:?}"
    );
    while tokio::time::timeout(TIMEOUT, stallers.join_next())
        .await
        .expect("stallers stop")
        .is_some()
    {}
    drop(got_in);
    server.shutdown().await;
}

/// A TCP connection to `addr` from the local address `from` (that starts no handshake by itself).
async fn stalled_from(addr: SocketAddr, from: std::net::IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    tokio::time::timeout(TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))?
}
