//! The fan-out bench's nats-server column, in miniature: the load generator's NATS clients
//! (`CONNECT` without echo, `SUB room 1`, `PUB room 64`) get every message from a real nats-server
//! (which CI installs), both at its default and at GOMAXPROCS=1; and a server the generator did not
//! start (`ServerProc::attach`, what the `loadgen` command does) is loaded the same way. Seconds,
//! not a measurement: it proves the bench and the tool measure what they say.
mod common;

use std::path::PathBuf;

use loadgen::{run_fanout, FanoutSpec, ServerKind, ServerProc};

fn spec(name: &str) -> FanoutSpec {
    FanoutSpec::small(name)
}

fn nats_server() -> Option<PathBuf> {
    loadgen::server::find_on_path("nats-server")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_clients_in_the_bench_get_every_message() {
    // .ci/run installs it; like every test needing an outside program, a missing one is a failure.
    let bin = nats_server().expect(
        "nats-server not found: install the Debian package `nats-server` (apt-get install nats-server)",
    );
    for kind in [ServerKind::Nats, ServerKind::NatsOneProc] {
        let mut server = ServerProc::start_nats(&bin, kind)
            .await
            .expect("nats-server starts");
        let result = run_fanout(&mut server, &spec(kind.name()))
            .await
            .expect("case runs");
        server.stop().await;
        assert_eq!(result.tcp_connected, 6, "{:?}", result.connect_errors);
        // echo off: every message reaches the other 5 subscribers, never its sender.
        assert_eq!(result.expected, 500, "{}", kind.name());
        assert_eq!(
            result.received,
            500,
            "{}: loss {}",
            kind.name(),
            result.loss
        );
        assert_eq!(result.duplicates, 0, "{}", kind.name());
        assert!(result.server_cpu_s.is_finite(), "CPU read from /proc");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_server_is_loaded_like_a_started_one() {
    let server = common::start_server("--rate off --sendq off").await;
    let mut attached = ServerProc::attach(ServerKind::Chatd, server.tcp, Some(server.udp), None);
    let result = run_fanout(&mut attached, &spec("attached"))
        .await
        .expect("case runs");
    assert_eq!(result.tcp_connected, 6, "{:?}", result.connect_errors);
    assert_eq!(result.received, result.expected);
    assert_eq!(result.expected, 500);
    // No pid given: its CPU is unknown, not zero.
    assert!(result.server_cpu_s.is_nan());
    attached.stop().await;
    server.shutdown().await;
}
