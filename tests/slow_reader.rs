//! A member that never reads must not slow anyone else, and memory stays bounded by the backlog.
mod common;

use common::{start_server, TcpClient, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_all_1000_messages_while_another_never_reads() {
    let server = start_server("--backlog 1024 --rate off").await;
    let mut reader = TcpClient::connect(server.tcp).await;
    // Connected, greeted, and then never read again.
    let stuck = TcpClient::connect(server.tcp).await;
    reader.expect(&format!("* {} joined", stuck.name)).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    reader.expect(&format!("* {} joined", sender.name)).await;

    // ~200 bytes a line: 1,000 lines are far more than the stuck socket's buffers hold.
    let pad = "p".repeat(200);
    for i in 0..1000 {
        sender.send(&format!("{i} {pad}")).await;
    }
    for i in 0..1000 {
        assert_eq!(reader.recv().await, format!("<{}> {i} {pad}", sender.name));
    }
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_reader_is_told_how_many_messages_it_missed() {
    let server = start_server("--backlog 16 --rate off --sendq off").await;
    let mut slow = TcpClient::connect(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    slow.expect(&format!("* {} joined", sender.name)).await;
    // Big lines so the slow member's socket buffers fill and its cursor falls behind the ring.
    let pad = "q".repeat(4000);
    let total = 3000;
    for i in 0..total {
        sender.send(&format!("{i} {pad}")).await;
    }
    sender.send("last").await;
    let mut received = 0;
    let mut missed = 0u64;
    loop {
        let line = slow.recv().await;
        if let Some(n) = line.strip_prefix("! you missed ") {
            missed += n
                .trim_end_matches(" messages")
                .parse::<u64>()
                .expect("a count");
        } else if line == format!("<{}> last", sender.name) {
            break;
        } else {
            received += 1;
        }
    }
    assert!(
        missed > 0,
        "a 16-line backlog cannot hold {total} big lines"
    );
    assert_eq!(
        received + missed,
        total,
        "every line is either delivered or counted as missed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reader_is_cut_off_near_the_send_queue_limit_not_megabytes_later() {
    // Linux autotunes a socket's send buffer up to net.ipv4.tcp_wmem's maximum (4 MiB by default)
    // when the peer does not read, and the send queue only counts what the kernel would not take:
    // without a cap a non-reader pinned ~4 MiB of kernel memory before --sendq even applied.
    let server = start_server("--sendq 65536 --rate off").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let stuck = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", stuck.name)).await;
    let mut sender = TcpClient::connect(server.tcp).await;
    watcher.expect(&format!("* {} joined", sender.name)).await;

    // 1.5 MB of room traffic: far more than 64 KiB plus the buffers on both sides once capped, far
    // less than an autotuned send buffer holds.
    let pad = "n".repeat(1000);
    let lines = 1500;
    let stuck_left = format!("* {} left (too slow)", stuck.name);
    let mut cut_off_after = None;
    for i in 0..lines {
        sender.send(&format!("{i} {pad}")).await;
        // The watcher keeps reading, so it is never the slow one.
        let line = watcher.recv().await;
        if line == stuck_left {
            cut_off_after = Some(i);
            break;
        }
        assert_eq!(line, format!("<{}> {i} {pad}", sender.name));
    }
    match cut_off_after {
        Some(n) => eprintln!("non-reader cut off after {n} lines of 1 KB"),
        None => {
            // The send queue is checked periodically while the socket is full, so on a fast machine
            // all the lines may be out before the next check: it must still come, with no more
            // traffic, because the 1.5 MB is now stuck far beyond the limit. Before the buffer cap
            // the kernel took it all and the writer never even blocked.
            tokio::time::timeout(TIMEOUT, async {
                while watcher.recv().await != stuck_left {}
            })
            .await
            .unwrap_or_else(|_| {
                panic!("a non-reader with --sendq 65536 was still connected after {lines} lines of 1 KB")
            });
            eprintln!("non-reader cut off at the first check after all {lines} lines of 1 KB");
        }
    }
    drop(stuck);
    server.shutdown().await;
}
