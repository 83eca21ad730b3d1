//! `--cluster` stranded names: a node that dies with nobody left to notice (it was alone, or the
//! link was down for everyone) leaves its claims in the names bucket; a node that has been
//! connected for one `--cluster-timeout` finds the claims of nodes it does not hear and gives
//! them back, so the names are free again.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{log_until, spawn_chatd, spawn_logged_chatd, TcpClient, TIMEOUT};
use nats::Nats;

/// Node `a` is found lost after 1 s; `b`, the node that scans, waits 3 s, which is also the window
/// in which the tests see a found claim still held: wide enough for a loaded machine and for the
/// second a claim of a name held by nobody known is retried.
fn flags(nats: &Nats, node: &str) -> Vec<String> {
    let timeout = if node == "b" { "3s" } else { "1s" };
    [
        "--cluster",
        &nats.url(),
        "--node",
        node,
        "--cluster-timeout",
        timeout,
    ]
    .map(String::from)
    .to_vec()
}

fn args(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

async fn kill(child: &mut tokio::process::Child) {
    child.start_kill().expect("kill -9");
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("dies in time")
        .expect("wait");
}

/// Waits for `needle` in a node's log, among the lines logged before it listened or after.
async fn logged(
    before: &[String],
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) {
    if !before.iter().any(|l| l.contains(needle)) {
        log_until(lines, needle).await;
    }
}

#[tokio::test]
async fn a_lone_node_killed_with_sigkill_leaves_no_name_taken_for_good() {
    let nats = Nats::start("stranded").await;
    let a_flags = flags(&nats, "a");
    let (mut a, a_tcp, _) = spawn_chatd(&args(&a_flags), None).await;
    let _alice = TcpClient::with_nick(a_tcp, "alice").await;
    kill(&mut a).await;

    let b_flags = flags(&nats, "b");
    let (_b, b_tcp, before, mut log) = spawn_logged_chatd(&args(&b_flags), "chatd=info").await;
    let mut taker = TcpClient::connect(b_tcp).await;
    // Found, but held until a's silence has lasted one more timeout: still taken.
    logged(&before, &mut log, "stranded name claims found").await;
    taker.send("/nick alice").await;
    taker.expect("! that name is taken").await;
    let released = log_until(&mut log, "stranded name claims released").await;
    assert!(released.contains("released=1"), "{released}");
    taker.send("/nick alice").await;
    taker.expect("* you are now known as alice").await;
}

#[tokio::test]
async fn a_node_lost_while_nats_was_down_has_its_names_given_back_when_it_is_back() {
    let mut nats = Nats::start("stranded-link").await;
    let a_flags = flags(&nats, "a");
    let b_flags = flags(&nats, "b");
    let (mut a, a_tcp, _) = spawn_chatd(&args(&a_flags), None).await;
    let (_b, b_tcp, _, mut log) = spawn_logged_chatd(&args(&b_flags), "chatd=info").await;
    let mut watcher = TcpClient::connect(b_tcp).await;
    let mut alice = TcpClient::connect(a_tcp).await;
    watcher.expect(&format!("* {} joined", alice.name)).await;
    alice.send("/nick alice").await;
    alice.expect("* you are now known as alice").await;
    watcher.expect_renamed("alice").await;

    // a dies while nobody can hear it: b loses it but, cut off itself, keeps its claims.
    nats.kill().await;
    watcher.expect("* cluster link lost").await;
    kill(&mut a).await;
    watcher.expect("* alice left (node lost)").await;
    nats.restart().await;
    watcher.expect("* cluster link restored").await;
    let found = log_until(&mut log, "stranded name claims found").await;
    assert!(found.contains("claims=1"), "{found}");
    watcher.send("/nick alice").await;
    watcher.expect("! that name is taken").await;
    log_until(&mut log, "stranded name claims released").await;
    watcher.send("/nick alice").await;
    watcher.expect("* you are now known as alice").await;
}
