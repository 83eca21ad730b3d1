//! Several sessions of one account (`--max-sessions`), over real sockets: logging in to an
//! account that is connected attaches another session, which others see as one member; lines,
//! private messages and room joins and leaves behave as for one member; guests stay one session.

mod common;

use std::net::SocketAddr;

use base64::Engine as _;
use common::irc::join;
use common::{login, register, start_server, TcpClient};

/// Cheap hashing: a debug build on a loaded machine answers within the test's waits.
const FLAGS: &str = "--history 0 --irc 0 --name chatd --argon2-memory 64 --argon2-passes 1";

/// Asserts that `client`'s next line is `expected`: nothing came before it (a second copy of
/// something, or a notice that should not be).
async fn next_is(client: &mut TcpClient, expected: &str) {
    assert_eq!(client.recv().await, expected);
}

/// Reads lines until `expected`; on a timeout, fails naming the lines that came instead.
async fn seek(client: &mut TcpClient, expected: &str) {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(common::TIMEOUT, client.recv_line()).await {
            Ok(Some(line)) if line == expected => return,
            Ok(Some(line)) => seen.push(line),
            _ => panic!("{expected:?} never came; got {seen:?}"),
        }
    }
}

#[tokio::test]
async fn two_tcp_sessions_of_one_account_are_one_member_to_the_others() {
    let server = start_server(FLAGS).await;
    let mut one = register(server.tcp, "alice", "pw").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    one.expect_renamed("bob").await;

    let mut two = login(server.tcp, "alice", "pw").await;
    bob.expect_renamed("alice").await;
    bob.send("/who").await;
    next_is(&mut bob, "* 2 here:").await;
    next_is(&mut bob, "*   alice (2 sessions: tcp, tcp)").await;
    next_is(&mut bob, "*   bob (tcp) (you)").await;
    two.send("/who").await;
    two.expect("*   alice (2 sessions: tcp, tcp) (you)").await;

    // A line from one session reaches the other, and everyone else once.
    one.send("hello from one").await;
    two.expect("<alice> hello from one").await;
    one.send("and again").await;
    next_is(&mut bob, "<alice> hello from one").await;
    next_is(&mut bob, "<alice> and again").await;
    next_is(&mut two, "<alice> and again").await;

    // `/msg alice` reaches every session; what one session sends privately, the others see.
    bob.send("/msg alice psst").await;
    next_is(&mut bob, "[private to alice] psst").await;
    one.expect("[private] <bob> psst").await;
    two.expect("[private] <bob> psst").await;
    two.send("/msg bob hi bob").await;
    next_is(&mut bob, "[private] <alice> hi bob").await;
    next_is(&mut two, "[private to bob] hi bob").await;
    next_is(&mut one, "[private to bob] hi bob").await;
    one.send("/msg alice me?").await;
    next_is(&mut one, "! that is you").await;

    // Joins are announced when the first session arrives, leaves when the last one goes.
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    one.send("/join #den").await;
    one.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    next_is(&mut bob, "* alice joined #den").await;
    two.send("/join #den").await;
    two.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    one.send("/part").await;
    one.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    two.send("still here").await;
    next_is(&mut bob, "<alice> still here").await;
    two.send("/part").await;
    next_is(&mut bob, "* alice left #den").await;

    // Back in the lobby: a session that hangs up while another stays goes quietly.
    two.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    bob.send("/part").await;
    bob.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    one.expect("* bob joined #lobby").await;
    one.send("/quit").await;
    one.expect_closed().await;
    two.send("one left").await;
    next_is(&mut bob, "<alice> one left").await;
    bob.send("/who").await;
    next_is(&mut bob, "* 2 here:").await;
    next_is(&mut bob, "*   alice (tcp, registered)").await;
    two.send("/quit").await;
    two.expect_closed().await;
    seek(&mut bob, "* alice left").await;
    server.shutdown().await;
}

#[tokio::test]
async fn past_max_sessions_a_login_is_refused_and_guests_never_share() {
    let server = start_server(&format!("{FLAGS} --max-sessions 2")).await;
    let _one = register(server.tcp, "alice", "pw").await;
    let _two = login(server.tcp, "alice", "pw").await;
    let mut three = TcpClient::connect(server.tcp).await;
    three.send("/login alice pw").await;
    seek(
        &mut three,
        "! alice has 2 sessions already (--max-sessions)",
    )
    .await;
    // It stays a guest, under its own name.
    three.send("/who").await;
    let me = format!("*   {} (tcp) (you)", three.name);
    three.expect_match(|l| l == me).await;

    // Guests: a name is one member's.
    let mut carol = TcpClient::with_nick(server.tcp, "carol").await;
    three.send("/nick carol").await;
    seek(&mut three, "! that name is taken").await;
    // And an account's name is not a guest's to share.
    carol.send("/nick alice").await;
    seek(&mut carol, "! that name is taken").await;
    server.shutdown().await;
}

/// Reads lines until one containing `part`; on a timeout, fails naming the lines that came.
async fn seek_with(client: &mut TcpClient, part: &str) {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(common::TIMEOUT, client.recv_line()).await {
            Ok(Some(line)) if line.contains(part) => return,
            Ok(Some(line)) => seen.push(line),
            _ => panic!("{part:?} never came; got {seen:?}"),
        }
    }
}

fn plain(name: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{name}\0{password}"))
}

/// An IRC client that logs in to `name` by SASL PLAIN and asks for `name` as its nick.
async fn irc_session(addr: SocketAddr, name: &str, pw: &str) -> TcpClient {
    let mut client = TcpClient::connect_raw(addr).await;
    client.send("CAP REQ :sasl echo-message").await;
    client.expect_match(|l| l.contains(" ACK ")).await;
    client.send(&format!("NICK {name}")).await;
    client.send(&format!("USER {name} 0 * :{name} real")).await;
    client.send("AUTHENTICATE PLAIN").await;
    client.expect("AUTHENTICATE +").await;
    client
        .send(&format!("AUTHENTICATE {}", plain(name, pw)))
        .await;
    seek_with(&mut client, " 903 ").await;
    client.send("CAP END").await;
    let welcome = client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    assert!(
        welcome
            .iter()
            .any(|l| l.starts_with(&format!(":chatd 001 {name} "))),
        "{welcome:?}"
    );
    client
}

#[tokio::test]
async fn a_tcp_and_an_irc_session_of_one_account_share_its_name_rooms_and_messages() {
    let server = start_server(FLAGS).await;
    let irc = server.irc.expect("irc listener");
    let mut tcp = register(server.tcp, "alice", "pw").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    tcp.expect_renamed("bob").await;

    let mut web = irc_session(irc, "alice", "pw").await;
    let names = join(&mut web, "#lobby").await;
    let listed: Vec<&String> = names.iter().filter(|l| l.contains(" 353 ")).collect();
    assert!(listed.iter().any(|l| l.contains("bob")), "{listed:?}");
    let alices: usize = listed
        .iter()
        .filter_map(|l| l.split_once(" :").map(|(_, nicks)| nicks))
        .flat_map(|nicks| nicks.split(' '))
        .filter(|nick| nick.trim_start_matches(['@', '+']) == "alice")
        .count();
    assert_eq!(alices, 1, "alice is listed once: {listed:?}");
    // The lobby knew alice already: no join.
    tcp.send("over to irc").await;
    next_is(&mut bob, "<alice> over to irc").await;
    web.expect(":alice!chat@chatd PRIVMSG #lobby :over to irc")
        .await;
    bob.send("/who").await;
    next_is(&mut bob, "* 2 here:").await;
    next_is(&mut bob, "*   alice (2 sessions: irc, tcp)").await;

    // Private messages reach both faces; what the IRC session sends, the TCP one sees.
    bob.send("/msg alice both of you").await;
    tcp.expect("[private] <bob> both of you").await;
    web.expect(":bob!chat@chatd PRIVMSG alice :both of you")
        .await;
    web.send("PRIVMSG bob :from irc").await;
    bob.expect("[private] <alice> from irc").await;
    tcp.expect("[private to bob] from irc").await;
    tcp.send("/msg bob from tcp").await;
    bob.expect("[private] <alice> from tcp").await;
    web.expect(":alice!chat@chatd PRIVMSG bob :from tcp").await;

    // The IRC session goes: quietly, since the TCP one stays.
    web.send("QUIT :bye").await;
    web.expect_closed().await;
    tcp.send("still me").await;
    next_is(&mut bob, "<alice> still me").await;
    server.shutdown().await;
}
