//! The `chatd` process itself: how it answers signals, and what it says when it cannot bind.
mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use common::{TcpClient, UdpClient, TIMEOUT};

/// A running `chatd` with its log lines available to the test.
struct Chatd {
    child: tokio::process::Child,
    log: mpsc::UnboundedReceiver<String>,
    tcp: SocketAddr,
    udp: SocketAddr,
}

impl Chatd {
    async fn start() -> Chatd {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--tcp", "0", "--udp", "0", "--bind", "127.0.0.1"])
            .env("RUST_LOG", "chatd=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chatd");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, log) = mpsc::unbounded_channel();
        // Relays the log (shown by the harness on failure) and hands it to the test.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("chatd: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut chatd = Chatd {
            child,
            log,
            tcp: "0.0.0.0:0".parse().expect("addr"),
            udp: "0.0.0.0:0".parse().expect("addr"),
        };
        let tcp = chatd.log_value("listening tcp=").await;
        let udp = chatd.log_value("listening udp=").await;
        chatd.tcp = tcp.parse().expect("tcp addr");
        chatd.udp = udp.parse().expect("udp addr");
        chatd
    }

    /// Waits for a log line containing `marker`; returns what follows it.
    async fn log_value(&mut self, marker: &str) -> String {
        loop {
            let line = tokio::time::timeout(TIMEOUT, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {marker:?} in time"))
                .unwrap_or_else(|| panic!("chatd exited before logging {marker:?}"));
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.trim().to_string();
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("pid") as libc::pid_t;
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

/// A TCP and a UDP member of `chatd`, each having seen the other arrive.
async fn members(chatd: &Chatd) -> (TcpClient, UdpClient) {
    let mut tcp = TcpClient::connect(chatd.tcp).await;
    let udp = UdpClient::join(chatd.udp).await;
    tcp.expect(&format!("* {} joined", udp.name)).await;
    (tcp, udp)
}

#[tokio::test]
async fn sighup_without_a_config_file_is_logged_and_changes_nothing() {
    let mut chatd = Chatd::start().await;
    let (mut tcp, udp) = members(&chatd).await;
    chatd.signal(libc::SIGHUP);
    chatd
        .log_value("SIGHUP received; no --config file to reload")
        .await;
    // Still serving both transports.
    udp.send("still up").await;
    assert_eq!(tcp.recv().await, format!("<{}> still up", udp.name));
    assert!(chatd.child.try_wait().expect("try_wait").is_none());
    chatd.signal(libc::SIGTERM);
    let status = tokio::time::timeout(TIMEOUT, chatd.child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn other_terminating_signals_get_the_graceful_shutdown_with_its_notice() {
    for signal in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGQUIT, libc::SIGALRM] {
        let mut chatd = Chatd::start().await;
        let (mut tcp, udp) = members(&chatd).await;
        chatd.signal(signal);
        let status = tokio::time::timeout(TIMEOUT, chatd.child.wait())
            .await
            .expect("chatd exits after the signal")
            .expect("wait");
        assert!(status.success(), "signal {signal}: exit status {status:?}");
        assert_eq!(
            tcp.expect_closed().await,
            vec!["* server shutting down".to_string()],
            "signal {signal}"
        );
        assert_eq!(
            udp.recv().await,
            "* server shutting down",
            "signal {signal}"
        );
    }
}

/// Runs `chatd` with `args`, expecting it to fail at once; returns its stderr.
fn failing_chatd(args: &[&str]) -> String {
    // These invocations exit at once; a hang would be a bug, and the harness's own timeout of the
    // test binary is the bound.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run chatd");
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bind_error_says_which_transport_and_address_failed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let stderr = failing_chatd(&["--tcp", &port, "--bind", "127.0.0.1"]);
    let want = format!("chatd: cannot bind tcp 127.0.0.1:{port}: ");
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "expected {want:?}...:\n{stderr}"
    );

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let stderr = failing_chatd(&["--udp", &port, "--bind", "127.0.0.1"]);
    let want = format!("chatd: cannot bind udp 127.0.0.1:{port}: ");
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "expected {want:?}...:\n{stderr}"
    );
}
