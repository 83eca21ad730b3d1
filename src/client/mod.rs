//! The bundled async client behind `chatc`.
//!
//! [`run`] connects to a chatd server over TCP or UDP, sends every line read
//! from `input` and writes every line the server sends to `output`, one per
//! line, flushed as it arrives. It is generic over the input and output so
//! that tests can drive it without a real terminal; the `chatc` binary passes
//! stdin and stdout.
//!
//! The wire format is described in `notes/wire.md`: lines end with `\n` on
//! TCP; on UDP one datagram carries one line.
//!
//! On a terminal, [`terminal`] puts a line editor in front of the same session and paints what
//! arrives ([`paint`]). Beside the session: [`scan`] finds servers on a network ([`targets`] says
//! which addresses, [`similar`] compares what they say about themselves). [`tls`] puts the TCP
//! session inside TLS (`chatc --tls`).

pub mod args;
pub mod paint;
pub mod scan;
pub mod similar;
pub mod targets;
pub mod terminal;
pub mod tls;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{self, Instant, MissedTickBehavior};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::protocol::codec::{Frame, LineCodec};
use crate::protocol::{self, Command, Input, PING};

/// Default longest input line, in bytes; matches the server's default `--max-line`.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Default UDP heartbeat interval; matches the server's default `--heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Shortest heartbeat `chatc` accepts (the server's own `--heartbeat` range).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest heartbeat interval accepted; longer would only get the client evicted.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);
/// Longest input line accepted as `max_line`: the largest a UDP datagram carries.
pub const MAX_LINE_LIMIT: usize = 65_000;
/// Default time to wait, after leaving over TCP, for the server to close.
pub const DEFAULT_QUIT_WAIT: Duration = Duration::from_secs(2);
/// Default time allowed for a TCP connection attempt to one address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest line accepted from the server. Server lines are bounded by its
/// `--max-line` plus a name prefix; this only guards our memory against a
/// misbehaving peer, so it is deliberately generous.
const SERVER_LINE_MAX: usize = 1 << 20;
/// Big enough for any UDP payload, so a datagram is never truncated.
const DATAGRAM_MAX: usize = 65_536;

const QUIT: &str = "/quit";
/// Size every heartbeat is padded to. A validating server answers an unknown
/// address only with a challenge smaller than what it got (so spoofed
/// datagrams cannot be amplified); a bare 6-byte `#ping#` would
/// never be challenged and the client could never join. The server trims
/// whitespace, so the padding still reads as a ping. Every ping is padded,
/// not only the first, so a lost `#pong#` or an eviction heals on the next
/// heartbeat.
const PING_SIZE: usize = 64;
const SHUTDOWN_NOTICE: &[u8] = b"* server shutting down";
const CHALLENGE_PREFIX: &[u8] = protocol::CHALLENGE_PREFIX.as_bytes();

/// Which transport the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One TCP connection; lines end with `\n`.
    Tcp,
    /// A connected UDP socket; one datagram per line, with heartbeats.
    Udp,
}

/// Everything [`run`] needs to know; build it with [`ClientConfig::new`] and
/// adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server as `HOST:PORT`, resolved with [`tokio::net::lookup_host`].
    pub server: String,
    /// TCP or UDP.
    pub transport: Transport,
    /// Name to take on join (sent as `/nick NAME` right after connecting).
    pub nick: Option<String>,
    /// How often to send `#ping#` over UDP; must not be zero.
    pub heartbeat: Duration,
    /// Longest input line sent, in bytes; longer lines are reported and skipped.
    pub max_line: usize,
    /// After leaving over TCP, how long to keep printing while waiting for
    /// the server to close.
    pub quit_wait: Duration,
    /// How long one TCP connection attempt may take.
    pub connect_timeout: Duration,
    /// Speak TLS over the TCP connection, checking the server's certificate this way.
    pub tls: Option<tls::Verify>,
}

impl ClientConfig {
    /// A configuration for `server` (`HOST:PORT`) over `transport`, with defaults
    /// matching the server's.
    pub fn new(server: impl Into<String>, transport: Transport) -> Self {
        Self {
            server: server.into(),
            transport,
            nick: None,
            heartbeat: DEFAULT_HEARTBEAT,
            max_line: DEFAULT_MAX_LINE,
            quit_wait: DEFAULT_QUIT_WAIT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
        }
    }
}

/// Why a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The input ended; `/quit` was sent on our behalf.
    InputEnded,
    /// The user typed `/quit` (with or without a reason).
    Quit,
    /// The server closed or reset the TCP connection.
    ServerClosed,
    /// The server announced `* server shutting down`.
    ServerShuttingDown,
    /// The UDP server's port is closed (the kernel reported connection refused).
    ServerUnreachable,
}

impl Exit {
    /// True when the user chose to leave; false when the server went away.
    pub fn is_clean(self) -> bool {
        matches!(self, Exit::InputEnded | Exit::Quit)
    }
}

/// What can stop the client before the session could end normally.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (for example a zero heartbeat).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `HOST:PORT` could not be resolved.
    #[error("cannot resolve {server}")]
    Resolve {
        /// The address as given.
        server: String,
        /// Why resolution failed.
        #[source]
        source: io::Error,
    },
    /// The address has no `:PORT` (`chatc 127.0.0.1`).
    #[error("{server} has no :PORT; give HOST:PORT, e.g. {host}:PORT with the port chatd serves")]
    NoPort {
        /// The address as given.
        server: String,
        /// The host as it must be written before `:PORT` (`[::1]` for an IPv6 address).
        host: String,
    },
    /// `HOST:PORT` resolved to nothing.
    #[error("{server} resolved to no address")]
    NoAddress {
        /// The address as given.
        server: String,
    },
    /// No TCP connection could be made, or the UDP socket could not be connected.
    #[error("cannot connect to {server}")]
    Connect {
        /// The address as given.
        server: String,
        /// The error for the last address tried.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed: the certificate did not check out (the source says why: expired,
    /// not valid for the host, unknown issuer) or the server does not speak TLS there.
    #[error("TLS with {server} failed")]
    Tls {
        /// The address as given.
        server: String,
        /// What rustls said.
        #[source]
        source: io::Error,
    },
    /// The local UDP socket could not be opened.
    #[error("cannot open a UDP socket")]
    Bind(#[source] io::Error),
    /// Reading the input failed.
    #[error("cannot read input")]
    Input(#[source] io::Error),
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[source] io::Error),
    /// Sending to the server failed for a reason other than it going away.
    #[error("cannot send to the server")]
    Send(#[source] io::Error),
    /// Receiving from the server failed for a reason other than it going away.
    #[error("cannot receive from the server")]
    Recv(#[source] io::Error),
}

/// Runs one session: notices for the user (such as a skipped over-long line)
/// go to stderr. See [`run_with_notices`].
pub async fn run<I, O>(cfg: ClientConfig, input: I, output: O) -> Result<Exit, ClientError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    run_with_notices(cfg, input, output, tokio::io::stderr()).await
}

/// Runs one session, writing notices for the user to `notices` instead of stderr.
///
/// Sends `input` line by line (invalid UTF-8 is replaced, over-long lines are
/// reported and skipped), prints every server line to `output`, and returns
/// why the session ended. On TCP, after leaving it keeps printing until the
/// server closes or [`ClientConfig::quit_wait`] passes, so replies already on
/// their way are not lost.
pub async fn run_with_notices<I, O, N>(
    cfg: ClientConfig,
    input: I,
    output: O,
    notices: N,
) -> Result<Exit, ClientError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    N: AsyncWrite + Unpin,
{
    if let Some(nick) = &cfg.nick {
        // A line break would smuggle a second command onto the wire.
        if nick.is_empty() || nick.contains(['\n', '\r']) {
            return Err(ClientError::Config(
                "the nick must be one non-empty line".into(),
            ));
        }
    }
    // `chatc` holds the heartbeat to MIN_HEARTBEAT..=MAX_HEARTBEAT; the library only refuses what
    // cannot work (zero) or would overflow the timer arithmetic (huge).
    if cfg.transport == Transport::Udp && (cfg.heartbeat.is_zero() || cfg.heartbeat > MAX_HEARTBEAT)
    {
        return Err(ClientError::Config(format!(
            "the heartbeat must be more than zero and at most {MAX_HEARTBEAT:?}"
        )));
    }
    if cfg.transport == Transport::Udp && cfg.tls.is_some() {
        return Err(ClientError::Config("TLS is for TCP only".into()));
    }
    if cfg.max_line == 0 || cfg.max_line > MAX_LINE_LIMIT {
        return Err(ClientError::Config(format!(
            "the line limit must be from 1 to {MAX_LINE_LIMIT} bytes"
        )));
    }
    let addrs = resolve(&cfg.server).await?;
    let input = FramedRead::new(input, LineCodec::new(cfg.max_line));
    let mut session = Session {
        cfg: &cfg,
        output,
        notices,
    };
    let exit = match cfg.transport {
        Transport::Tcp => session.run_tcp(&addrs, input).await,
        Transport::Udp => session.run_udp(addrs[0], input).await,
    }?;
    info!(?exit, "session ended");
    Ok(exit)
}

async fn resolve(server: &str) -> Result<Vec<SocketAddr>, ClientError> {
    if lacks_port(server) {
        let bare = server.trim_start_matches('[').trim_end_matches(']');
        return Err(ClientError::NoPort {
            server: server.to_owned(),
            host: match bare.contains(':') {
                true => format!("[{bare}]"),
                false => bare.to_owned(),
            },
        });
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server)
        .await
        .map_err(|source| ClientError::Resolve {
            server: server.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::NoAddress {
            server: server.to_owned(),
        });
    }
    Ok(addrs)
}

/// Whether `server` is a bare host (`127.0.0.1`, `::1`, `localhost`) rather than `HOST:PORT`, so
/// the user is asked for the port instead of told the address is invalid.
fn lacks_port(server: &str) -> bool {
    if server.parse::<SocketAddr>().is_ok() {
        return false;
    }
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok() || !server.contains(':')
}

/// How the input side of a TCP session finished.
enum InputEnd {
    Quit,
    Eof,
    /// A send failed because the peer is gone.
    ServerGone,
}

struct Session<'a, O, N> {
    cfg: &'a ClientConfig,
    output: O,
    notices: N,
}

impl<O, N> Session<'_, O, N>
where
    O: AsyncWrite + Unpin,
    N: AsyncWrite + Unpin,
{
    async fn run_tcp<I: AsyncRead + Unpin>(
        &mut self,
        addrs: &[SocketAddr],
        input: FramedRead<I, LineCodec>,
    ) -> Result<Exit, ClientError> {
        let stream = self.connect_tcp(addrs).await?;
        // Chat lines are small and interactive: don't let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match &self.cfg.tls {
            None => {
                let (rd, wr) = stream.into_split();
                self.run_stream(rd, wr, input).await
            }
            Some(verify) => {
                let stream = tls::connect(stream, &self.cfg.server, verify).await?;
                let (rd, wr) = tokio::io::split(stream);
                self.run_stream(rd, wr, input).await
            }
        }
    }

    /// The session over a connected stream (plain TCP or TLS), both directions at once.
    async fn run_stream<I, R, W>(
        &mut self,
        rd: R,
        mut wr: W,
        mut input: FramedRead<I, LineCodec>,
    ) -> Result<Exit, ClientError>
    where
        I: AsyncRead + Unpin,
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut server = FramedRead::new(rd, LineCodec::new(SERVER_LINE_MAX));
        // Both directions run concurrently so a slow one never stalls the other.
        let cfg = self.cfg;
        let outgoing = tcp_outgoing(cfg, &mut input, &mut wr, &mut self.notices);
        let incoming = tcp_incoming(&mut server, &mut self.output);
        tokio::pin!(outgoing, incoming);
        let ended = tokio::select! {
            exit = &mut incoming => return exit,
            ended = &mut outgoing => ended?,
        };
        // We are leaving (or the server refused our bytes): keep printing what
        // the server still sends until it closes, but not forever.
        let drained = time::timeout(cfg.quit_wait, &mut incoming).await;
        match (ended, drained) {
            (_, Ok(Err(e @ ClientError::Output(_)))) => Err(e),
            (InputEnd::Quit, _) => Ok(Exit::Quit),
            (InputEnd::Eof, _) => Ok(Exit::InputEnded),
            (InputEnd::ServerGone, Ok(Ok(exit))) => Ok(exit),
            (InputEnd::ServerGone, _) => Ok(Exit::ServerClosed),
        }
    }

    async fn connect_tcp(&self, addrs: &[SocketAddr]) -> Result<TcpStream, ClientError> {
        let mut last_err = None;
        for &addr in addrs {
            match time::timeout(self.cfg.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    debug!(%addr, "connected over TCP");
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    debug!(%addr, error = %e, "TCP connect failed");
                    last_err = Some(e);
                }
                Err(_) => {
                    debug!(%addr, "TCP connect timed out");
                    last_err = Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection attempt timed out",
                    ));
                }
            }
        }
        Err(ClientError::Connect {
            server: self.cfg.server.clone(),
            source: last_err
                .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
        })
    }

    async fn run_udp<I: AsyncRead + Unpin>(
        &mut self,
        addr: SocketAddr,
        mut input: FramedRead<I, LineCodec>,
    ) -> Result<Exit, ClientError> {
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(ClientError::Bind)?;
        // Connecting filters out strangers and makes the kernel report ICMP
        // port unreachable as ECONNREFUSED, which is how we notice the server
        // is gone.
        sock.connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                server: self.cfg.server.clone(),
                source,
            })?;
        debug!(%addr, "UDP socket connected");
        let mut udp = Udp {
            sock: &sock,
            token: None,
        };
        // Once welcomed we ask for a session token and hold our input back until it comes (or a
        // heartbeat passes), so no line goes out without it after the server starts requiring it.
        let mut token_asked: Option<Instant> = None;

        // The server only learns of a UDP client from its datagrams: say hello
        // at once rather than after the first heartbeat.
        let ping = format!("{PING:<PING_SIZE$}");
        if let Some(exit) = udp.send(&ping).await? {
            return Ok(exit);
        }
        if let Some(exit) = udp.send_nick(self.cfg).await? {
            return Ok(exit);
        }

        let heartbeat = self.cfg.heartbeat;
        let mut ticker = time::interval_at(Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut buf = vec![0u8; DATAGRAM_MAX];
        // A validating server may challenge each datagram it gets before we
        // join (the ping and the nick); answer a given cookie once per
        // heartbeat so one challenge does not get two replies.
        let mut answered: Option<(Vec<u8>, Instant)> = None;

        loop {
            tokio::select! {
                frame = input.next(), if token_asked.is_none() => {
                    let line = match frame {
                        None => {
                            // Leaving anyway: a server that is gone changes nothing.
                            udp.send(QUIT).await?;
                            return Ok(Exit::InputEnded);
                        }
                        Some(Err(e)) => return Err(ClientError::Input(e)),
                        Some(Ok(Frame::TooLong)) => {
                            self.too_long().await;
                            continue;
                        }
                        Some(Ok(Frame::Line(line))) => line,
                    };
                    let line = String::from_utf8_lossy(&line);
                    if let Some(exit) = udp.send(&line).await? {
                        return Ok(exit);
                    }
                    if is_quit(&line) {
                        return Ok(Exit::Quit);
                    }
                }
                got = sock.recv(&mut buf) => {
                    let n = match got {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            return Ok(Exit::ServerUnreachable);
                        }
                        Err(e) => return Err(ClientError::Recv(e)),
                    };
                    let Some(line) = datagram_line(&buf[..n]) else {
                        continue;
                    };
                    if let Some(token) = protocol::token_from_answer(line) {
                        // Ours to use, not to show; an answer we did not ask for changes nothing.
                        if token_asked.take().is_some() {
                            debug!("UDP session token received");
                            udp.token = Some(token.to_string());
                        }
                        continue;
                    }
                    // Every line sent before joining earns a challenge; the same one is shown
                    // (and answered) once.
                    let repeated = challenge_cookie(line).is_some_and(|cookie| {
                        matches!(&answered, Some((c, at)) if c == cookie && at.elapsed() < heartbeat)
                    });
                    if repeated {
                        continue;
                    }
                    write_line(&mut self.output, line).await?;
                    if is_welcome(line) {
                        // A welcome means the server (re)admitted this address and holds no token
                        // for it: whatever token we had is void.
                        udp.token = None;
                        token_asked = Some(Instant::now());
                        if let Some(exit) = udp.send(protocol::TOKEN_REQUEST).await? {
                            return Ok(exit);
                        }
                    }
                    if line == SHUTDOWN_NOTICE {
                        return Ok(Exit::ServerShuttingDown);
                    }
                    if let Some(cookie) = challenge_cookie(line) {
                        answered = Some((cookie.to_vec(), Instant::now()));
                        let pong = format!("#pong# {}", String::from_utf8_lossy(cookie));
                        if let Some(exit) = udp.send(&pong).await? {
                            return Ok(exit);
                        }
                        // The nick sent before joining was not taken.
                        if let Some(exit) = udp.send_nick(self.cfg).await? {
                            return Ok(exit);
                        }
                    }
                }
                _ = ticker.tick() => {
                    if token_asked.is_some_and(|at| at.elapsed() >= heartbeat) {
                        // Lost, or a server without tokens: go on without one.
                        warn!("no UDP session token from the server; sending without one");
                        token_asked = None;
                    }
                    if let Some(exit) = udp.send(&ping).await? {
                        return Ok(exit);
                    }
                }
            }
        }
    }

    /// Tells the user an input line was skipped. A failing notice channel must
    /// not end the chat, so its errors are only logged.
    async fn too_long(&mut self) {
        too_long_notice(self.cfg, &mut self.notices).await;
    }
}

async fn too_long_notice<N: AsyncWrite + Unpin>(cfg: &ClientConfig, notices: &mut N) {
    let msg = format!(
        "chatc: input line longer than {} bytes, not sent\n",
        cfg.max_line
    );
    warn!(max_line = cfg.max_line, "over-long input line skipped");
    let res = async {
        notices.write_all(msg.as_bytes()).await?;
        notices.flush().await
    }
    .await;
    if let Err(e) = res {
        debug!(error = %e, "cannot write notice");
    }
}

/// Copies input lines to the server until `/quit`, end of input, or the
/// server refusing our bytes; half-closes the connection when leaving.
async fn tcp_outgoing<I, W, N>(
    cfg: &ClientConfig,
    input: &mut FramedRead<I, LineCodec>,
    wr: &mut W,
    notices: &mut N,
) -> Result<InputEnd, ClientError>
where
    I: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    N: AsyncWrite + Unpin,
{
    if let Some(nick) = &cfg.nick {
        if !tcp_send(wr, &format!("/nick {nick}")).await? {
            return Ok(InputEnd::ServerGone);
        }
    }
    let ended = loop {
        let line = match input.next().await {
            None => {
                if !tcp_send(wr, QUIT).await? {
                    return Ok(InputEnd::ServerGone);
                }
                break InputEnd::Eof;
            }
            Some(Err(e)) => return Err(ClientError::Input(e)),
            Some(Ok(Frame::TooLong)) => {
                too_long_notice(cfg, notices).await;
                continue;
            }
            Some(Ok(Frame::Line(line))) => line,
        };
        let line = String::from_utf8_lossy(&line);
        if !tcp_send(wr, &line).await? {
            return Ok(InputEnd::ServerGone);
        }
        if is_quit(&line) {
            break InputEnd::Quit;
        }
    };
    // Nothing more will be sent; the FIN also tells a server that missed the
    // `/quit` that we are gone.
    if let Err(e) = wr.shutdown().await {
        debug!(error = %e, "TCP shutdown failed");
    }
    Ok(ended)
}

/// Sends one line; `Ok(false)` means the server has gone away.
async fn tcp_send(wr: &mut (impl AsyncWrite + Unpin), line: &str) -> Result<bool, ClientError> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    // The flush matters under TLS, where bytes wait in the session until flushed.
    match async {
        wr.write_all(&buf).await?;
        wr.flush().await
    }
    .await
    {
        Ok(()) => Ok(true),
        Err(e) if peer_gone(&e) => {
            debug!(error = %e, "server gone while sending");
            Ok(false)
        }
        Err(e) => Err(ClientError::Send(e)),
    }
}

/// Prints server lines until the server closes or announces its shutdown.
async fn tcp_incoming<R: AsyncRead + Unpin, O: AsyncWrite + Unpin>(
    server: &mut FramedRead<R, LineCodec>,
    output: &mut O,
) -> Result<Exit, ClientError> {
    loop {
        match server.next().await {
            None => return Ok(Exit::ServerClosed),
            Some(Err(e)) if peer_gone(&e) => {
                debug!(error = %e, "server gone while receiving");
                return Ok(Exit::ServerClosed);
            }
            Some(Err(e)) => return Err(ClientError::Recv(e)),
            Some(Ok(Frame::TooLong)) => {
                warn!(
                    limit = SERVER_LINE_MAX,
                    "over-long line from the server skipped"
                );
            }
            Some(Ok(Frame::Line(line))) => {
                write_line(output, &line).await?;
                if line == SHUTDOWN_NOTICE {
                    return Ok(Exit::ServerShuttingDown);
                }
            }
        }
    }
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}

/// The connected UDP socket, with sends that report a vanished server as an [`Exit`].
struct Udp<'a> {
    sock: &'a UdpSocket,
    /// The session token the server gave us, which every datagram then starts with, so nobody
    /// forging our address can speak for us.
    token: Option<String>,
}

impl Udp<'_> {
    /// Sends one datagram; `Ok(Some(_))` means the server is gone.
    async fn send(&self, line: &str) -> Result<Option<Exit>, ClientError> {
        let tokened;
        let line = match &self.token {
            Some(token) => {
                tokened = protocol::with_token(token, line);
                &tokened
            }
            None => line,
        };
        match self.sock.send(line.as_bytes()).await {
            Ok(_) => Ok(None),
            // The ICMP error from an earlier datagram surfaces on this send.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Ok(Some(Exit::ServerUnreachable))
            }
            Err(e) => Err(ClientError::Send(e)),
        }
    }

    async fn send_nick(&self, cfg: &ClientConfig) -> Result<Option<Exit>, ClientError> {
        match &cfg.nick {
            Some(nick) => self.send(&format!("/nick {nick}")).await,
            None => Ok(None),
        }
    }
}

/// Writes one line and flushes, so piped consumers see it at once.
async fn write_line<O: AsyncWrite + Unpin>(output: &mut O, line: &[u8]) -> Result<(), ClientError> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line);
    buf.push(b'\n');
    output.write_all(&buf).await.map_err(ClientError::Output)?;
    output.flush().await.map_err(ClientError::Output)
}

/// Whether the server will take `line` as leaving (`/quit`, `/exit`, any case,
/// with or without a reason). Asking the server's own parser keeps the two in
/// agreement: a client that kept going after the server dropped it would, on
/// UDP, rejoin with its next heartbeat.
pub(crate) fn is_quit(line: &str) -> bool {
    matches!(
        protocol::parse(line.as_bytes()),
        Input::Command(Command::Quit(_))
    )
}

/// The line a datagram carries, without its trailing line break; `None` for
/// an empty datagram, which carries no line.
fn datagram_line(datagram: &[u8]) -> Option<&[u8]> {
    let line = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!datagram.is_empty()).then_some(line)
}

/// Whether `line` is the server's welcome (`* MOTD - you are NAME; type /help for commands`).
fn is_welcome(line: &[u8]) -> bool {
    line.starts_with(b"* ")
        && line.ends_with(b"; type /help for commands")
        && memchr::memmem::find(line, b" - you are ").is_some()
}

/// The cookie of a join challenge (`* to join, send: #pong# COOKIE`), if
/// `line` is one with a plausible cookie.
fn challenge_cookie(line: &[u8]) -> Option<&[u8]> {
    let cookie = line.strip_prefix(CHALLENGE_PREFIX)?;
    let plausible = !cookie.is_empty() && cookie.iter().all(u8::is_ascii_graphic);
    plausible.then_some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    /// Decodes `chunks` fed one after another, then end of input.
    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    /// What decoding must give: split at `\r\n`, `\n` or a lone `\r`, long lines flagged.
    fn model(max: usize, data: &[u8]) -> Vec<Frame> {
        let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
        let mut i = 0;
        while i < data.len() {
            match data[i] {
                b'\r' if data.get(i + 1) == Some(&b'\n') => {
                    parts.push(Vec::new());
                    i += 1;
                }
                b'\r' | b'\n' => parts.push(Vec::new()),
                b => parts.last_mut().expect("one part at least").push(b),
            }
            i += 1;
        }
        if parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts
            .into_iter()
            .map(|p| {
                if p.len() > max {
                    Frame::TooLong
                } else {
                    Frame::Line(BytesMut::from(&p[..]))
                }
            })
            .collect()
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let got = decode_all(10, &[b"ab\r\ncd\n\n", b"ef"]);
        assert_eq!(got, vec![line(b"ab"), line(b"cd"), line(b""), line(b"ef")]);
    }

    #[test]
    fn keeps_invalid_utf8() {
        assert_eq!(decode_all(10, &[b"\xff\xfe\n"]), vec![line(b"\xff\xfe")]);
    }

    #[test]
    fn over_long_line_reported_once_and_skipped() {
        let got = decode_all(4, &[b"12345", b"6789", b"0\nok\n"]);
        assert_eq!(got, vec![Frame::TooLong, line(b"ok")]);
    }

    #[test]
    fn line_at_limit_with_crlf_passes() {
        assert_eq!(decode_all(4, &[b"1234\r\n"]), vec![line(b"1234")]);
    }

    #[test]
    fn datagram_lines() {
        assert_eq!(datagram_line(b"hi\n"), Some(&b"hi"[..]));
        assert_eq!(datagram_line(b"hi"), Some(&b"hi"[..]));
        assert_eq!(datagram_line(b"\n"), Some(&b""[..]));
        assert_eq!(datagram_line(b""), None);
    }

    #[test]
    fn welcomes() {
        assert!(is_welcome(
            b"* welcome to chatd - you are guest-1 (127.0.0.1:5); type /help for commands"
        ));
        assert!(!is_welcome(
            b"<x> * hi - you are x; type /help for commands"
        ));
        assert!(!is_welcome(
            b"* x left (- you are x; type /help for commands)"
        ));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            challenge_cookie(b"* to join, send: #pong# 00ff"),
            Some(&b"00ff"[..])
        );
        assert_eq!(challenge_cookie(b"* to join, send: #pong# "), None);
        assert_eq!(challenge_cookie(b"* to join, send: #pong# a b"), None);
        assert_eq!(challenge_cookie(b"<x> * to join, send: #pong# 1"), None);
    }

    #[test]
    fn padded_ping_is_still_a_ping_to_the_server() {
        let ping = format!("{PING:<PING_SIZE$}");
        assert_eq!(ping.len(), PING_SIZE);
        assert_eq!(protocol::parse(ping.as_bytes()), Input::Ping);
    }

    #[test]
    fn quit_detection() {
        assert!(is_quit("/quit"));
        assert!(is_quit("/quit bye now"));
        assert!(is_quit(" /QUIT"));
        assert!(is_quit("/exit"));
        assert!(!is_quit("/quitter"));
        assert!(!is_quit("//quit"));
        assert!(!is_quit("quit"));
    }

    proptest! {
        #[test]
        fn decoding_does_not_depend_on_chunking(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            max in 1usize..20,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&data[prev..c]);
                prev = c;
            }
            chunks.push(&data[prev..]);
            prop_assert_eq!(decode_all(max, &chunks), model(max, &data));
        }
    }
}
