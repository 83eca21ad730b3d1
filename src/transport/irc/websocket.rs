//! IRC over WebSocket (the IRCv3 `text.ircv3.net` and `binary.ircv3.net` subprotocols), so web
//! IRC clients connect to the `--http` port without a gateway. Each WebSocket message is one IRC
//! line without its CR LF; a bridge turns messages into lines and back for the same connection
//! code that serves TCP clients.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// The subprotocols that ask for IRC, text frames first (the spec's preference).
pub const SUBPROTOCOLS: [&str; 2] = ["text.ircv3.net", "binary.ircv3.net"];

/// Bytes buffered between the WebSocket and the IRC connection in each direction.
const PIPE: usize = 64 * 1024;

/// Serves `socket`, which negotiated `subprotocol`, as an IRC client from `addr`.
pub async fn serve(
    socket: WebSocket,
    subprotocol: &str,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) {
    let binary = subprotocol == SUBPROTOCOLS[1];
    let (irc_side, bridge_side) = tokio::io::duplex(PIPE);
    let (irc_read, irc_write) = tokio::io::split(irc_side);
    let (bridge_read, mut bridge_write) = tokio::io::split(bridge_side);
    let (mut sink, mut stream) = socket.split();
    let inbound = async move {
        while let Some(Ok(message)) = stream.next().await {
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            // A message is one line; a CR or LF inside it would start another.
            let line: Vec<u8> = bytes
                .into_iter()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .chain(*b"\r\n")
                .collect();
            if bridge_write.write_all(&line).await.is_err() {
                break;
            }
        }
        let _ = bridge_write.shutdown().await;
    };
    let outbound = async move {
        let mut lines = BufReader::new(bridge_read);
        let mut line = Vec::new();
        loop {
            line.clear();
            // The server's own lines: bounded by what the IRC side writes.
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            let message = if binary {
                Message::Binary(line.clone().into())
            } else {
                Message::Text(String::from_utf8_lossy(&line).into_owned().into())
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    let irc = super::connection::serve_client(
        Box::new(irc_read),
        Box::new(irc_write),
        addr,
        hub,
        shutdown,
    );
    tokio::join!(irc, async {
        tokio::join!(inbound, outbound);
    });
}
