//! Sending side: closed loop (as fast as the server takes it) or open loop (a fixed schedule, so a
//! slow server shows up as latency instead of as a lower send rate).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use super::hist::Histogram;
use super::irc::SharedWriter;
use super::msg::{encode, Token, MSG_LEN};
use super::recv::Clock;

/// How a sender paces its messages.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// Send the next message as soon as the previous write returned (TCP flow control paces it).
    Closed,
    /// Message `i` is due at `start + phase + i * interval`.
    Open {
        /// Time between two messages of this sender.
        interval: Duration,
        /// Offset of this sender's schedule, so senders do not all fire at the same instant.
        phase: Duration,
    },
}

/// What one sender did.
#[derive(Debug, Clone, Default)]
pub struct SendStats {
    /// Messages written completely.
    pub sent: u64,
    /// Time of the first send on the shared clock (ns).
    pub first_ns: Option<u64>,
    /// Time the last write returned (ns).
    pub last_ns: u64,
    /// Open loop: how late each message left against its due time (ns); large values mean the
    /// generator could not keep its schedule and under-loaded the server.
    pub lag: Histogram,
    /// The error that stopped this sender, if any.
    pub error: Option<String>,
}

/// Where a sender's lines go.
trait Outlet {
    /// Hands one complete message line to the transport.
    async fn put(&mut self, line: &[u8; MSG_LEN]) -> std::io::Result<()>;
}

/// A TCP client's sending side, speaking its server's protocol.
pub enum TcpOut {
    /// chatd and ncat: the line as it is.
    Line(OwnedWriteHalf),
    /// NATS: `PUB room 64`, then the same 64-byte payload.
    Nats(OwnedWriteHalf),
    /// IRC: `PRIVMSG #room :` and the payload, on a write half the client's reader shares to
    /// answer `PING`.
    Irc(SharedWriter),
}

/// `PUB room 64\r\n`, then the payload, then `\r\n`.
const NATS_PUB_HEAD: &[u8] = b"PUB room 64\r\n";

impl TcpOut {
    /// Hands one message line over in the protocol's framing: one write per message, which keeps
    /// each embedded timestamp true to when it was handed over.
    pub async fn put(&mut self, line: &[u8; MSG_LEN]) -> std::io::Result<()> {
        match self {
            TcpOut::Line(wr) => wr.write_all(line).await,
            TcpOut::Nats(wr) => {
                let mut frame = [0u8; NATS_PUB_HEAD.len() + MSG_LEN + 2];
                frame[..NATS_PUB_HEAD.len()].copy_from_slice(NATS_PUB_HEAD);
                frame[NATS_PUB_HEAD.len()..NATS_PUB_HEAD.len() + MSG_LEN].copy_from_slice(line);
                frame[NATS_PUB_HEAD.len() + MSG_LEN..].copy_from_slice(b"\r\n");
                wr.write_all(&frame).await
            }
            TcpOut::Irc(wr) => wr.lock().await.write_all(&crate::irc::privmsg(line)).await,
        }
    }
}

impl Outlet for TcpOut {
    async fn put(&mut self, line: &[u8; MSG_LEN]) -> std::io::Result<()> {
        TcpOut::put(self, line).await
    }
}

impl Outlet for &std::net::UdpSocket {
    async fn put(&mut self, line: &[u8; MSG_LEN]) -> std::io::Result<()> {
        // The socket is nonblocking and read by another thread; a full send buffer on loopback
        // clears within microseconds, so poll briefly instead of registering it with a reactor.
        loop {
            match self.send(line) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sends `count` messages as sender `id` once `start` is reached.
async fn send_loop(
    id: u32,
    count: u32,
    pace: Pace,
    start: Instant,
    clock: Clock,
    stop: &CancellationToken,
    out: &mut impl Outlet,
) -> SendStats {
    let mut stats = SendStats::default();
    tokio::select! {
        _ = stop.cancelled() => return stats,
        _ = tokio::time::sleep_until(start.into()) => {}
    }
    let mut line = [0u8; MSG_LEN];
    for seq in 0..count {
        if let Pace::Open { interval, phase } = pace {
            let due = start + phase + interval * seq;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            stats
                .lag
                .record(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        }
        let now = clock.now_ns();
        stats.first_ns.get_or_insert(now);
        encode(
            &mut line,
            Token {
                sender: id,
                seq,
                sent_ns: now,
            },
        );
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = out.put(&line) => r,
        };
        if let Err(e) = result {
            stats.error = Some(e.to_string());
            break;
        }
        stats.sent += 1;
        stats.last_ns = clock.now_ns();
    }
    stats
}

/// Runs a TCP sender; its outlet is handed back so the connection stays open (closing it would
/// make the server drop the member while others still receive).
pub async fn send_tcp(
    mut out: TcpOut,
    id: u32,
    count: u32,
    pace: Pace,
    start: Instant,
    clock: Clock,
    stop: CancellationToken,
) -> (TcpOut, SendStats) {
    let stats = send_loop(id, count, pace, start, clock, &stop, &mut out).await;
    (out, stats)
}

/// Runs a UDP sender: one datagram per message on a socket connected to the server.
pub async fn send_udp(
    sock: Arc<std::net::UdpSocket>,
    id: u32,
    count: u32,
    pace: Pace,
    start: Instant,
    clock: Clock,
    stop: CancellationToken,
) -> SendStats {
    send_loop(id, count, pace, start, clock, &stop, &mut &*sock).await
}
