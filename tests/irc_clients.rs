//! Real IRC clients in chatd's rooms (issue 21 §3): irssi and WeeChat, each driven in tmux as a
//! person would, connect to `chatd --irc`, join `#den`, and talk with a line-protocol (netcat-style
//! TCP) member both ways, `/me` included. A missing client fails naming its Debian package
//! (`.ci/run` installs them). Every wait is bounded. And both, with netcat, web and UDP members,
//! in one room of a two-node cluster.
mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tmux::{require_program, Tmux};
use common::{spawn_listening, TcpClient, UdpClient};
use nats::Nats;
use ws::WsClient;

/// Longest the line member waits for what an IRC client did (a client in tmux, a debug build).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The built chatd with `args` and every listener on 127.0.0.1 at a port of its choosing; returns
/// it with where each listener (`tcp`, `http`, `irc`, `udp`) is.
async fn chatd(args: &str) -> (tokio::process::Child, Listeners) {
    let mut all: Vec<&str> = args.split_whitespace().collect();
    all.extend(["--tcp", "0", "--udp", "0", "--http", "0", "--irc", "0"]);
    all.extend(["--bind", "127.0.0.1"]);
    // UDP is the last listener logged: every other one is in the lines before it.
    let (child, udp, before, mut log) = spawn_listening(&all, "info", "udp").await;
    let at = |kind: &str| {
        let needle = format!("listening {kind}=");
        before
            .iter()
            .find_map(|l| l.split(needle.as_str()).nth(1))
            .map(|a| a.trim().parse::<SocketAddr>().expect("listening address"))
            .unwrap_or_else(|| panic!("no {kind} listener logged in {before:?}"))
    };
    let listeners = Listeners {
        tcp: at("tcp"),
        http: at("http"),
        irc: at("irc"),
        udp,
    };
    // Keep reading the log so chatd never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    (child, listeners)
}

/// Where one chatd's listeners are.
struct Listeners {
    tcp: SocketAddr,
    http: SocketAddr,
    irc: SocketAddr,
    udp: SocketAddr,
}

/// irssi in tmux as `nick`, connecting to `irc`.
fn irssi(irc: SocketAddr, nick: &str) -> Tmux {
    require_program("irssi", "irssi");
    Tmux::start(&format!("irssi-{nick}"), 120, 40, |dir: &Path| {
        format!(
            "irssi --home={home} -n {nick} -c {host} -p {port}",
            home = dir.join("irssi").display(),
            host = irc.ip(),
            port = irc.port(),
        )
    })
}

/// WeeChat in tmux as `nick`, connecting to `irc`.
fn weechat(irc: SocketAddr, nick: &str) -> Tmux {
    require_program("weechat", "weechat-curses");
    Tmux::start(&format!("weechat-{nick}"), 120, 40, |dir: &Path| {
        // Plain IRC: WeeChat 3 calls the option `ssl`, WeeChat 4 `tls` (and turns it on for new
        // servers); setting the one a version lacks only prints an error.
        format!(
            "weechat -d {home} -r '/server add chatd {host}/{port}; \
             /set irc.server.chatd.ssl off; /set irc.server.chatd.tls off; \
             /set irc.server.chatd.nicks {nick}; /connect chatd'",
            home = dir.join("weechat").display(),
            host = irc.ip(),
            port = irc.port(),
        )
    })
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
    let (_chatd, at) = chatd("").await;
    talks_with_a_line_member(at.tcp, irssi(at.irc, "ann"), "ann").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weechat_joins_a_room_and_talks_with_a_line_member() {
    require_program("tmux", "tmux");
    let (_chatd, at) = chatd("").await;
    talks_with_a_line_member(at.tcp, weechat(at.irc, "wee"), "wee").await;
}

/// Issue 21's "done means": irssi on one node and WeeChat on the other, a netcat-style member, a
/// browser's (WebSocket) member and a UDP member chat in one room of a two-node cluster, each
/// line reaching every other member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irssi_weechat_nc_web_and_udp_members_chat_in_one_room_on_two_nodes() {
    require_program("tmux", "tmux");
    let nats = Nats::start("irc-clients").await;
    let (_a, a) = chatd(&nats.flags("a")).await;
    let (_b, b) = chatd(&nats.flags("b")).await;
    let mut tom = TcpClient::with_nick(a.tcp, "tom").await;
    tom.send("/join #hall").await;
    tom.expect_match(|l| l.starts_with("* you are in #hall"))
        .await;
    let mut wes = WsClient::with_nick(b.http, "wes").await;
    wes.send("/join #hall").await;
    expect_from_client(&mut tom, "* wes joined #hall").await;
    let uma = UdpClient::join(a.udp).await;
    uma.send("/nick uma").await;
    uma.expect("* you are now known as uma").await;
    uma.send("/join #hall").await;
    expect_from_client(&mut tom, "* uma joined #hall").await;

    let ann = irssi(a.irc, "ann");
    ann.wait("registration (001)", |s| s.contains("Welcome to the"));
    say(&ann, "/join #hall");
    expect_from_client(&mut tom, "* ann joined #hall").await;
    let wee = weechat(b.irc, "wee");
    wee.wait("registration (001)", |s| s.contains("Welcome to the"));
    say(&wee, "/join #hall");
    expect_from_client(&mut tom, "* wee joined #hall").await;
    // WeeChat's join, on b, reached a: the room is whole on both nodes.
    ann.wait("WeeChat's join", |s| {
        s.contains("wee") && s.contains("has joined")
    });

    say(&ann, "hello from irssi");
    expect_from_client(&mut tom, "<ann> hello from irssi").await;
    wes.expect("<ann> hello from irssi").await;
    uma.expect("<ann> hello from irssi").await;
    wee.wait("irssi's line", |s| s.contains("hello from irssi"));

    say(&wee, "hello from weechat");
    expect_from_client(&mut tom, "<wee> hello from weechat").await;
    wes.expect("<wee> hello from weechat").await;
    uma.expect("<wee> hello from weechat").await;
    ann.wait("WeeChat's line", |s| s.contains("hello from weechat"));

    tom.send("hello from nc").await;
    wes.expect("<tom> hello from nc").await;
    uma.expect("<tom> hello from nc").await;
    ann.wait("the nc member's line", |s| s.contains("hello from nc"));
    wee.wait("the nc member's line", |s| s.contains("hello from nc"));

    wes.send("hello from the web").await;
    expect_from_client(&mut tom, "<wes> hello from the web").await;
    uma.expect("<wes> hello from the web").await;
    ann.wait("the web member's line", |s| {
        s.contains("hello from the web")
    });
    wee.wait("the web member's line", |s| {
        s.contains("hello from the web")
    });

    uma.send("hello from udp").await;
    expect_from_client(&mut tom, "<uma> hello from udp").await;
    wes.expect("<uma> hello from udp").await;
    ann.wait("the UDP member's line", |s| s.contains("hello from udp"));
    wee.wait("the UDP member's line", |s| s.contains("hello from udp"));
}
