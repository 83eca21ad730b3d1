//! Connect-and-hang-up churn (hardening item 12): one address connecting and hanging up in a loop
//! once made 261k join and leave notices in 20 s, and a member reading at about 256 kbit/s got 1 of
//! 120 chat lines before it was cut off. Joins from one address are now rate-limited (refused with
//! a one-line answer), and a room paces its join and leave notices.
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use common::{start_server, TcpClient, TIMEOUT};

/// Chat lines the honest member sends.
const LINES: usize = 120;
/// The churners give up after this many connections or this long, whichever comes first.
const CHURNS: usize = 20_000;
/// Connections the churning address keeps going at once.
const CHURNERS: usize = 16;
const CHURN_FOR: Duration = Duration::from_secs(10);
/// How much the slow reader takes per read, and how often: about 256 kbit/s.
const READ_CHUNK: usize = 1024;
const READ_EVERY: Duration = Duration::from_millis(32);

fn churner_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

/// Connects from `from` and hangs up as soon as the server has said its first line (a welcome or a
/// refusal), which it returns; `None` when the connection failed or closed silently.
async fn connect_and_hang_up(server: SocketAddr, from: IpAddr) -> Option<String> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    let mut stream = timeout(TIMEOUT, socket.connect(server)).await.ok()?.ok()?;
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while timeout(TIMEOUT, stream.read(&mut byte)).await.ok()?.ok()? == 1 {
        if byte[0] == b'\n' {
            break;
        }
        first.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&first).into_owned())
}

/// A reader on a slow link: a small receive buffer, read a kilobyte at a time, ~32 KB/s.
async fn slow_reader(server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("small buffer");
    timeout(TIMEOUT, socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_from_one_address_neither_buries_chat_nor_gets_a_slow_reader_cut_off() {
    let server = start_server("--rate 50 --burst 50").await;
    let mut reader = slow_reader(server.tcp).await;
    let mut sender = TcpClient::connect(server.tcp).await;

    // Churn from another address for as long as the chat goes on (bounded).
    let addr = server.tcp;
    let started = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + CHURN_FOR;
    let mut churners = JoinSet::new();
    for _ in 0..CHURNERS {
        let started = Arc::clone(&started);
        churners.spawn(async move {
            let (mut welcomed, mut refusals) = (0usize, Vec::new());
            while Instant::now() < until && started.fetch_add(1, Ordering::Relaxed) < CHURNS {
                match connect_and_hang_up(addr, churner_ip()).await {
                    Some(line) if line.starts_with("! ") => refusals.push(line),
                    Some(_) => welcomed += 1,
                    None => {}
                }
            }
            (welcomed, refusals)
        });
    }

    // 120 lines at 25 a second while the churn runs.
    sleep(Duration::from_millis(500)).await;
    let pad = "c".repeat(80);
    for i in 0..LINES {
        sender.send(&format!("line {i} {pad}")).await;
        sleep(Duration::from_millis(40)).await;
    }
    sender.send("done").await;

    // The slow reader reads everything that came, at its own pace, until the last line (or until
    // the server cuts it off, or a generous bound passes).
    let done = format!("<{}> done", sender.name);
    let mut text = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let give_up = Instant::now() + Duration::from_secs(90);
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(give_up, reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => text.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if text
            .split(|&b| b == b'\n')
            .any(|line| line == done.as_bytes())
        {
            break;
        }
        sleep(READ_EVERY).await;
    }
    let (mut welcomed, mut refusals) = (0, Vec::new());
    while let Some(done) = timeout(CHURN_FOR + TIMEOUT * 2, churners.join_next())
        .await
        .expect("the churners stop in time")
    {
        let (joins, refused) = done.expect("churner did not panic");
        welcomed += joins;
        refusals.extend(refused);
    }

    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let chat: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("<{}> line ", sender.name)))
        .collect();
    let expected: Vec<String> = (0..LINES).map(|i| format!("{i} {pad}")).collect();
    let notices = lines.iter().filter(|l| l.starts_with("* ")).count();
    eprintln!(
        "churner: {welcomed} welcomed, {} refused; reader: {} lines, {notices} notices, {} chat",
        refusals.len(),
        lines.len(),
        chat.len()
    );
    let trouble: Vec<&&str> = lines.iter().filter(|l| l.starts_with("! ")).collect();
    assert!(trouble.is_empty(), "the reader was told: {trouble:?}");
    assert!(!closed, "the reader was disconnected");
    assert_eq!(chat, expected, "every chat line, in order");
    // Each refusal is one clear line: joining too often, or (with 16 churners at once) over
    // `--max-per-ip`.
    const TOO_OFTEN: &str =
        "! your address is connecting too often; wait a few seconds and try again";
    let unclear: Vec<&String> = refusals
        .iter()
        .filter(|l| *l != TOO_OFTEN && *l != "! too many connections from your address")
        .collect();
    assert!(
        unclear.is_empty(),
        "refusals: {:?}",
        &unclear[..unclear.len().min(3)]
    );
    assert!(
        refusals.iter().any(|l| l == TOO_OFTEN),
        "the churner was never refused for joining too often ({welcomed} joins)"
    );
    // The burst an address may take at once (4 x --max-per-ip) plus the rate over the churn.
    assert!(
        welcomed <= 64 + 4 * (CHURN_FOR.as_secs() as usize + 10),
        "{welcomed} joins from one address"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_paces_join_notices_and_then_says_how_many_it_left_out() {
    // A 32-event backlog: at most 8 notices at once, then 2 a second.
    let server = start_server("--backlog 32 --max-per-ip 64").await;
    let mut watcher = TcpClient::connect(server.tcp).await;
    let mut joiners = Vec::new();
    for _ in 0..20 {
        joiners.push(TcpClient::connect(server.tcp).await);
    }
    for joiner in &joiners[..7] {
        watcher.expect(&format!("* {} joined", joiner.name)).await;
    }
    // The rest arrived faster than the room's pace. Once it has had time to recover (2 a second),
    // the next join is announced, after a line that counts the ones left out.
    sleep(Duration::from_millis(1500)).await;
    let late = TcpClient::connect(server.tcp).await;
    let skipped = watcher.expect(&format!("* {} joined", late.name)).await;
    let counted: u64 = skipped
        .iter()
        .filter_map(|l| {
            l.strip_prefix("* ")?
                .strip_suffix(" more joins and leaves were not announced (too many at once)")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let announced = skipped.iter().filter(|l| l.ends_with(" joined")).count();
    assert!(counted > 0, "some joins were left out: {skipped:?}");
    assert_eq!(
        announced as u64 + counted,
        13,
        "each of the other joins is announced or counted: {skipped:?}"
    );
    // Pacing leaves out notices, not members: everyone is in the room.
    watcher.send("/who").await;
    // The watcher, the 20 joiners and the late one.
    watcher.expect("* 22 here:").await;
    drop((joiners, late));
    server.shutdown().await;
}
