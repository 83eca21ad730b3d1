//! The answers a newcomer reads: counts in good English, empty lists said plainly, one notice per
//! event, aliases in `/help`, and a UDP member evicted for silence told so and let back as it was.
mod common;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};

#[tokio::test]
async fn one_room_is_one_room_and_an_empty_ban_list_says_no_bans() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/rooms").await;
    alice.expect("* 1 room:").await;
    alice.send("/join den").await;
    alice.expect("* you are in #den with 0 others").await;
    alice.send("/bans").await;
    alice.expect("* no bans in #den").await;
    alice.send("/ban 10.0.0.1").await;
    alice.send("/bans").await;
    alice.expect("* 1 ban in #den:").await;
    server.shutdown().await;
}

#[tokio::test]
async fn history_of_an_empty_room_says_there_is_none_yet() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    alice.send("/history 5").await;
    assert_eq!(alice.recv().await, "* no messages in #lobby yet");
    alice.send("/history").await;
    assert_eq!(alice.recv().await, "* no messages in #lobby yet");
    server.shutdown().await;
}

#[tokio::test]
async fn a_muted_member_is_told_once() {
    let server = start_server("").await;
    let mut alice = TcpClient::with_nick(server.tcp, "alice").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    alice.send("/join den").await;
    alice.expect("* you are in #den with 0 others").await;
    bob.send("/join den").await;
    bob.expect("* you are in #den with 1 other").await;
    alice.send("/mute bob").await;
    alice.expect("* bob was muted by alice").await;
    alice.send("after the mute").await;
    let mut seen = Vec::new();
    while !(seen.iter().any(|l| l == "<alice> after the mute")
        && seen.iter().any(|l| l == "! you are muted in #den by alice"))
    {
        seen.push(bob.recv().await);
    }
    assert!(
        !seen.iter().any(|l| l.contains("was muted")),
        "one notice for one mute: {seen:?}"
    );
    alice.send("/unmute bob").await;
    alice.expect("* bob was unmuted by alice").await;
    alice.send("after the unmute").await;
    let skipped = bob.expect("<alice> after the unmute").await;
    assert!(
        skipped.contains(&"* you may speak in #den again".to_string())
            && !skipped.iter().any(|l| l.contains("was unmuted")),
        "{skipped:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn help_names_the_aliases_it_accepts() {
    let server = start_server("").await;
    let mut alice = TcpClient::connect(server.tcp).await;
    alice.send("/help").await;
    let help = alice
        .expect("*   //text           send a line that starts with /")
        .await;
    assert!(
        help.iter()
            .any(|l| l.contains("/who") && l.contains("/list")),
        "{help:?}"
    );
    assert!(
        help.iter()
            .any(|l| l.contains("/quit") && l.contains("/exit")),
        "{help:?}"
    );
    server.shutdown().await;
}

/// A UDP member that falls silent past two heartbeats is told why it was dropped, and its next
/// datagram (within the grace period) brings it back under its name in its room.
#[tokio::test]
async fn a_udp_member_evicted_for_silence_is_told_and_comes_back_as_it_was() {
    let server = start_server("--heartbeat 200ms").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    watcher.send("/join den").await;
    watcher.expect("* you are in #den with 0 others").await;
    let udp = UdpClient::join(server.udp).await;
    udp.send("/nick quiet").await;
    udp.expect("* you are now known as quiet").await;
    udp.send("/join den").await;
    udp.expect("* you are in #den with 1 other").await;

    // Silence: the server evicts it and says so, naming the way back.
    watcher.expect("* quiet left (timed out)").await;
    let told = udp.recv().await;
    assert!(
        told.starts_with("! you were disconnected: nothing heard from you for 400ms")
            && told.contains("come back as quiet in #den"),
        "{told}"
    );

    // The name is held for this address meanwhile.
    let mut other = TcpClient::connect(server.tcp).await;
    other.send("/nick quiet").await;
    other.expect("! that name is taken").await;

    udp.send("I'm back").await;
    udp.expect("* welcome back: taking back your name quiet and room #den")
        .await;
    udp.expect("* you are now known as quiet").await;
    udp.expect("* you are in #den with 1 other").await;
    let skipped = watcher.expect("<quiet> I'm back").await;
    assert!(
        skipped.contains(&"* quiet joined #den".to_string()),
        "{skipped:?}"
    );
    // And it stays: a heartbeat keeps it, and it still speaks in #den as quiet.
    udp.send("#ping#").await;
    udp.send("still here").await;
    tokio::time::timeout(TIMEOUT, watcher.expect("<quiet> still here"))
        .await
        .expect("in time");
    server.shutdown().await;
}
