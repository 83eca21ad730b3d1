//! The IRC face (`--irc`): registration, channels that are chatd's rooms shared with line and UDP
//! members, a member in several rooms, and bad input, over real sockets.

mod common;

use std::net::SocketAddr;

use common::irc::join;
use common::{start_server, TcpClient, UdpClient};

/// Registers an IRC client as `nick` and waits for the end of its welcome (MOTD).
async fn irc(addr: SocketAddr, nick: &str) -> (TcpClient, Vec<String>) {
    let mut client = TcpClient::connect_raw(addr).await;
    let welcome = common::irc::register(&mut client, nick).await;
    (client, welcome)
}

/// Receives UDP lines until one satisfies `wanted`.
async fn udp_until(udp: &UdpClient, wanted: impl Fn(&str) -> bool) {
    for _ in 0..1000 {
        if wanted(&udp.recv().await) {
            return;
        }
    }
    panic!("never got the line wanted over UDP");
}

#[tokio::test]
async fn registration_gives_the_welcome_numerics_and_honest_isupport() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut client, welcome) = irc(server.irc.expect("irc"), "alice").await;
    assert!(
        welcome[0].starts_with(":chatd 001 alice :Welcome"),
        "{welcome:?}"
    );
    let isupport: String = welcome
        .iter()
        .filter(|l| l.contains(" 005 "))
        .cloned()
        .collect();
    for token in [
        "CASEMAPPING=rfc8265",
        "CHANTYPES=#",
        "PREFIX=(ov)@+",
        "CHANMODES=b,k,l,imnst",
        "UTF8ONLY",
        "CHANLIMIT=#:100",
    ] {
        assert!(isupport.contains(token), "{token} missing from {isupport}");
    }
    assert!(welcome.iter().any(|l| l.contains(" 251 ")), "{welcome:?}");
    client.send("PING :abc").await;
    client.expect(":chatd PONG chatd abc").await;
    client.send("FROBNICATE x").await;
    client
        .expect(":chatd 421 alice FROBNICATE :Unknown command")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn commands_before_registration_are_refused_and_quit_gets_error() {
    let server = start_server("--irc 0 --name chatd").await;
    let mut client = TcpClient::connect_raw(server.irc.expect("irc")).await;
    client.send("JOIN #den").await;
    client.expect(":chatd 451 * :You have not registered").await;
    client.send("QUIT :bye").await;
    let line = client.recv().await;
    assert!(line.starts_with("ERROR "), "{line}");
    client.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn irc_and_netcat_members_talk_in_one_room_both_ways() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut alice, _) = irc(server.irc.expect("irc"), "alice").await;
    let mut bob = common::irc::meet_a_line_member(&mut alice, server.tcp).await;
    alice.send("PRIVMSG #den :\u{1}ACTION waves\u{1}").await;
    bob.expect("* alice waves").await;
    bob.send("/me nods").await;
    alice
        .expect(":bob!chat@chatd PRIVMSG #den :\u{1}ACTION nods\u{1}")
        .await;
    bob.send("/who").await;
    bob.expect_match(|l| l.contains("alice") && l.contains("(irc)"))
        .await;
    alice.send("PRIVMSG bob :psst").await;
    bob.expect("[private] <alice> psst").await;
    bob.send("/msg alice hi back").await;
    alice.expect(":bob!chat@chatd PRIVMSG alice :hi back").await;
    bob.send("/nick robert").await;
    alice.expect(":bob!chat@chatd NICK robert").await;
    alice.send("PART #den :later").await;
    alice.expect(":alice!chat@chatd PART #den later").await;
    bob.expect("* alice left #den: \"later\"").await;
    alice.send("QUIT :gone").await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_irc_member_sits_in_several_rooms_and_gets_each_in_order() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut alice, _) = irc(server.irc.expect("irc"), "alice").await;
    alice.send("JOIN #a,#b").await;
    alice
        .expect_match(|l| l.contains(" 366 ") && l.contains("#a"))
        .await;
    alice
        .expect_match(|l| l.contains(" 366 ") && l.contains("#b"))
        .await;
    let mut tcp = TcpClient::with_nick(server.tcp, "tee").await;
    tcp.send("/join #a").await;
    tcp.expect_match(|l| l.starts_with("* you are in #a")).await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/join #b").await;
    udp_until(&udp, |l| l.starts_with("* you are in #b")).await;
    // Within the UDP burst (20 lines), which drops rather than waits past it.
    for n in 0..10 {
        tcp.send(&format!("a{n}")).await;
        udp.send(&format!("b{n}")).await;
    }
    let (mut next_a, mut next_b) = (0, 0);
    while next_a < 10 || next_b < 10 {
        let line = alice.recv().await;
        if let Some(text) = line.strip_prefix(":tee!chat@chatd PRIVMSG #a ") {
            assert_eq!(text, format!("a{next_a}"), "order in #a");
            next_a += 1;
        } else if let Some((_, text)) = line.split_once(" PRIVMSG #b ") {
            assert_eq!(text, format!("b{next_b}"), "order in #b");
            next_b += 1;
        }
    }
    // Its lines go to the room they name only.
    alice.send("PRIVMSG #b :only b").await;
    udp_until(&udp, |l| l == "<alice> only b").await;
    alice.send("PART #b").await;
    alice.expect(":alice!chat@chatd PART #b").await;
    udp.send("after part").await;
    tcp.send("still here").await;
    // Nothing of #b arrives after its PART; #a goes on.
    let skipped = alice.expect(":tee!chat@chatd PRIVMSG #a :still here").await;
    assert!(
        skipped.iter().all(|l| !l.contains("after part")),
        "{skipped:?}"
    );
    tcp.send("/who").await;
    tcp.expect_match(|l| l.contains("alice")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn nick_rules_are_chatd_rules() {
    let server = start_server("--irc 0 --name chatd").await;
    let _bob = TcpClient::with_nick(server.tcp, "bob").await;
    let mut client = TcpClient::connect_raw(server.irc.expect("irc")).await;
    client.send("NICK bob").await;
    client
        .expect(":chatd 433 * bob :Nickname is already in use")
        .await;
    client.send("NICK BOB").await;
    client
        .expect(":chatd 433 * BOB :Nickname is already in use")
        .await;
    client.send("NICK carol").await;
    client.send("USER carol 0 * :Carol").await;
    client
        .expect_match(|l| l.starts_with(":chatd 001 carol "))
        .await;
    client.send("NICK b0b").await;
    client.expect_match(|l| l.contains(" 433 ")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_numeric_and_others_lose_nothing() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut alice, _) = irc(server.irc.expect("irc"), "alice").await;
    join(&mut alice, "#den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    let long = format!("PRIVMSG #den :{}", "x".repeat(9000));
    alice.send(&long).await;
    alice
        .expect(":chatd 417 alice :Input line was too long")
        .await;
    alice.send_raw(b"PRIVMSG #den :bad \xff\xfe utf8\r\n").await;
    alice.send("PRIVMSG #nowhere :hi").await;
    alice
        .expect_match(|l| l.contains(" 404 ") && l.contains("#nowhere"))
        .await;
    alice.send("PRIVMSG #den :still fine").await;
    let got = bob.expect("<alice> still fine").await;
    assert!(got.iter().all(|l| !l.contains("xxxx")), "{got:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn channel_operators_are_room_operators() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut alice, _) = irc(server.irc.expect("irc"), "alice").await;
    let names = join(&mut alice, "#ops").await;
    assert!(names.iter().any(|l| l.contains("@alice")), "{names:?}");
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #ops").await;
    bob.expect_match(|l| l.starts_with("* you are in #ops"))
        .await;
    alice.send("TOPIC #ops :plans").await;
    alice
        .expect_match(|l| l.ends_with("TOPIC #ops plans"))
        .await;
    bob.expect("* alice set the topic of #ops: plans").await;
    alice.send("MODE #ops +o bob").await;
    bob.expect_match(|l| l.contains("operator")).await;
    alice.send("KICK #ops bob :out").await;
    alice.expect_match(|l| l.contains(" KICK #ops bob ")).await;
    bob.expect_match(|l| l.contains("you were kicked from #ops"))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn line_members_part_back_to_the_lobby() {
    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/part").await;
    bob.expect_match(|l| l.starts_with("! #lobby is where everyone is"))
        .await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    bob.send("/part #elsewhere").await;
    bob.expect("! you are not in #elsewhere; you are in #den")
        .await;
    bob.send("/part #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #lobby"))
        .await;
    server.shutdown().await;
}

/// Reads WebSocket text frames until one satisfies `wanted`; returns it.
async fn ws_until(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    wanted: impl Fn(&str) -> bool,
) -> String {
    use futures::StreamExt;
    for _ in 0..1000 {
        let frame = tokio::time::timeout(common::TIMEOUT, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            assert!(!text.ends_with('\n'), "one line a frame, without CR LF");
            if wanted(&text) {
                return text.to_string();
            }
        }
    }
    panic!("never got the frame wanted");
}

#[tokio::test]
async fn a_web_irc_client_speaks_irc_over_the_http_port() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::Message;

    let server = start_server("--irc 0 --name chatd").await;
    let mut request = format!("ws://{}/", server.http)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("text.ircv3.net"),
    );
    let (mut socket, response) =
        tokio::time::timeout(common::TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("upgraded");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("text.ircv3.net")
    );
    for line in ["NICK webby", "USER webby 0 * :Web Client", "JOIN #den"] {
        socket.send(Message::Text(line.into())).await.expect("send");
    }
    ws_until(&mut socket, |l| l.contains(" 366 ")).await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    bob.send("hello web").await;
    ws_until(&mut socket, |l| {
        l == ":bob!chat@chatd PRIVMSG #den :hello web"
    })
    .await;
    socket
        .send(Message::Text("PRIVMSG #den :hello nc".into()))
        .await
        .expect("send");
    bob.expect("<webby> hello nc").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_line_member_line_reaches_irc_whole_in_pieces() {
    let server = start_server("--irc 0 --name chatd").await;
    let (mut alice, _) = irc(server.irc.expect("irc"), "alice").await;
    join(&mut alice, "#den").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    let long = "ab".repeat(1000);
    bob.send(&long).await;
    let mut got = String::new();
    while got.len() < long.len() {
        let line = alice.recv().await;
        assert!(line.len() + 2 <= 512, "{} bytes", line.len());
        if let Some(piece) = line.strip_prefix(":bob!chat@chatd PRIVMSG #den ") {
            got.push_str(piece.strip_prefix(':').unwrap_or(piece));
        }
    }
    assert_eq!(got, long);
    server.shutdown().await;
}

/// A burst from an IRC sender far bigger than the room's ring is paced (as a line member's is),
/// so IRC readers that keep up get every line instead of "you missed N messages".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_burst_is_paced_so_readers_that_keep_up_miss_nothing() {
    let server = start_server("--irc 0 --backlog 32 --rate off --sendq off").await;
    let irc_addr = server.irc.expect("irc");
    let mut readers = Vec::new();
    for n in 0..3 {
        let (mut reader, _) = irc(irc_addr, &format!("reader{n}")).await;
        join(&mut reader, "#den").await;
        readers.push(reader);
    }
    let (mut sender, _) = irc(irc_addr, "sender").await;
    join(&mut sender, "#den").await;
    let total = 2000;
    // The whole burst in one write: the server reads it in few reads, and must pace line by line.
    let burst: String = (0..total)
        .map(|i| format!("PRIVMSG #den :{i} burst\r\n"))
        .collect();
    sender.send_raw(burst.as_bytes()).await;
    let readers = readers.into_iter().map(|mut reader| {
        tokio::spawn(async move {
            let mut next = 0;
            while next < total {
                let line = reader.recv().await;
                assert!(!line.contains("you missed"), "lost lines: {line}");
                if let Some(text) = line.strip_prefix(":sender!chat@chatd PRIVMSG #den :") {
                    assert_eq!(text, format!("{next} burst"));
                    next += 1;
                }
            }
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        reader.await.expect("a reader got every line in order");
    }
    server.shutdown().await;
}

/// An IRC client that never reads must not slow the room's senders: once its write is stuck it
/// stops counting for pacing, so a reader that keeps up gets a burst far bigger than the stuck
/// client's socket buffers at full speed (each paced line would otherwise wait 250 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_client_that_never_reads_does_not_pace_the_room() {
    let server = start_server("--irc 0 --backlog 32 --rate off --sendq off").await;
    let irc_addr = server.irc.expect("irc");
    let (mut reader, _) = irc(irc_addr, "reader").await;
    join(&mut reader, "#den").await;
    let (mut stuck, _) = irc(irc_addr, "stuck").await;
    join(&mut stuck, "#den").await;
    let (mut sender, _) = irc(irc_addr, "sender").await;
    join(&mut sender, "#den").await;
    // About 9 MB: more than a socket that is never read holds on both ends (a few MB).
    let total = 20_000;
    let pad = "s".repeat(400);
    let burst: String = (0..total)
        .map(|i| format!("PRIVMSG #den :{i} {pad}\r\n"))
        .collect();
    let started = std::time::Instant::now();
    let send = tokio::spawn(async move {
        sender.send_raw(burst.as_bytes()).await;
        sender
    });
    let mut next = 0;
    while next < total {
        let line = reader.recv().await;
        if let Some(text) = line.strip_prefix(":sender!chat@chatd PRIVMSG #den :") {
            assert_eq!(text, format!("{next} {pad}"));
            next += 1;
        }
    }
    // Paced for the stuck client, 20,000 lines would take over an hour (250 ms each past its
    // buffers); the bound leaves a loaded debug build plenty.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "the burst took {:?}",
        started.elapsed()
    );
    drop(send.await.expect("sent"));
    drop(stuck);
    server.shutdown().await;
}
