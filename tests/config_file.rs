//! `--config FILE`: a TOML file sets what the flags set (the flags still win), its values are
//! parsed and bounded like the flags', and SIGHUP re-reads it without dropping anyone.

mod common;

use std::path::PathBuf;

use common::{log_until, spawn_logged_chatd, TcpClient, TIMEOUT};

/// A fresh config file for one test.
fn config_file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatd-config-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chatd.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Replaces the file whole, as an editor or a deployment would (never half-written when read).
fn rewrite(path: &PathBuf, text: &str) {
    let next = path.with_extension("new");
    std::fs::write(&next, text).expect("write config");
    std::fs::rename(&next, path).expect("replace config");
}

fn hangup(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

/// Connects and returns the client with its welcome line.
async fn welcomed(addr: std::net::SocketAddr) -> (TcpClient, String) {
    let mut client = TcpClient::connect_raw(addr).await;
    let welcome = client.recv().await;
    client.name = common::name_from_welcome(&welcome);
    (client, welcome)
}

/// Runs the binary to its exit with `args` (TCP on port 0), returning its status and stderr.
async fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--tcp", "0", "--bind", "127.0.0.1"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, output)
        .await
        .expect("chatd exits in time")
        .expect("run chatd");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_config_file_sets_what_the_flags_set() {
    let path = config_file(
        "sets",
        "# chatd settings\nmotd = \"hello from the file\"\nmax-line = 32\nmax-per-ip = 2\n",
    );
    let config = path.to_str().expect("utf-8 path");
    let (_child, addr, _, _lines) = spawn_logged_chatd(&["--config", config], "info").await;
    let (mut ann, welcome) = welcomed(addr).await;
    assert!(
        welcome.starts_with("* hello from the file - you are "),
        "{welcome}"
    );
    ann.send(&"x".repeat(40)).await;
    ann.expect("! line too long (max 32 bytes); discarded")
        .await;
    let (_bob, _) = welcomed(addr).await;
    let mut third = TcpClient::connect_raw(addr).await;
    let refusal = third.recv().await;
    assert!(refusal.contains("too many connections"), "{refusal}");
}

#[tokio::test]
async fn a_flag_on_the_command_line_wins_over_the_file() {
    let path = config_file("wins", "motd = \"from the file\"\nmax-line = 32\n");
    let config = path.to_str().expect("utf-8 path");
    let (_child, addr, _, _lines) =
        spawn_logged_chatd(&["--motd", "from the flag", "--config", config], "info").await;
    let (mut ann, welcome) = welcomed(addr).await;
    assert!(
        welcome.starts_with("* from the flag - you are "),
        "{welcome}"
    );
    // What the flags leave alone still comes from the file.
    ann.send(&"x".repeat(40)).await;
    ann.expect("! line too long (max 32 bytes); discarded")
        .await;
}

#[tokio::test]
async fn a_file_that_does_not_parse_stops_the_start_naming_its_line() {
    let path = config_file("broken", "motd = \"fine\"\n\nmax-line = = 3\n");
    let (code, stderr) = run_to_exit(&["--config", path.to_str().expect("utf-8")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains(path.to_str().expect("utf-8")), "{stderr}");
    let path = config_file("unknown", "motd = \"fine\"\nmax-cleints = 3\n");
    let (code, stderr) = run_to_exit(&["--config", path.to_str().expect("utf-8")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2: unknown key `max-cleints`"),
        "{stderr}"
    );
    let (code, stderr) = run_to_exit(&["--config", "/nonexistent/chatd.toml"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read config file"), "{stderr}");
}

#[tokio::test]
async fn an_out_of_bounds_value_in_the_file_is_refused_like_the_flag() {
    let (flag_code, flag_err) = run_to_exit(&["--max-clients", "0"]).await;
    let path = config_file("bounds", "motd = \"fine\"\nmax-clients = 0\n");
    let (code, stderr) = run_to_exit(&["--config", path.to_str().expect("utf-8")]).await;
    assert_eq!((code, flag_code), (Some(2), Some(2)), "{stderr}");
    let reason = "0 is not in 1..=1000000";
    assert!(flag_err.contains(reason), "{flag_err}");
    assert!(stderr.contains("line 2: max-clients: "), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    let path = config_file("sendq", "sendq = 10\n");
    let (code, stderr) = run_to_exit(&["--config", path.to_str().expect("utf-8")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 1: sendq: invalid value '10'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_gives_the_next_joiner_the_new_motd_and_keeps_every_member() {
    let path = config_file("motd", "motd = \"old greeting\"\n");
    let config = path.to_str().expect("utf-8 path");
    let (child, addr, _, mut lines) = spawn_logged_chatd(&["--config", config], "info").await;
    let mut ann = TcpClient::with_nick(addr, "ann").await;
    let mut bob = TcpClient::with_nick(addr, "bob").await;
    rewrite(&path, "motd = \"new greeting\"\n");
    hangup(&child);
    log_until(&mut lines, "config reloaded: motd applied").await;
    let (mut cat, welcome) = welcomed(addr).await;
    assert!(
        welcome.starts_with("* new greeting - you are "),
        "{welcome}"
    );
    // Everyone from before is still there and still chats.
    ann.send("still here").await;
    bob.expect("<ann> still here").await;
    cat.expect("<ann> still here").await;
    bob.send("me too").await;
    ann.expect("<bob> me too").await;
}

#[tokio::test]
async fn sighup_applies_a_changed_limit_and_logs_what_needs_a_restart() {
    let path = config_file("limit", "max-per-ip = 3\nbacklog = 64\n");
    let config = path.to_str().expect("utf-8 path");
    let (child, addr, _, mut lines) = spawn_logged_chatd(&["--config", config], "info").await;
    let (mut ann, _) = welcomed(addr).await;
    let (mut bob, _) = welcomed(addr).await;
    rewrite(&path, "max-per-ip = 2\nbacklog = 128\n");
    hangup(&child);
    log_until(&mut lines, "config reloaded: max-per-ip applied").await;
    log_until(
        &mut lines,
        "config reloaded: backlog changed but needs a restart",
    )
    .await;
    let mut third = TcpClient::connect_raw(addr).await;
    let refusal = third.recv().await;
    assert!(refusal.contains("too many connections"), "{refusal}");
    ann.send("both kept").await;
    bob.expect(&format!("<{}> both kept", ann.name)).await;
}

#[tokio::test]
async fn a_broken_file_on_sighup_keeps_the_server_as_it_was() {
    let path = config_file("keep", "motd = \"steady\"\n");
    let config = path.to_str().expect("utf-8 path");
    let (child, addr, _, mut lines) = spawn_logged_chatd(&["--config", config], "info").await;
    let mut ann = TcpClient::with_nick(addr, "ann").await;
    rewrite(&path, "motd = \"half written\nmax-line = 1\n");
    hangup(&child);
    let logged = log_until(&mut lines, "config reload failed").await;
    assert!(logged.contains("line 1"), "{logged}");
    rewrite(&path, "max-line = 1\n");
    hangup(&child);
    let logged = log_until(&mut lines, "config reload failed").await;
    assert!(logged.contains("max-line"), "{logged}");
    let (mut bob, welcome) = welcomed(addr).await;
    assert!(welcome.starts_with("* steady - you are "), "{welcome}");
    ann.send("unaffected").await;
    bob.expect("<ann> unaffected").await;
}

#[tokio::test]
async fn sighup_applies_new_rates_to_members_already_connected() {
    let path = config_file("rate", "rate = \"off\"\n");
    let config = path.to_str().expect("utf-8 path");
    let (child, addr, _, mut lines) = spawn_logged_chatd(&["--config", config], "info").await;
    let mut ann = TcpClient::with_nick(addr, "ann").await;
    let mut bob = TcpClient::with_nick(addr, "bob").await;
    for n in 0..5 {
        ann.send(&format!("unlimited {n}")).await;
    }
    let skipped = bob.expect("<ann> unlimited 4").await;
    assert!(
        skipped.iter().all(|l| !l.contains("slow down")),
        "{skipped:?}"
    );
    rewrite(&path, "rate = 1\nburst = 1\n");
    hangup(&child);
    log_until(&mut lines, "config reloaded: rate applied").await;
    log_until(&mut lines, "config reloaded: burst applied").await;
    ann.send("first").await;
    ann.send("second").await;
    ann.expect("! slow down: your lines are being delayed")
        .await;
    bob.expect("<ann> first").await;
}

#[tokio::test]
async fn sighup_applies_a_new_max_line_to_udp_as_well_as_tcp() {
    let path = config_file("udp-line", "max-line = 32\n");
    let config = path.to_str().expect("utf-8 path");
    let (child, addr, _, mut lines) =
        spawn_logged_chatd(&["--config", config, "--udp", "0"], "info").await;
    let udp_addr: std::net::SocketAddr = log_until(&mut lines, "listening udp=")
        .await
        .split("listening udp=")
        .nth(1)
        .map(|a| a.trim().parse().expect("udp addr"))
        .expect("udp addr");
    let mut ann = TcpClient::with_nick(addr, "ann").await;
    let peer = common::UdpClient::join(udp_addr).await;
    ann.expect_joined().await;
    let long = "x".repeat(100);
    peer.send(&long).await;
    peer.expect("! datagram too long (max 32 bytes); discarded")
        .await;
    rewrite(&path, "max-line = 200\n");
    hangup(&child);
    log_until(&mut lines, "config reloaded: max-line applied").await;
    peer.send(&long).await;
    ann.expect(&format!("<{}> {long}", peer.name)).await;
}
