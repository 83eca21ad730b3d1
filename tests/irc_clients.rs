//! Real IRC clients in chatd's rooms (issue 21 §3): irssi and WeeChat, each driven in tmux as a
//! person would, connect to `chatd --irc`, join `#den`, and talk with a line-protocol (netcat-style
//! TCP) member both ways, `/me` included. A missing client fails naming its Debian package
//! (`.ci/run` installs them). Every wait is bounded.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tmux::{require_program, Tmux};
use common::{log_until, spawn_listening, TcpClient};

/// Longest the line member waits for what an IRC client did (a client in tmux, a debug build).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The built chatd with line-protocol TCP and IRC on 127.0.0.1; returns it with both addresses.
async fn chatd_with_irc() -> (tokio::process::Child, SocketAddr, SocketAddr) {
    let args = ["--tcp", "0", "--irc", "0", "--bind", "127.0.0.1"];
    let (child, irc, before, mut log) = spawn_listening(&args, "info", "irc").await;
    let tcp_in = |line: &str| {
        line.split("listening tcp=")
            .nth(1)
            .map(|a| a.trim().parse::<SocketAddr>().expect("tcp address"))
    };
    let tcp = match before.iter().find_map(|l| tcp_in(l)) {
        Some(tcp) => tcp,
        None => tcp_in(&log_until(&mut log, "listening tcp=").await).expect("tcp address"),
    };
    // Keep reading the log so chatd never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    (child, tcp, irc)
}

/// Receives lines until `expected`, for up to [`CLIENT_TIMEOUT`].
async fn expect_from_client(member: &mut TcpClient, expected: &str) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(CLIENT_TIMEOUT, async {
        while let Some(line) = member.recv_line().await {
            if line == expected {
                return true;
            }
            seen.push(line);
        }
        false
    })
    .await;
    assert!(
        found == Ok(true),
        "the line member never got {expected:?}; it got {seen:?}"
    );
}

/// Types `text` into a client's input line, waits until it shows, and presses Enter (apart, so
/// neither client takes the line for a paste).
fn say(client: &Tmux, text: &str) {
    client.send_text(text);
    client.wait(&format!("{text:?} typed"), |s| s.contains(text));
    client.press("Enter");
}

/// What every client does: registers, joins #den, and talks with a line member both ways.
async fn talks_with_a_line_member(tcp: SocketAddr, client: Tmux, nick: &str) {
    let mut bob = TcpClient::with_nick(tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;

    client.wait("registration (001)", |s| s.contains("Welcome to the"));
    say(&client, "/join #den");
    expect_from_client(&mut bob, &format!("* {nick} joined #den")).await;

    bob.send("hello from nc").await;
    client.wait("the line member's message", |s| s.contains("hello from nc"));

    say(&client, "hello from irc");
    expect_from_client(&mut bob, &format!("<{nick}> hello from irc")).await;
    say(&client, "/me waves");
    expect_from_client(&mut bob, &format!("* {nick} waves")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irssi_joins_a_room_and_talks_with_a_line_member() {
    require_program("tmux", "tmux");
    require_program("irssi", "irssi");
    let (_chatd, tcp, irc) = chatd_with_irc().await;
    let client = Tmux::start("irssi-test", 120, 40, |dir: &Path| {
        format!(
            "irssi --home={home} -n ann -c {host} -p {port}",
            home = dir.join("irssi").display(),
            host = irc.ip(),
            port = irc.port(),
        )
    });
    talks_with_a_line_member(tcp, client, "ann").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weechat_joins_a_room_and_talks_with_a_line_member() {
    require_program("tmux", "tmux");
    require_program("weechat", "weechat-curses");
    let (_chatd, tcp, irc) = chatd_with_irc().await;
    let client = Tmux::start("weechat-test", 120, 40, |dir: &Path| {
        // Plain IRC: WeeChat 3 calls the option `ssl`, WeeChat 4 `tls` (and turns it on for new
        // servers); setting the one a version lacks only prints an error.
        format!(
            "weechat -d {home} -r '/server add chatd {host}/{port}; \
             /set irc.server.chatd.ssl off; /set irc.server.chatd.tls off; \
             /set irc.server.chatd.nicks wee; /connect chatd'",
            home = dir.join("weechat").display(),
            host = irc.ip(),
            port = irc.port(),
        )
    });
    talks_with_a_line_member(tcp, client, "wee").await;
}
