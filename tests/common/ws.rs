//! A WebSocket test client (tokio-tungstenite), as a browser's page script would be: one text
//! frame per line, or with `/ws?batch=1` (as the chat page asks) frames of several lines; every
//! wait bounded. Test files include it with
//! `#[path = "common/ws.rs"] mod ws;`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{name_from_welcome, TIMEOUT};

/// A WebSocket member.
pub struct WsClient {
    /// The name the server gave us in the welcome line.
    pub name: String,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames may hold several lines (`/ws?batch=1`): split them, keeping the rest here.
    batched: bool,
    pending: VecDeque<String>,
}

/// What opening `/ws` got: a socket, or the HTTP status it was refused with.
pub async fn open(
    http: SocketAddr,
    origin: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, u16> {
    open_path(http, "/ws", origin).await
}

/// As [`open`], at `path` (with its query).
pub async fn open_path(
    http: SocketAddr,
    path: &str,
    origin: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, u16> {
    let mut request = format!("ws://{http}{path}")
        .into_client_request()
        .expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    }
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("websocket handshake in time")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

impl WsClient {
    /// Connects (no Origin, like a non-browser tool) and reads the welcome line.
    pub async fn connect(http: SocketAddr) -> WsClient {
        let socket = open(http, None).await.expect("upgrade accepted");
        Self::welcomed(socket).await
    }

    /// Connects asking for several lines per frame (`/ws?batch=1`, as the page does) and reads
    /// the welcome line.
    pub async fn connect_batched(http: SocketAddr) -> WsClient {
        let socket = open_path(http, "/ws?batch=1", None)
            .await
            .expect("upgrade accepted");
        let mut client = Self::new(socket, true);
        client.welcome().await;
        client
    }

    /// Takes an open socket and reads the welcome line.
    pub async fn welcomed(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        let mut client = Self::new(socket, false);
        client.welcome().await;
        client
    }

    fn new(socket: WebSocketStream<MaybeTlsStream<TcpStream>>, batched: bool) -> WsClient {
        WsClient {
            name: String::new(),
            socket,
            batched,
            pending: VecDeque::new(),
        }
    }

    async fn welcome(&mut self) {
        let welcome = self.recv().await;
        assert!(
            welcome.starts_with("* "),
            "welcome expected, got {welcome:?}"
        );
        self.name = name_from_welcome(&welcome);
    }

    /// Connects and takes `nick`, waiting for the confirmation.
    pub async fn with_nick(http: SocketAddr, nick: &str) -> WsClient {
        let mut client = Self::connect(http).await;
        client.send(&format!("/nick {nick}")).await;
        client
            .expect(&format!("* you are now known as {nick}"))
            .await;
        client.name = nick.to_string();
        client
    }

    /// Sends one line as one text frame.
    pub async fn send(&mut self, line: &str) {
        self.send_message(Message::text(line)).await;
    }

    /// The next frame, whatever it is (pings are answered on the way); None when closed.
    pub async fn frame(&mut self) -> Option<Message> {
        match tokio::time::timeout(TIMEOUT, self.socket.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(_) => None,
            Err(_) => panic!("no frame within {TIMEOUT:?}"),
        }
    }

    /// The next line: the next text frame, or with `batch=1` the next line of one, skipping pings
    /// and pongs.
    pub async fn recv(&mut self) -> String {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return line;
            }
            match self.frame().await {
                Some(Message::Text(text)) if self.batched => {
                    self.pending.extend(text.split('\n').map(str::to_string));
                }
                Some(Message::Text(text)) => return text.to_string(),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("a line expected, got {other:?}"),
            }
        }
    }

    /// Receives lines until one equals `expected`, returning the lines skipped on the way.
    pub async fn expect(&mut self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.recv().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
            assert!(skipped.len() < 10_000, "never got {expected:?}");
        }
    }

    /// Receives lines until the server's close frame, returning them; the socket ends after it.
    pub async fn expect_close(&mut self) -> Vec<String> {
        self.until_close().await.0
    }

    /// Receives lines until the server's close frame; returns its code (None: a frame without one).
    pub async fn close_code(&mut self) -> Option<u16> {
        self.until_close().await.1.map(|frame| frame.code.into())
    }

    /// Sends one message or raw frame as it is.
    pub async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(TIMEOUT, self.socket.send(message))
            .await
            .expect("send in time")
            .expect("send");
    }

    async fn until_close(&mut self) -> (Vec<String>, Option<CloseFrame>) {
        let mut lines: Vec<String> = self.pending.drain(..).collect();
        loop {
            match self.frame().await {
                Some(Message::Text(text)) if self.batched => {
                    lines.extend(text.split('\n').map(str::to_string));
                }
                Some(Message::Text(text)) => lines.push(text.to_string()),
                Some(Message::Close(frame)) => return (lines, frame),
                Some(_) => {}
                None => panic!("connection ended without a close frame after {lines:?}"),
            }
            assert!(lines.len() < 10_000, "no close frame");
        }
    }
}

/// Upgrades a raw connection to `/ws`, then sends pings (the largest a control frame may carry)
/// and never reads: 200,000 at most (26 MB of pongs owed), for 60 s at most. Returns how many
/// were sent before the server let the connection go, if it did.
pub async fn ping_flood(http: std::net::SocketAddr) -> Option<usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so the server's pongs back up at once.
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut flood = tokio::time::timeout(TIMEOUT, socket.connect(http))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    flood.write_all(request.as_bytes()).await.expect("upgrade");
    // Reads the 101 answer (and nothing after it, ever).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(TIMEOUT, flood.read_exact(&mut byte))
            .await
            .expect("upgrade answer in time")
            .expect("upgrade answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    // A zero mask keeps the payload as it is.
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let pings: Vec<u8> = ping.repeat(100);
    let sent = async {
        for round in 0..2_000 {
            if flood.write_all(&pings).await.is_err() {
                return Some(round * 100);
            }
        }
        None
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), sent)
        .await
        .expect("the flood ends in time")
}
