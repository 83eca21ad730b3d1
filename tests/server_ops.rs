//! Server operators over real sockets: `/kill`, `/gban` (with expiry, on TCP and UDP), `/wall`
//! and `/lockdown` by an `--oper` account; room operators cannot act on a server operator;
//! `/help` lists the commands; every action is in the server's log.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    login, other_address, register, spawn_logged_chatd, start_server, TcpClient, UdpClient,
    OPER_ROOT, TIMEOUT,
};

const FLAGS: &str = "--history 0 --argon2-memory 64 --argon2-passes 1";

/// A UDP socket on another loopback address, as a member from elsewhere.
async fn udp_from(server: SocketAddr, from: IpAddr) -> tokio::net::UdpSocket {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(from, 0))
        .await
        .expect("bind");
    socket.connect(server).await.expect("connect");
    socket
}

async fn recv_udp(socket: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("a datagram in time")
        .expect("recv");
    String::from_utf8_lossy(&buf[..len]).trim_end().to_string()
}

async fn scrape_metrics(http: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(http).await.expect("connect");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("in time")
}

#[tokio::test]
async fn kill_disconnects_a_member_on_tcp_and_udp() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut root = login(server.tcp, "root", "pw-root").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick dan").await;
    udp.expect("* you are now known as dan").await;
    root.send("/kill bob spamming").await;
    root.expect("* bob is disconnected").await;
    let last = bob.expect_closed().await;
    assert!(
        last.contains(&"! you were disconnected by root (spamming)".to_string()),
        "{last:?}"
    );
    udp.expect("* bob was disconnected by root (spamming)")
        .await;
    root.send("/kill dan").await;
    udp.expect("! you were disconnected by root").await;
    root.expect("* dan was disconnected by root").await;
    root.send("/who").await;
    root.expect("* 1 here:").await;
    root.send("/kill root").await;
    root.expect("! you cannot kill yourself").await;
    root.send("/kill nobody").await;
    root.expect("! no such member: nobody").await;
    // Counted in /metrics: the two kills, not the refusals.
    let metrics = scrape_metrics(server.http).await;
    assert!(
        metrics.contains("chatd_moderation_actions_total{action=\"kill\"} 2"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn gban_disconnects_and_refuses_an_address_on_tcp_and_udp_until_it_ends() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut root = login(server.tcp, "root", "pw-root").await;
    let mut guest = TcpClient::connect_from(server.tcp, other_address()).await;
    let udp = udp_from(server.udp, other_address()).await;
    udp.send(b"#ping#").await.expect("send");
    assert!(recv_udp(&udp).await.starts_with("* welcome"));

    root.send("/gban 127.0.0.2").await;
    root.expect("! usage: /gban ADDRESS[/PREFIX] DURATION [reason]")
        .await;
    root.send("/gban 127.0.0.2 5x").await;
    root.expect_match(|l| l.starts_with("! bad duration 5x: "))
        .await;
    root.send("/gban bob 1h").await;
    root.expect("! not an address or block: bob").await;
    root.send("/gban 127.0.0.2/31 3s abuse").await;
    root.expect_match(|l| {
        l == "* address 127.0.0.2/31 is banned from the server for 3s; 2 members disconnected"
    })
    .await;
    let last = guest.expect_closed().await;
    assert!(
        last.contains(&"! you were disconnected by root (abuse)".to_string()),
        "{last:?}"
    );
    // New connections from there are refused, on both transports.
    let mut elsewhere = TcpClient::connect_raw(server.tcp).await;
    assert!(elsewhere.recv().await.starts_with("* welcome"));
    let mut refused = TcpClient::connect_from_raw(server.tcp, other_address()).await;
    assert_eq!(refused.recv().await, "! you are banned from this server");
    refused.expect_closed().await;
    let fresh = udp_from(server.udp, other_address()).await;
    fresh.send(b"hello").await.expect("send");
    assert_eq!(recv_udp(&fresh).await, "! you are banned from this server");

    // The ban lasts 3 s so that a stall of a loaded machine cannot end it before the checks
    // above are done; then it ends by itself.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let back = TcpClient::connect_from(server.tcp, other_address()).await;
    assert!(back.name.starts_with("guest-"), "{}", back.name);
    root.send("/ungban 127.0.0.2/31").await;
    root.expect("* address 127.0.0.2/31 is no longer banned from the server")
        .await;
    root.send("/ungban 127.0.0.2/31").await;
    root.expect("! no server ban on 127.0.0.2/31").await;
    server.shutdown().await;
}

#[tokio::test]
async fn wall_reaches_every_room_and_lockdown_admits_registered_members_only() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut root = login(server.tcp, "root", "pw-root").await;
    let mut alice = register(server.tcp, "alice", "pw-alice").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    let mut carol = TcpClient::with_nick(server.tcp, "carol").await;
    carol.send("/join den").await;
    carol.expect("* you are in #den with 0 others").await;
    let udp = UdpClient::join(server.udp).await;

    root.send("/wall restart at noon").await;
    carol.expect("* [server] root: restart at noon").await;
    udp.expect("* [server] root: restart at noon").await;
    root.expect("* [server] root: restart at noon").await;

    root.send("/lockdown on").await;
    carol
        .expect("* lockdown on (by root): only registered members may speak; guests may /login")
        .await;
    carol.send("still here?").await;
    carol
        .expect("! the server admits registered members only right now; /login NAME PASSWORD")
        .await;
    let mut guest = TcpClient::connect(server.tcp).await;
    assert_eq!(
        guest.recv().await,
        "! the server admits registered members only right now; /login NAME PASSWORD"
    );
    guest.send("/nick mallory").await;
    guest
        .expect("! the server admits registered members only right now; /login NAME PASSWORD")
        .await;
    guest.send("/login alice pw-alice").await;
    guest.expect("* you are logged in as alice").await;
    guest.send("I may speak").await;
    root.expect("<alice> I may speak").await;
    root.send("/lockdown on").await;
    root.expect("* lockdown is on already").await;
    root.send("/lockdown off").await;
    carol.expect("* lockdown off (by root)").await;
    carol.send("free").await;
    carol.send("/who").await;
    carol.expect("* 1 here:").await;
    server.shutdown().await;
}

#[tokio::test]
async fn room_operators_cannot_act_on_a_server_operator_but_it_can_act_anywhere() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut root = login(server.tcp, "root", "pw-root").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/join den").await;
    alice.expect("* you are in #den with 0 others").await;
    root.send("/join den").await;
    root.expect("* you are in #den with 1 other").await;
    for command in [
        "/kick root",
        "/ban root",
        "/mute root",
        "/deop root",
        "/op root",
    ] {
        alice.send(command).await;
        alice.expect_match(|l| l.starts_with("! ")).await;
    }
    alice.send("/kick root").await;
    alice.expect("! root is a server operator").await;
    alice.send("/ban root 1h").await;
    alice.expect("! root is a server operator").await;
    alice.send("/mute root").await;
    alice.expect("! root is a server operator").await;
    // The server operator is an operator of every room, and of the lobby.
    root.send("/kick alice enough").await;
    alice
        .expect("! you were kicked from #den by root (enough)")
        .await;
    alice
        .expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    root.send("/join lobby").await;
    root.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    root.send("/topic welcome all").await;
    alice
        .expect("* root set the topic of #lobby: welcome all")
        .await;
    // Everyone arriving in the lobby is shown its topic with the welcome.
    let mut newcomer = TcpClient::connect(server.tcp).await;
    assert_eq!(newcomer.recv().await, "* topic of #lobby: welcome all");
    server.shutdown().await;
}

#[tokio::test]
async fn help_lists_the_account_and_moderation_commands() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut client = TcpClient::connect(server.tcp).await;
    client.send("/help").await;
    let mut lines = Vec::new();
    for _ in 0..chatd::protocol::HELP.len() {
        lines.push(client.recv().await);
    }
    for command in [
        "/register",
        "/login",
        "/password",
        "/unregister",
        "/topic",
        "/op",
        "/kick",
        "/ban",
        "/bans",
        "/mute",
        "/slow",
        "/kill",
        "/gban",
        "/wall",
        "/lockdown",
    ] {
        assert!(
            lines.iter().any(|l| l
                .split(|c: char| !(c.is_alphanumeric() || c == '/'))
                .any(|word| word == command)),
            "{command} missing from {lines:#?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_moderation_action_is_logged_with_who_did_what_to_whom() {
    let flags = format!("{FLAGS} {OPER_ROOT}");
    let args: Vec<&str> = flags.split_whitespace().collect();
    let (_child, addr, _, mut lines) = spawn_logged_chatd(&args, "info").await;
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let collected = Arc::clone(&log);
    let (seen, mut kill_logged) = tokio::sync::mpsc::channel::<()>(8);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let kill = line.contains("action=\"kill\"");
            collected.lock().expect("log").push(line);
            if kill {
                let _ = seen.send(()).await;
            }
        }
    });
    let mut root = login(addr, "root", "pw-root").await;
    let mut bob = TcpClient::with_nick(addr, "bob").await;
    root.send("/kill bob bye").await;
    bob.expect_closed().await;
    tokio::time::timeout(TIMEOUT, kill_logged.recv())
        .await
        .expect("the kill is logged");
    let log = log.lock().expect("log").join("\n");
    let line = log
        .lines()
        .find(|l| l.contains("action=\"kill\""))
        .expect("kill line");
    assert!(line.contains("by=root"), "{line}");
    assert!(line.contains("whom=\"bob\""), "{line}");
    assert!(line.contains("bye"), "{line}");
}

#[tokio::test]
async fn a_configured_operator_s_name_is_nobody_else_s_and_its_password_makes_an_operator() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let mut other = TcpClient::with_nick(server.tcp, "carol").await;
    let mut guest = TcpClient::connect(server.tcp).await;
    // The name and its look-alikes (case, digits for letters) are refused.
    for nick in ["root", "RooT", "r00t", "ro0t"] {
        guest.send(&format!("/nick {nick}")).await;
        guest
            .expect("! root is registered; /login root PASSWORD")
            .await;
    }
    guest.send("/register pw").await;
    guest
        .expect("! pick a name first (/nick NAME), then /register PASSWORD")
        .await;
    guest.send("/login root wrong").await;
    guest.expect("! wrong name or password").await;
    guest.send("/wall hi").await;
    guest.expect("! you are not a server operator").await;
    guest.send("/login root pw-root").await;
    guest.expect("* you are logged in as root").await;
    guest.send("/wall maintenance at noon").await;
    other.expect("* [server] root: maintenance at noon").await;
    // Its password is the configuration's, not a command's.
    guest.send("/password pw-root other").await;
    guest
        .expect("! root is a server operator whose password is set in the server's configuration")
        .await;
    guest.send("/unregister pw-root").await;
    guest
        .expect("! root is a server operator whose password is set in the server's configuration")
        .await;
    server.shutdown().await;
}

/// A bare `--oper NAME` (no hash) keeps working only for an account that existed at start, says
/// so in the log, and reserves the name either way.
#[tokio::test]
async fn a_bare_oper_name_gives_rights_only_to_an_account_that_existed_at_start() {
    let db = common::temp_db("bare-oper");
    let db_flag = db.display().to_string();
    let mut args: Vec<&str> = FLAGS.split_whitespace().collect();
    args.extend(["--db", &db_flag]);
    // The log is kept open (a closed pipe would fail the server's writes).
    let (mut first, addr, _, _first_log) = spawn_logged_chatd(&args, "info").await;
    drop(register(addr, "root", "pw-root").await);
    first.kill().await.expect("stop the first server");

    args.extend(["--oper", "root", "--oper", "ann"]);
    let (_second, addr, before, mut log) = spawn_logged_chatd(&args, "info").await;
    let said = |needle: &str| before.iter().find(|l| l.contains(needle)).cloned();
    let kept = "--oper root has no password hash: account root, registered before this start, \
                keeps operator rights";
    match said(kept) {
        Some(_) => {}
        None => drop(common::log_until(&mut log, kept).await),
    }
    let nobody = "--oper ann has no password hash and no account ann existed at start: nobody \
                  is operator ann";
    match said(nobody) {
        Some(_) => {}
        None => drop(common::log_until(&mut log, nobody).await),
    }

    let mut carol = TcpClient::with_nick(addr, "carol").await;
    carol.send("/nick ann").await;
    carol
        .expect("! ann is registered; /login ann PASSWORD")
        .await;
    let mut root = login(addr, "root", "pw-root").await;
    root.send("/wall hello").await;
    carol.expect("* [server] root: hello").await;
    // Given up, the account's rights go with it, and nobody may register the name again.
    root.send("/unregister pw-root").await;
    root.expect("* root is no longer registered").await;
    root.send("/wall again").await;
    root.expect("! you are not a server operator").await;
    root.send("/register pw-new").await;
    root.expect("! root is already registered").await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}
