//! Getting clients in: TCP connections that count only once the server greeted them, and UDP peers
//! that count once welcomed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::server::ServerKind;

/// Most bytes read while waiting for a greeting; ncat's `already connected:` list grows with the
/// room, chatd may send join notices first.
const GREETING_MAX: usize = 1 << 20;

/// Source addresses for client sockets: client `i` binds `127.0.0.(2 + i / per_source)`, so more
/// connections than one address has ephemeral ports can be opened.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    /// Connections per source address; below the ephemeral port range size (about 28k).
    pub per_source: usize,
}

impl Sources {
    /// The source address for client `i`.
    pub fn addr(&self, i: usize) -> Result<IpAddr> {
        let n = 2 + i / self.per_source.max(1);
        let last = u8::try_from(n).map_err(|_| anyhow!("ran out of 127.0.0.x source addresses"))?;
        Ok(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }
}

/// Connects one TCP client (from `source` if given) and reads until the server's greeting (for
/// IRC, until it has registered and joined the channel).
pub async fn connect_greeted(
    server: SocketAddr,
    source: Option<IpAddr>,
    kind: ServerKind,
    timeout: Duration,
) -> Result<TcpStream> {
    tokio::time::timeout(timeout, async {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            // Let connect() pick the port by the full 4-tuple instead of reserving one at bind(),
            // or bind() alone would run a source address out of ports early.
            set_bind_no_port(&socket)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let mut stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        if kind.is_irc() {
            // Registration and the join are one exchange; 001 alone is not yet in the channel.
            crate::irc::register(&mut stream, &crate::irc::next_nick()).await?;
        } else {
            wait_greeting(&mut stream, kind).await?;
        }
        if kind.is_nats() {
            nats_subscribe(&mut stream).await?;
        }
        Ok::<_, anyhow::Error>(stream)
    })
    .await
    .map_err(|_| anyhow!("no greeting within {timeout:?}"))?
}

fn set_bind_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and an int-sized option value that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What a NATS client says after the server's `INFO`: no `+OK` per command, no copies of its own
/// messages (like chatd and ncat), one subscription to the room, and a `PING` whose `PONG` proves
/// the subscription is in place before the case starts sending.
pub const NATS_HELLO: &[u8] =
    b"CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB room 1\r\nPING\r\n";

/// Subject every NATS client publishes to and subscribes to.
pub const NATS_SUBJECT: &str = "room";

/// Sends [`NATS_HELLO`] and waits for the server's `PONG`.
async fn nats_subscribe(stream: &mut TcpStream) -> Result<()> {
    stream.write_all(NATS_HELLO).await?;
    wait_line(stream, |line| line.starts_with(b"PONG"))
        .await
        .context("waiting for PONG after SUB")
}

/// Reads lines until one is the server's greeting; whatever follows it in the same read is
/// dropped (only notices can come before the case starts sending).
pub(crate) async fn wait_greeting(stream: &mut TcpStream, kind: ServerKind) -> Result<()> {
    wait_line(stream, |line| kind.is_greeting(line)).await
}

/// Reads lines until `wanted` accepts one, dropping the rest of that read.
async fn wait_line(stream: &mut TcpStream, wanted: impl Fn(&[u8]) -> bool) -> Result<()> {
    converse(stream, GREETING_MAX, |line| {
        Ok(if wanted(line) { Turn::Done } else { Turn::Wait })
    })
    .await
}

/// What a client does about one line while it waits to be let in.
pub(crate) enum Turn {
    /// Keep reading.
    Wait,
    /// Send this, then keep reading.
    Reply(Vec<u8>),
    /// In: stop reading (what followed in the same read is dropped).
    Done,
}

/// Reads lines (without `\n`), hands each to `handle` and sends its replies, until it says
/// [`Turn::Done`], fails, the server closes, or `max` bytes have come without that.
pub(crate) async fn converse(
    stream: &mut TcpStream,
    max: usize,
    mut handle: impl FnMut(&[u8]) -> Result<Turn>,
) -> Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "closed before greeting: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            );
        }
        total += n;
        buf.extend_from_slice(&chunk[..n]);
        let (mut start, mut replies) = (0, Vec::new());
        for nl in memchr::memchr_iter(b'\n', &buf) {
            match handle(&buf[start..nl])? {
                Turn::Wait => {}
                Turn::Reply(r) => replies.extend(r),
                Turn::Done => {
                    stream.write_all(&replies).await?;
                    return Ok(());
                }
            }
            start = nl + 1;
        }
        buf.drain(..start);
        if !replies.is_empty() {
            stream.write_all(&replies).await?;
        }
        if total > max {
            bail!("no greeting in the first {max} bytes");
        }
    }
}

/// Connects `n` clients with at most `concurrency` handshakes in flight. Returns the greeted
/// streams in client order (failed slots are `Err`), so callers can tell who is a sender.
pub async fn connect_many(
    server: SocketAddr,
    n: usize,
    kind: ServerKind,
    concurrency: usize,
    sources: Option<Sources>,
    timeout: Duration,
) -> Vec<Result<TcpStream>> {
    let mut out: Vec<Option<Result<TcpStream>>> = (0..n).map(|_| None).collect();
    let mut results = futures::stream::iter(0..n)
        .map(|i| async move {
            let source = match sources.map(|s| s.addr(i)).transpose() {
                Ok(s) => s,
                Err(e) => return (i, Err(e)),
            };
            (i, connect_greeted(server, source, kind, timeout).await)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((i, r)) = results.next().await {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("not attempted"))))
        .collect()
}

/// Joins one UDP peer: sends `#ping#` until the welcome datagram arrives (UDP may lose either).
/// Returns the socket as a nonblocking std socket, connected to the server, for
/// [`super::udp::UdpReceivers`] to read and senders to write.
pub async fn join_udp(
    server: SocketAddr,
    attempts: u32,
    wait: Duration,
) -> Result<Arc<std::net::UdpSocket>> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("binding a UDP peer")?;
    sock.connect(server).await?;
    let mut buf = [0u8; 2048];
    for _ in 0..attempts {
        sock.send(b"#ping#").await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(n)) => {
                    if ServerKind::Chatd.is_greeting(&buf[..n]) {
                        return Ok(Arc::new(sock.into_std()?));
                    }
                }
            }
        }
    }
    bail!("no welcome after {attempts} pings")
}

/// Joins `n` UDP peers, `concurrency` at a time, in order (failed slots are `Err`).
pub async fn join_udp_many(
    server: SocketAddr,
    n: usize,
    concurrency: usize,
) -> Vec<Result<Arc<std::net::UdpSocket>>> {
    futures::stream::iter(0..n)
        .map(|_| join_udp(server, 5, Duration::from_millis(500)))
        .buffered(concurrency.max(1))
        .collect()
        .await
}
