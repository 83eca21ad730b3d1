//! Slash commands, the same on TCP and UDP.
mod common;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn quit_leaves_at_once_and_others_see_it() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;
    bob.send("/quit gotta go").await;
    // The quitter is told before the connection closes.
    let last = bob.expect_closed().await;
    assert_eq!(last, ["* bye"]);
    alice
        .expect(&format!("* {} left: \"gotta go\"", bob.name))
        .await;

    let udp = UdpClient::join(server.udp).await;
    alice.expect(&format!("* {} joined", udp.name)).await;
    udp.send("/quit").await;
    udp.expect("* bye").await;
    alice.expect(&format!("* {} left", udp.name)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn nick_changes_name_and_refuses_taken_or_malformed_names() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::connect(server.tcp).await;
    let old = bob.name.clone();
    alice.expect(&format!("* {old} joined")).await;

    bob.send("/nick bob").await;
    assert_eq!(bob.recv().await, "* you are now known as bob");
    assert_eq!(alice.recv().await, format!("* {old} is now known as bob"));

    bob.send("/nick ALICE").await;
    assert_eq!(bob.recv().await, "! that name is taken");
    bob.send("/nick bad name!").await;
    assert_eq!(
        bob.recv().await,
        "! nickname may only contain letters, digits, '_', '-' and '.'"
    );
    bob.send(&format!("/nick {}", "x".repeat(40))).await;
    assert_eq!(bob.recv().await, "! nickname must be 1 to 32 characters");
    bob.send("/nick").await;
    assert_eq!(bob.recv().await, "! usage: /nick NAME");

    // The new name is the one others see on messages.
    bob.send("hello").await;
    assert_eq!(alice.recv().await, "<bob> hello");

    // A UDP peer can take a nick too, and a freed nick can be taken again.
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick alice").await;
    // The lobby's history (bob's line) comes first.
    udp.expect("! that name is taken").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    bob.expect("* alice left").await;
    udp.send("/nick alice").await;
    udp.expect("* you are now known as alice").await;
    server.shutdown().await;
}

#[tokio::test]
async fn who_lists_members_with_their_transport() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick zed").await;
    udp.expect("* you are now known as zed").await;
    alice
        .expect(&format!("* {} is now known as zed", udp.name))
        .await;
    alice.send("/who").await;
    assert_eq!(alice.recv().await, "* 2 here:");
    assert_eq!(alice.recv().await, "*   alice (tcp) (you)");
    assert_eq!(alice.recv().await, "*   zed (udp)");
    udp.send("/who").await;
    assert_eq!(udp.recv().await, "* 2 here:");
    assert_eq!(udp.recv().await, "*   alice (tcp)");
    assert_eq!(udp.recv().await, "*   zed (udp) (you)");
    server.shutdown().await;
}

#[tokio::test]
async fn msg_is_private_across_transports() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick carol").await;
    udp.expect("* you are now known as carol").await;
    let renamed = format!("* {} is now known as carol", udp.name);
    bob.expect(&renamed).await;
    alice.expect(&renamed).await;

    alice.send("/msg carol psst").await;
    assert_eq!(udp.recv().await, "[private] <alice> psst");
    // The sender is told it went out, with what it said.
    assert_eq!(alice.recv().await, "[private to carol] psst");
    udp.send("/msg ALICE back at you").await;
    assert_eq!(udp.recv().await, "[private to ALICE] back at you");
    assert_eq!(alice.recv().await, "[private] <carol> back at you");
    // bob saw neither: the next thing he gets is a public line.
    alice.send("public").await;
    assert_eq!(bob.recv().await, "<alice> public");

    alice.send("/msg nobody hi").await;
    assert_eq!(alice.recv().await, "! no such member: nobody");
    alice.send("/msg bob").await;
    assert_eq!(alice.recv().await, "! usage: /msg NAME text");
    server.shutdown().await;
}

#[tokio::test]
async fn help_unknown_commands_and_literal_slash() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    let mut bob = TcpClient::connect(server.tcp).await;
    alice.expect(&format!("* {} joined", bob.name)).await;

    alice.send("/help").await;
    let first = alice.recv().await;
    assert_eq!(first, "* commands:");
    let mut help = Vec::new();
    for _ in 1..chatd::protocol::HELP.len() {
        help.push(alice.recv().await);
    }
    for command in ["/nick", "/who", "/msg", "/quit", "/help", "//"] {
        assert!(
            help.iter().any(|l| l.contains(command)),
            "{command} in {help:?}"
        );
    }

    alice.send("/dance").await;
    assert_eq!(
        alice.recv().await,
        "! unknown command /dance; type /help for the list"
    );

    alice.send("//shrug").await;
    assert_eq!(bob.recv().await, format!("<{}> /shrug", alice.name));
    server.shutdown().await;
}

#[tokio::test]
async fn replies_to_a_last_command_arrive_before_the_server_closes() {
    // `echo /who | nc -N host port`: the command and end of input arrive together.
    let server = start_server("").await;
    let mut client = TcpClient::connect(server.tcp).await;
    client.send("/who").await;
    client.finish_sending().await;
    let lines = client.expect_closed().await;
    assert_eq!(
        lines,
        vec![
            "* 1 here:".to_string(),
            format!("*   {} (tcp) (you)", client.name)
        ]
    );
    let mut quitter = TcpClient::connect(server.tcp).await;
    quitter.send("/help").await;
    quitter.send("/quit").await;
    let lines = quitter.expect_closed().await;
    // The whole help, then the goodbye.
    assert_eq!(lines.len(), chatd::protocol::HELP.len() + 1, "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("* bye"));
    server.shutdown().await;
}
