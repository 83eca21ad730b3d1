//! IRC clients for the tests, over any [`TcpClient`] (plain TCP or TLS): registration and joins,
//! each waiting (bounded, as every `TcpClient` read is) for the server's answer.

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
