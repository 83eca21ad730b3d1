//! Real netcat (`nc` from netcat-openbsd) over TCP and UDP: the product's promise.
mod common;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use common::{start_server, TcpClient, TIMEOUT};

struct Netcat {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Netcat {
    fn spawn(args: &[&str]) -> Netcat {
        let mut child = Command::new("nc")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("netcat (nc from netcat-openbsd) must be installed; .ci/run installs it");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Netcat {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to nc");
        self.stdin.flush().await.expect("flush nc");
    }

    async fn recv(&mut self) -> String {
        tokio::time::timeout(TIMEOUT, self.stdout.next_line())
            .await
            .expect("nc printed a line in time")
            .expect("read nc output")
            .expect("nc exited")
    }

    async fn expect(&mut self, expected: &str) {
        for _ in 0..1000 {
            if self.recv().await == expected {
                return;
            }
        }
        panic!("nc never printed {expected:?}");
    }
}

#[tokio::test]
async fn netcat_over_tcp_chats_with_a_client() {
    let server = start_server("").await;
    let port = server.tcp.port().to_string();
    let mut nc = Netcat::spawn(&["127.0.0.1", &port]);
    let welcome = nc.recv().await;
    assert!(
        welcome.starts_with("* welcome to chatd - you are guest-")
            && welcome.contains("(127.0.0.1:"),
        "{welcome}"
    );
    let mut other = TcpClient::connect(server.tcp).await;
    nc.expect(&format!("* {} joined", other.name)).await;

    nc.send("/nick netcat").await;
    nc.expect("* you are now known as netcat").await;
    nc.send("hello from nc").await;
    other.expect("<netcat> hello from nc").await;
    other.send("hello nc").await;
    nc.expect(&format!("<{}> hello nc", other.name)).await;
    nc.send("/quit").await;
    other.expect("* netcat left").await;
    nc.expect("* bye").await;
    // netcat-openbsd keeps running after the server's FIN until its user presses Enter again;
    // the server resets the connection after `/quit`, so nc ends at once with its stdin open.
    let status = tokio::time::timeout(TIMEOUT, nc.child.wait())
        .await
        .expect("nc exits after /quit without another Enter")
        .expect("wait nc");
    assert!(status.success(), "{status:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn netcat_over_udp_chats_with_a_client() {
    let server = start_server("").await;
    let port = server.udp.port().to_string();
    let mut other = TcpClient::connect(server.tcp).await;
    let mut nc = Netcat::spawn(&["-u", "127.0.0.1", &port]);
    // A netcat user joins by saying anything; the first line is delivered too.
    nc.send("hi, udp here").await;
    let welcome = nc.recv().await;
    assert!(
        welcome.starts_with("* welcome to chatd - you are guest-")
            && welcome.contains("(127.0.0.1:"),
        "{welcome}"
    );
    let name = common::name_from_welcome(&welcome);
    other.expect(&format!("* {name} joined")).await;
    other.expect(&format!("<{name}> hi, udp here")).await;
    other.send("hello udp").await;
    nc.expect(&format!("<{}> hello udp", other.name)).await;
    nc.send("/who").await;
    nc.expect("* 2 here:").await;
    server.shutdown().await;
    nc.expect("* server shutting down").await;
}
