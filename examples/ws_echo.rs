//! A WebSocket echo server with chatd's WebSocket settings, for the Autobahn test suite
//! (contrib/autobahn/): chatd's `/ws` is a chat member, not an echo, so the suite cannot run
//! against it directly. The upgrade gets chatd's limits from the same function `/ws` uses
//! (message and frame size, write buffer cap), pings and pongs are paced by the same flood
//! control, a ping goes out every `--heartbeat` and a peer silent for two is let go, and every
//! connection ends with chatd's closing handshake and close codes.
//!
//! `cargo run --example ws_echo -- ADDR [CHATD FLAGS]`, e.g. `127.0.0.1:9001 --max-line 4096`:
//! the flags are chatd's own and mean the same (only the WebSocket ones matter here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chatd::config::{Config, ServerArgs};
use chatd::guard::limits::{Admit, FloodGuard};
use chatd::transport::ws;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::time::{sleep_until, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .ok_or("usage: ws_echo ADDR [CHATD FLAGS]")?
        .parse()?;
    let server = ServerArgs::try_parse_from(std::iter::once("chatd".to_string()).chain(args))?;
    let config = Arc::new(server.config());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ws_echo listening on ws://{}/", listener.local_addr()?);
    let app = Router::new().route("/", get(upgrade)).with_state(config);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(State(config): State<Arc<Config>>, upgrade: WebSocketUpgrade) -> Response {
    ws::limit(upgrade, &config).on_upgrade(move |socket| echo(socket, config))
}

/// Echoes every text and binary message until the peer closes, breaks the protocol or goes
/// silent, then ends with chatd's close frame.
async fn echo(socket: WebSocket, config: Arc<Config>) {
    let (mut sink, mut stream) = socket.split();
    let mut flood = FloodGuard::new(config.rate, config.burst, config.flood_kick, Instant::now());
    let alive = config.heartbeat.saturating_mul(2) + Duration::from_millis(500);
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    let mut code = close_code::NORMAL;
    loop {
        let next = tokio::select! {
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
            _ = sleep_until(heard + alive) => break,
            next = stream.next() => next,
        };
        heard = Instant::now();
        let reply = match next {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Err(e)) => {
                code = ws::close_code_for(&e);
                break;
            }
            // As in chatd: each ping owes a pong (tungstenite queues it), so pings are paced.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                if !paced(&mut flood).await {
                    break;
                }
                continue;
            }
            Some(Ok(message)) => message,
        };
        if sink.send(reply).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws::close(&mut sink, code)).await;
}

/// Waits as flood control says; false if the peer is to be kicked.
async fn paced(flood: &mut FloodGuard) -> bool {
    loop {
        match flood.admit(Instant::now()) {
            Admit::Now => return true,
            Admit::Later { wait, .. } => tokio::time::sleep(wait).await,
            Admit::Kick => return false,
        }
    }
}
