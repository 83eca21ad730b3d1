//! IRC clients for the tests, over any [`TcpClient`] (plain TCP or TLS): registration and joins,
//! each waiting (bounded, as every `TcpClient` read is) for the server's answer.

use std::net::SocketAddr;

use super::TcpClient;

/// Registers as `nick` (`NICK`, `USER`) and waits for the end of the welcome; returns the lines
/// before it.
pub async fn register(client: &mut TcpClient, nick: &str) -> Vec<String> {
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick} here")).await;
    end_of_welcome(client).await
}

/// Waits for the end of the welcome (the MOTD's, or the numeric saying there is none); returns
/// the lines before it.
pub async fn end_of_welcome(client: &mut TcpClient) -> Vec<String> {
    client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await
}

/// Joins `channel` and waits for the end of its NAMES; returns the lines before it.
pub async fn join(client: &mut TcpClient, channel: &str) -> Vec<String> {
    client.send(&format!("JOIN {channel}")).await;
    client
        .expect_match(|l| l.contains(" 366 ") && l.contains(channel))
        .await
}

/// The IRC client `alice` (registered on a server named `chatd`) and a line member `bob` on `tcp`
/// meet in `#den`: NAMES lists both, the member hears the join, and each hears the other's line.
/// Returns bob.
pub async fn meet_a_line_member(alice: &mut TcpClient, tcp: SocketAddr) -> TcpClient {
    let mut bob = TcpClient::with_nick(tcp, "bob").await;
    bob.send("/join #den").await;
    bob.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    let names = join(alice, "#den").await;
    assert!(
        names
            .iter()
            .any(|l| l.contains(" 353 ") && l.contains("bob") && l.contains("alice")),
        "{names:?}"
    );
    bob.expect("* alice joined #den").await;
    bob.send("hello irc").await;
    alice
        .expect(":bob!chat@chatd PRIVMSG #den :hello irc")
        .await;
    alice.send("PRIVMSG #den :hello netcat").await;
    bob.expect("<alice> hello netcat").await;
    bob
}

/// SASL PLAIN's response for `authcid` (`alice`, or `alice@phone`) and `password`, in base64.
pub fn plain(authcid: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{authcid}\0{password}"))
}

/// Logs in with SASL PLAIN as `authcid` before registering as `nick`, with `caps` on too, and
/// waits for the end of the welcome.
pub async fn sasl_register(
    client: &mut TcpClient,
    nick: &str,
    caps: &str,
    authcid: &str,
    password: &str,
) {
    client.send(&format!("CAP REQ :sasl {caps}")).await;
    client.expect_match(|l| l.contains(" ACK ")).await;
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick} real")).await;
    client.send("AUTHENTICATE PLAIN").await;
    client.expect("AUTHENTICATE +").await;
    client
        .send(&format!("AUTHENTICATE {}", plain(authcid, password)))
        .await;
    client
        .expect_match(|l| l.contains(" 903 ") && l.contains("SASL authentication successful"))
        .await;
    client.send("CAP END").await;
    end_of_welcome(client).await;
}
