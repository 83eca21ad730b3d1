//! WebSocket members for the web cases: each one is bridged to a local TCP socket pair, so the
//! receive loop and the senders run unchanged on a plain stream while the server sees a browser
//! member on `/ws`. They ask for what the chat page asks for, several lines per frame
//! (`/ws?batch=1`; a chatd without it sends one frame per line, which reads the same here). The bridge costs the load generator CPU, not the server; latencies include
//! one extra loopback hop on each side.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::conn;
use super::server::ServerKind;

/// Bytes of frames gathered into one write to the bridge's socket.
const BATCH: usize = 64 * 1024;

/// Where a member connects: `/ws`, frames of several lines as the page asks.
fn url(http: SocketAddr) -> String {
    format!("ws://{http}/ws?batch=1")
}

/// A WebSocket member's connection.
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `http`'s `/ws` and reads frames until the server's greeting.
pub async fn connect_ws(http: SocketAddr, kind: ServerKind, timeout: Duration) -> Result<WsStream> {
    tokio::time::timeout(timeout, async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url(http)).await?;
        while let Some(frame) = ws.next().await {
            if let Message::Text(text) = frame? {
                if text.lines().any(|l| kind.is_greeting(l.as_bytes())) {
                    return Ok(ws);
                }
            }
        }
        anyhow::bail!("closed before greeting")
    })
    .await
    .map_err(|_| anyhow!("no greeting within {timeout:?}"))?
}

/// Opens a WebSocket to `http`'s `/ws` and returns the local end of its bridge once the server's
/// greeting has come through it.
pub async fn connect_greeted_ws(
    http: SocketAddr,
    kind: ServerKind,
    timeout: Duration,
) -> Result<TcpStream> {
    tokio::time::timeout(timeout, async {
        let (ws, _) = tokio_tungstenite::connect_async(url(http)).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mine, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut mine, (theirs, _)) = (mine?, theirs?);
        mine.set_nodelay(true)?;
        theirs.set_nodelay(true)?;
        tokio::spawn(bridge(ws, theirs));
        conn::wait_greeting(&mut mine, kind).await?;
        Ok::<_, anyhow::Error>(mine)
    })
    .await
    .map_err(|_| anyhow!("no greeting within {timeout:?}"))?
}

/// Frames to lines one way (a frame may hold several), lines to frames the other, until both
/// sides are done.
async fn bridge(ws: WsStream, tcp: TcpStream) {
    let (mut sink, mut frames) = ws.split();
    let (rd, mut wr) = tcp.into_split();
    let down = async {
        let mut buf = Vec::with_capacity(BATCH);
        while let Some(Ok(first)) = frames.next().await {
            let mut next = Some(first);
            // What is already here goes out in one write.
            while let Some(message) = next.take() {
                match message {
                    Message::Text(text) => {
                        buf.extend_from_slice(text.as_bytes());
                        buf.push(b'\n');
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
                if buf.len() < BATCH {
                    if let Some(Some(Ok(more))) = frames.next().now_or_never() {
                        next = Some(more);
                    }
                }
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
        let _ = wr.shutdown().await;
    };
    let up = async {
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if sink.send(Message::text(line)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(down, up);
}
