//! UDP on a host with several addresses: a server bound to every address (`0.0.0.0`, `::`)
//! answers each datagram from the address it was sent to, so a peer that wrote to 127.0.0.2 or
//! ::1 (a connected socket, `nc -u`) hears its replies and its room; `--bind` repeats to serve on
//! several addresses.
mod common;

use std::net::{IpAddr, SocketAddr};

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};
use common::{TcpClient, TIMEOUT};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Serves `flags` in this process until the returned sender is dropped.
async fn serve(flags: &str) -> (Listeners, ServerArgs) {
    let args: ServerArgs = flags.parse().expect("arguments");
    let listeners = Listeners::bind(&args).await.expect("bind");
    (listeners, args)
}

fn run(listeners: Listeners, args: &ServerArgs) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::run(args.config(), listeners, async move {
        let _ = stopped.await;
    }));
    stop
}

/// A UDP socket on `from`, connected to `to`: like `nc -u`, it accepts datagrams only from `to`.
async fn peer(from: &str, to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(from).await.expect("bind peer");
    socket.connect(to).await.expect("connect peer");
    socket
}

async fn recv(socket: &UdpSocket, what: &str) -> String {
    let mut buf = [0u8; 2048];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing arrived from the address written to"))
        .expect("recv");
    String::from_utf8_lossy(&buf[..len]).trim_end().to_string()
}

/// Receives until a datagram equal to `line`.
async fn expect(socket: &UdpSocket, line: &str) {
    for _ in 0..50 {
        if recv(socket, line).await == line {
            return;
        }
    }
    panic!("never got {line:?}");
}

#[tokio::test]
async fn a_wildcard_server_answers_each_udp_peer_from_the_address_it_wrote_to() {
    for (bind, targets) in [
        ("0.0.0.0", ["127.0.0.1", "127.0.0.2"]),
        ("::", ["::1", "127.0.0.3"]),
    ] {
        // Validation (on by default on a wildcard bind) is not what this test is about.
        let (listeners, args) =
            serve(&format!("--tcp 0 --udp 0 --bind {bind} --udp-validate off")).await;
        let tcp_port = listeners.tcp_addr().expect("tcp").port();
        let udp_port = listeners.udp_addr().expect("udp").port();
        let stop = run(listeners, &args);
        let mut watcher =
            TcpClient::with_nick(SocketAddr::from(([127, 0, 0, 1], tcp_port)), "watcher").await;
        for target in targets {
            let ip: IpAddr = target.parse().expect("ip");
            let from = if ip.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let udp = peer(from, SocketAddr::new(ip, udp_port)).await;
            udp.send(b"hello from a second address")
                .await
                .expect("send");
            let welcome = recv(&udp, &format!("the welcome via {target}")).await;
            assert!(welcome.starts_with("* welcome to chatd"), "{welcome}");
            let name = common::name_from_welcome(&welcome);
            watcher
                .expect(&format!("<{name}> hello from a second address"))
                .await;
            // The room's lines (the batched fan-out) come from there too.
            watcher.send(&format!("hi {target}")).await;
            expect(&udp, &format!("<watcher> hi {target}")).await;
            udp.send(b"/quit").await.expect("send");
            expect(&udp, "* bye").await;
        }
        drop(stop);
    }
}

/// `chatc scan --udp 127.0.0.1-5` finds a server bound to every address at each of the five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_scan_finds_a_wildcard_server_at_every_loopback_address() {
    let (listeners, args) = serve("--udp 0 --bind 0.0.0.0 --name wide").await;
    let port = listeners.udp_addr().expect("udp").port().to_string();
    let stop = run(listeners, &args);
    let scan = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatc"))
        .args(["scan", "127.0.0.1-5", "--port", &port, "--udp", "--json"])
        .args(["--timeout", "2s"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT * 2, scan)
        .await
        .expect("the scan ends in time")
        .expect("run chatc scan");
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|doc| doc["address"].as_str().unwrap_or_default().to_string())
        .collect();
    let expected: Vec<String> = (1..=5).map(|i| format!("127.0.0.{i}:{port}")).collect();
    assert_eq!(found, expected, "{text}");
    drop(stop);
}

/// `--bind` repeats: one listener per address, each serving.
#[tokio::test]
async fn bind_repeats_to_serve_on_several_addresses() {
    let (listeners, args) = serve("--tcp 0 --udp 0 --bind 127.0.0.1 --bind ::1").await;
    assert_eq!((listeners.tcp.len(), listeners.udp.len()), (2, 2));
    let tcp: Vec<SocketAddr> = listeners
        .tcp
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    let udp: Vec<SocketAddr> = listeners
        .udp
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect();
    let stop = run(listeners, &args);
    let mut v4 = TcpClient::with_nick(tcp[0], "four").await;
    let _v6 = TcpClient::with_nick(tcp[1], "six").await;
    v4.expect_match(|l| l.ends_with("is now known as six"))
        .await;
    let over_v6 = peer("[::1]:0", udp[1]).await;
    over_v6.send(b"#ping#").await.expect("send");
    let welcome = recv(&over_v6, "the welcome over ::1").await;
    assert!(welcome.contains("[::1]:"), "{welcome}");
    drop(stop);
}
