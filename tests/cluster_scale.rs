//! The measuring side of `cluster-scale` (loadgen's `scale` workers), proven against real nodes:
//! members spread over two nodes joined through a real nats-server get each numbered line once,
//! and the worker counts and times exactly what they got.
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{start_server, TcpClient, TIMEOUT};
use loadgen::msg::{self, Token, MSG_LEN};
use loadgen::scale::{mono_ns, Worker, WorkerSpec};
use nats::Nats;

const LINES: u32 = 6;
const SPACED: u32 = 2;
const PER_NODE: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_nodes_count_and_time_every_line_once() {
    let nats = Nats::start("scale").await;
    let flags = |node| format!("{} --max-per-ip 200", nats.flags(node));
    let a = start_server(&flags("a")).await;
    let b = start_server(&flags("b")).await;
    let spec = |server| WorkerSpec {
        server,
        members: PER_NODE,
        source: IpAddr::V4(Ipv4Addr::LOCALHOST),
        lines: LINES,
        spaced: SPACED,
        concurrency: 8,
    };
    let on_a = Worker::start(&spec(a.tcp)).await;
    let on_b = Worker::start(&spec(b.tcp)).await;
    assert_eq!(on_a.report().members + on_b.report().members, 2 * PER_NODE);
    // The sender is one more member of a: its lines reach b's members through NATS.
    let mut sender = TcpClient::connect(a.tcp).await;
    let sent_from = mono_ns();
    for seq in 0..LINES {
        let line = msg::line(Token {
            sender: 0,
            seq,
            sent_ns: mono_ns(),
        });
        sender
            .send(std::str::from_utf8(&line[..MSG_LEN - 1]).expect("ascii"))
            .await;
    }
    let want = 2 * PER_NODE as u64;
    let arrived = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (ra, rb) = (on_a.report(), on_b.report());
            if ra
                .lines
                .iter()
                .zip(&rb.lines)
                .all(|(x, y)| x.receivers + y.receivers >= want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(arrived.is_ok(), "not every member got every line in time");
    let mut total = on_a.stop().await;
    total.merge(&on_b.stop().await);
    assert_eq!(total.members, 2 * PER_NODE);
    for (seq, seen) in total.lines.iter().enumerate() {
        assert_eq!(seen.receivers, want, "line {seq}");
        assert!(
            seen.first_ns >= sent_from && seen.last_ns >= seen.first_ns,
            "line {seq}"
        );
    }
    assert_eq!(total.duplicates, 0);
    assert_eq!(total.spaced.count(), u64::from(SPACED) * want);
    assert_eq!(total.burst.count(), u64::from(LINES - SPACED) * want);
    assert_eq!(total.closed, 0, "no member was cut off");
}
