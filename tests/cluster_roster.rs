//! `--cluster` rosters of any size: a node that joins after another already holds many members
//! learns every one of them from that node's roster, which travels in parts (each well under the
//! NATS server's `max_payload`) and is applied only once whole.
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{start_server, TcpClient, TIMEOUT};
use nats::Nats;

/// Members on the first node, the named one included: their roster is about 100 KB of JSON.
const MEMBERS: usize = 1_000;

#[tokio::test]
async fn a_node_started_later_learns_a_roster_too_long_for_one_message() {
    // A server that takes messages of 32 KiB at most: no roster of 1,000 members fits one, so
    // the second node can only learn them from a roster in parts (16 KiB each here).
    let nats = Nats::start_with("roster", "max_payload: 32768").await;
    let a = start_server(&format!(
        "{} --max-per-ip 2000 --max-clients 2000",
        nats.flags("a")
    ))
    .await;
    let mut members = Vec::with_capacity(MEMBERS);
    for _ in 0..(MEMBERS - 1) / 100 {
        let batch = (0..100).map(|_| TcpClient::connect(a.tcp));
        members.extend(futures::future::join_all(batch).await);
    }
    while members.len() < MEMBERS - 1 {
        members.push(TcpClient::connect(a.tcp).await);
    }
    let zelda = TcpClient::with_nick(a.tcp, "zelda").await;
    let mut expected: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    expected.insert(zelda.name.clone());
    assert_eq!(expected.len(), MEMBERS);

    // Node b starts after all of them joined: it hears of them only through a's roster.
    let b = start_server(&nats.flags("b")).await;
    let mut bob = TcpClient::with_nick(b.tcp, "bob").await;
    expected.insert("bob".into());
    // A node's first roster announces nobody, so nothing marks its arrival: ask until the whole
    // cluster is listed, a bounded number of times.
    let started = Instant::now();
    let listed = loop {
        let (count, lines) = who(&mut bob).await;
        if count == MEMBERS + 1 {
            break lines;
        }
        assert!(
            started.elapsed() < TIMEOUT * 2,
            "b never learned a's whole roster: /who lists {count}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // /who lists the first 100 by name, then how many more.
    let first: Vec<String> = expected
        .iter()
        .take(100)
        .map(|name| match name.as_str() {
            "bob" => "*   bob (tcp) (you)".to_string(),
            name => format!("*   {name} (tcp on a)"),
        })
        .collect();
    assert_eq!(&listed[..100], &first[..]);
    assert_eq!(
        listed[100],
        format!("*   ... and {} more", MEMBERS + 1 - 100)
    );
    // The last to join holds her name cluster-wide, and b knows.
    bob.send("/nick zelda").await;
    bob.expect("! that name is taken").await;
    drop(members);
}

/// Sends `/who` and reads its answer: the count, then the lines listed (100 at most, then how
/// many more).
async fn who(client: &mut TcpClient) -> (usize, Vec<String>) {
    client.send("/who").await;
    let mut header = client.recv().await;
    // Join notices from a may come first.
    while !header.ends_with(" here:") {
        header = client.recv().await;
    }
    let count: usize = header
        .trim_start_matches("* ")
        .trim_end_matches(" here:")
        .parse()
        .expect("a count");
    let mut lines = Vec::new();
    for _ in 0..count.min(100) + usize::from(count > 100) {
        lines.push(client.recv().await);
    }
    (count, lines)
}
