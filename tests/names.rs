//! Issue 10 §2, names: members are not shown to others by address (`guest-N` until they pick a
//! nick, unless `--show-addresses`); nicks may be written in any script; and names that only look
//! alike (case, confusable letters, mixed scripts) cannot pass for one another.
mod common;

use common::{start_server, TcpClient, UdpClient};

#[tokio::test]
async fn others_see_guest_names_not_addresses() {
    let server = start_server("").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let udp = UdpClient::join(server.udp).await;
    // Its own welcome told it its address (UdpClient::join checks); others see a guest name.
    assert!(udp.name.starts_with("guest-"), "{}", udp.name);
    let joined = watcher.recv().await;
    assert_eq!(joined, format!("* {} joined", udp.name));
    let tcp = TcpClient::connect(server.tcp).await;
    assert!(tcp.name.starts_with("guest-"), "{}", tcp.name);
    assert_ne!(tcp.name, udp.name);
    watcher.expect(&format!("* {} joined", tcp.name)).await;
    watcher.send("/who").await;
    let mut who = vec![watcher.recv().await];
    for _ in 0..3 {
        who.push(watcher.recv().await);
    }
    assert_eq!(who[0], "* 3 here:");
    assert!(who.contains(&format!("*   {} (udp)", udp.name)), "{who:?}");
    assert!(who.contains(&format!("*   {} (tcp)", tcp.name)), "{who:?}");
    let ports = [udp.addr.port().to_string()];
    for line in who.iter().chain([&joined]) {
        assert!(!line.contains("127.0.0.1"), "address shown: {line:?}");
        assert!(!line.contains(&ports[0]), "port shown: {line:?}");
    }
    udp.send("hi").await;
    assert_eq!(watcher.recv().await, format!("<{}> hi", udp.name));
    server.shutdown().await;
}

#[tokio::test]
async fn show_addresses_names_members_by_address() {
    let server = start_server("--show-addresses").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let udp = UdpClient::join(server.udp).await;
    assert_eq!(udp.name, udp.addr.to_string());
    watcher.expect(&format!("* {} joined", udp.addr)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn nicks_may_be_written_in_any_script() {
    let server = start_server("").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let mut zhang = TcpClient::with_nick(server.tcp, "张三").await;
    watcher.expect_renamed("张三").await;
    // Decomposed e + combining acute is stored and shown composed (NFC).
    let jose = UdpClient::join(server.udp).await;
    jose.send("/nick jose\u{301}").await;
    jose.expect("* you are now known as jos\u{e9}").await;
    watcher.expect_renamed("jos\u{e9}").await;
    jose.send("/msg 张三 你好").await;
    zhang.expect("[private] <josé> 你好").await;
    assert_eq!(jose.recv().await, "[private to 张三] 你好");
    zhang.send("/msg JOSÉ olá").await;
    assert_eq!(jose.recv().await, "[private] <张三> olá");
    zhang.send("hello").await;
    watcher.expect("<张三> hello").await;
    server.shutdown().await;
}

#[tokio::test]
async fn look_alike_names_are_refused() {
    let server = start_server("").await;
    let _alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut mallory = TcpClient::connect(server.tcp).await;
    // Another case.
    mallory.send("/nick ALICE").await;
    assert_eq!(mallory.recv().await, "! that name is taken");
    // A Cyrillic а among Latin letters: a confusable mix of scripts.
    mallory.send("/nick \u{430}lice").await;
    assert_eq!(
        mallory.recv().await,
        "! nickname may not mix scripts that look alike"
    );
    // All Cyrillic, but it looks like alice: its skeleton is taken.
    mallory
        .send("/nick \u{430}\u{4cf}\u{456}\u{441}\u{435}")
        .await;
    assert_eq!(mallory.recv().await, "! that name is taken");
    // Digits standing in for letters.
    mallory.send("/nick a1ice").await;
    assert_eq!(mallory.recv().await, "! that name is taken");
    // Something else entirely is fine.
    mallory.send("/nick mallory").await;
    assert_eq!(mallory.recv().await, "* you are now known as mallory");
    server.shutdown().await;
}

#[tokio::test]
async fn look_alikes_of_names_in_use_and_hidden_characters_are_refused() {
    let server = start_server("").await;
    let _alice = TcpClient::with_nick(server.tcp, "alice").await;
    let _mike = TcpClient::with_nick(server.tcp, "MIKE").await;
    let mut mallory = TcpClient::connect(server.tcp).await;
    for fake in [
        // A capital I for the l.
        "aIice",
        // Greek and Cyrillic capitals.
        "\u{39c}\u{399}\u{39a}\u{395}",
        "\u{41c}\u{406}\u{41a}\u{415}",
        // Cherokee capitals.
        "\u{13aa}\u{13de}\u{13a5}\u{13df}\u{13ac}",
        // A dot above an i that has one already.
        "ali\u{307}ce",
        // A Han stroke and a Hangul vowel for the l; katakana for the I.
        "a\u{4e28}ice",
        "a\u{3163}ice",
        "M\u{30a8}KE",
    ] {
        mallory.send(&format!("/nick {fake}")).await;
        assert_eq!(mallory.recv().await, "! that name is taken", "{fake:?}");
    }
    // Direction controls are refused, not silently stripped into another name.
    mallory.send("/nick \u{202e}ecila").await;
    assert_eq!(
        mallory.recv().await,
        "! a name may not contain control, direction or invisible characters"
    );
    // Zalgo: a letter under 32 marks.
    mallory
        .send(&format!("/nick z{}", "\u{301}".repeat(32)))
        .await;
    assert_eq!(
        mallory.recv().await,
        "! nickname may not stack more than 3 marks on one letter"
    );
    // The one who was refused is still who it was, and a name of its own is fine.
    mallory.send("/nick mallory").await;
    assert_eq!(mallory.recv().await, "* you are now known as mallory");
    server.shutdown().await;
}
