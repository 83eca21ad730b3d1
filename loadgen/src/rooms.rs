//! Several rooms per member (issue 24, item 4): IRC members, each in several channels, with
//! open-loop traffic in every channel. The same members, senders and rates with every member in
//! one channel deliver the same lines per second, so the server's CPU per delivery of the two
//! layouts says what being in several rooms costs.
//!
//! Layout: `members` clients; `rooms = members × rooms_per_member / room_size` channels `#r0`,
//! `#r1`, …; member `i` joins channel `(i mod rooms) + j × rooms / rooms_per_member` for each `j`
//! below `rooms_per_member`, so every channel has `room_size` members. Sender `s` is member `s`
//! and sends to its first channel, `s mod rooms`: with as many senders as channels, one each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::case::settle;
use super::conn::{converse, Turn};
use super::hist::Histogram;
use super::irc::{self, SharedWriter};
use super::msg::{self, Token, MSG_LEN};
use super::recv::Clock;
use super::server::ServerProc;
use super::sys;

/// Read buffer per member: big reads keep the generator's syscalls per line low.
const READ_BUF: usize = 64 * 1024;
/// Most bytes read while registering and joining (every join in a channel is announced).
const REGISTER_MAX: usize = 16 << 20;

/// The load of one layout.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsSpec {
    /// Case name, e.g. `rooms10`.
    pub name: String,
    /// IRC clients, senders included.
    pub members: usize,
    /// Channels each member joins.
    pub rooms_per_member: usize,
    /// Members in each channel.
    pub room_size: usize,
    /// Members that send (the first ones), each to its first channel.
    pub senders: usize,
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// How long the senders send (s).
    pub sending_s: f64,
    /// Registrations in flight while connecting.
    pub connect_concurrency: usize,
}

impl RoomsSpec {
    /// How many channels the layout has.
    pub fn rooms(&self) -> usize {
        (self.members * self.rooms_per_member)
            .checked_div(self.room_size)
            .unwrap_or(0)
    }

    /// Refuses layouts that would not give every channel `room_size` members.
    pub fn check(&self) -> Result<()> {
        let rooms = self.rooms();
        ensure!(
            rooms > 0
                && rooms * self.room_size == self.members * self.rooms_per_member
                && self.members.is_multiple_of(rooms)
                && rooms.is_multiple_of(self.rooms_per_member),
            "{}: {} members in {} channels each cannot fill channels of {}",
            self.name,
            self.members,
            self.rooms_per_member,
            self.room_size
        );
        ensure!(
            self.senders > 0 && self.senders <= self.members,
            "{}: senders must be 1 to {}",
            self.name,
            self.members
        );
        Ok(())
    }

    /// The channels member `i` joins (indices into `#r0`, `#r1`, …).
    pub fn channels_of(&self, i: usize) -> Vec<usize> {
        let rooms = self.rooms();
        let step = rooms / self.rooms_per_member;
        (0..self.rooms_per_member)
            .map(|j| (i % rooms + j * step) % rooms)
            .collect()
    }

    /// Messages each sender sends.
    fn per_sender(&self) -> u32 {
        (self.rate_per_sender * self.sending_s).round() as u32
    }
}

/// Everything measured for one layout.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsResult {
    /// The load.
    pub spec: RoomsSpec,
    /// Time to register everyone and join every channel (s).
    pub connect_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries that should have happened: each message to its channel's other members.
    pub expected: u64,
    /// Deliveries seen.
    pub received: u64,
    /// Sum of N in the server's `you missed N messages` notices.
    pub server_missed_notices: u64,
    /// Delivery latency, 50th and 99th percentile (µs).
    pub p50_us: f64,
    /// 99th percentile latency (µs).
    pub p99_us: f64,
    /// Server CPU during the traffic phase (s).
    pub server_cpu_s: f64,
    /// Generator CPU during the traffic phase (s).
    pub gen_cpu_s: f64,
    /// Other processes' CPU meanwhile (s): the machine is shared.
    pub others_cpu_s: Option<f64>,
    /// Wall time of the traffic phase (s).
    pub traffic_wall_s: f64,
    /// Server CPU per delivery (µs).
    pub cpu_per_delivery_us: f64,
}

/// What every member's reader adds to.
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    missed: AtomicU64,
    bytes: AtomicU64,
}

/// Connects `spec.members` IRC members to `server` (an IRC server: chatd's IRC face, ngircd,
/// InspIRCd), has the senders send at their rate for `spec.sending_s`, waits for the deliveries
/// to stop, and measures.
pub async fn run_rooms(server: &ServerProc, spec: &RoomsSpec) -> Result<RoomsResult> {
    spec.check()?;
    ensure!(
        server.kind.is_irc(),
        "the rooms cases speak IRC; {} does not",
        server.kind.name()
    );
    let addr = server.tcp;
    let clock = Clock::new();
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let started = Instant::now();

    let mut joins = futures::stream::iter(0..spec.members)
        .map(|i| async move { (i, join(addr, &spec.channels_of(i)).await) })
        .buffer_unordered(spec.connect_concurrency.max(1));
    let mut readers = JoinSet::new();
    let mut senders = Vec::new();
    while let Some((i, joined)) = joins.next().await {
        let stream = joined.map_err(|e| anyhow!("member {i}: {e:#}"))?;
        let (rd, wr) = stream.into_split();
        let wr: SharedWriter = Arc::new(Mutex::new(wr));
        if i < spec.senders {
            senders.push((i, Arc::clone(&wr)));
        }
        readers.spawn(read(rd, wr, clock, Arc::clone(&tally), stop.clone()));
    }
    let connect_s = started.elapsed().as_secs_f64();
    // Join announcements are no part of the traffic.
    settle(
        &tally.bytes,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await;
    let received0 = tally.received.load(Ordering::Relaxed);

    let gen_cpu0 = sys::self_cpu_ns();
    let srv_cpu0 = server.cpu_ns().unwrap_or(0);
    let machine0 = sys::machine_cpu().ok();
    let traffic_start = Instant::now();
    let per_sender = spec.per_sender();
    let interval = Duration::from_secs_f64(1.0 / spec.rate_per_sender);
    let start = traffic_start + Duration::from_millis(20);
    let n = spec.senders as u32;
    let mut sending = JoinSet::new();
    for (i, wr) in senders {
        let channel = format!("#r{}", spec.channels_of(i)[0]);
        let phase = interval * i as u32 / n;
        sending.spawn(send(
            wr,
            channel,
            i as u32,
            per_sender,
            start + phase,
            interval,
            clock,
        ));
    }
    let mut sent = 0;
    while let Some(done) = sending.join_next().await {
        sent += done??;
    }
    let expected = sent * (spec.room_size as u64 - 1);
    // Until everything arrived, or nothing more does for a while.
    let drain_until = Instant::now() + Duration::from_secs(30);
    let mut last = (tally.received.load(Ordering::Relaxed), Instant::now());
    while Instant::now() < drain_until {
        let now = tally.received.load(Ordering::Relaxed);
        if now - received0 >= expected {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let traffic_wall_s = traffic_start.elapsed().as_secs_f64();
    let server_cpu_s = server.cpu_ns().unwrap_or(0).saturating_sub(srv_cpu0) as f64 / 1e9;
    let gen_cpu_s = sys::self_cpu_ns().saturating_sub(gen_cpu0) as f64 / 1e9;
    let others_cpu_s = match (machine0, sys::machine_cpu().ok()) {
        (Some(before), Some(after)) => {
            let busy = after.process_ns.saturating_sub(before.process_ns) as f64 / 1e9;
            Some((busy - server_cpu_s - gen_cpu_s).max(0.0))
        }
        _ => None,
    };
    stop.cancel();
    let mut hist = Histogram::new();
    while let Some(h) = readers.join_next().await {
        hist.merge(&h?);
    }
    let received = tally.received.load(Ordering::Relaxed) - received0;
    Ok(RoomsResult {
        spec: spec.clone(),
        connect_s,
        sent,
        expected,
        received,
        server_missed_notices: tally.missed.load(Ordering::Relaxed),
        p50_us: hist.quantile(0.5) as f64 / 1e3,
        p99_us: hist.quantile(0.99) as f64 / 1e3,
        server_cpu_s,
        gen_cpu_s,
        others_cpu_s,
        traffic_wall_s,
        cpu_per_delivery_us: server_cpu_s * 1e6 / received.max(1) as f64,
    })
}

/// Registers a fresh member and joins `channels`, waiting for the end of each one's `NAMES`.
async fn join(addr: std::net::SocketAddr, channels: &[usize]) -> Result<TcpStream> {
    let wait = Duration::from_secs(60);
    tokio::time::timeout(wait, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let nick = irc::next_nick();
        let hello = format!("NICK {nick}\r\nUSER {nick} 0 * :bench client\r\n");
        stream.write_all(hello.as_bytes()).await?;
        let mut names_ended = 0;
        converse(&mut stream, REGISTER_MAX, |line| {
            Ok(if let Some(pong) = irc::pong_for(line) {
                Turn::Reply(pong)
            } else if memchr::memmem::find(line, b"FAIL JOIN").is_some() {
                // chatd refuses a join this way (say, past the rooms one address may open).
                bail!("refused: {}", String::from_utf8_lossy(line).trim_end())
            } else {
                match irc::numeric(line) {
                    Some(d) if &d == b"001" => Turn::Reply(
                        channels
                            .iter()
                            .map(|c| format!("JOIN #r{c}\r\n"))
                            .collect::<String>()
                            .into_bytes(),
                    ),
                    Some(d) if &d == b"366" => {
                        names_ended += 1;
                        if names_ended == channels.len() {
                            Turn::Done
                        } else {
                            Turn::Wait
                        }
                    }
                    Some(d) if d[0] >= b'4' && &d != b"422" => {
                        bail!("refused: {}", String::from_utf8_lossy(line).trim_end())
                    }
                    _ => Turn::Wait,
                }
            })
        })
        .await?;
        Ok(stream)
    })
    .await
    .map_err(|_| anyhow!("not in its channels within {wait:?}"))?
}

/// `PRIVMSG channel :` and a message line, ending in `\r\n`.
fn privmsg(channel: &str, line: &[u8; MSG_LEN]) -> Vec<u8> {
    let mut out = format!("PRIVMSG {channel} :").into_bytes();
    out.extend_from_slice(&line[..MSG_LEN - 1]);
    out.extend_from_slice(b"\r\n");
    out
}

/// Sends `count` messages to `channel`, the first at `first`, then one every `interval` (open
/// loop: a late send does not move the ones after it). Returns how many were sent.
async fn send(
    wr: SharedWriter,
    channel: String,
    sender: u32,
    count: u32,
    first: Instant,
    interval: Duration,
    clock: Clock,
) -> Result<u64> {
    for seq in 0..count {
        tokio::time::sleep_until((first + interval * seq).into()).await;
        let token = Token {
            sender,
            seq,
            sent_ns: clock.now_ns(),
        };
        wr.lock()
            .await
            .write_all(&privmsg(&channel, &msg::line(token)))
            .await?;
    }
    Ok(u64::from(count))
}

/// Reads one member until `stop`: counts message tokens and their latency, answers `PING`, and
/// adds up the server's `you missed N messages` notices.
async fn read(
    mut rd: OwnedReadHalf,
    wr: SharedWriter,
    clock: Clock,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> Histogram {
    let mut hist = Histogram::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = rd.read(&mut buf[filled..]) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let now = clock.now_ns();
        tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let end = filled + n;
        let (mut start, mut got, mut pongs) = (0, 0, Vec::new());
        for nl in memchr::memchr_iter(b'\n', &buf[..end]) {
            let line = &buf[start..nl];
            start = nl + 1;
            let found = msg::scan_tokens(line, |t| hist.record(now.saturating_sub(t.sent_ns)));
            got += found as u64;
            if found > 0 {
                continue;
            }
            if let Some(pong) = irc::pong_for(line) {
                pongs.extend(pong);
            } else if let Some(missed) = missed(line) {
                tally.missed.fetch_add(missed, Ordering::Relaxed);
            }
        }
        tally.received.fetch_add(got, Ordering::Relaxed);
        buf.copy_within(start..end, 0);
        // A line longer than the whole buffer is no message of ours: drop it.
        filled = if end - start == buf.len() {
            0
        } else {
            end - start
        };
        if !pongs.is_empty() && wr.lock().await.write_all(&pongs).await.is_err() {
            break;
        }
    }
    hist
}

/// N from a server's `NOTICE nick :you missed N messages in #channel`.
fn missed(line: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, b" :you missed ")?;
    let rest = std::str::from_utf8(&line[at + 13..]).ok()?;
    rest.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rooms_per_member: usize) -> RoomsSpec {
        RoomsSpec {
            name: "t".into(),
            members: 1000,
            rooms_per_member,
            room_size: 100,
            senders: 100,
            rate_per_sender: 10.0,
            sending_s: 1.0,
            connect_concurrency: 8,
        }
    }

    #[test]
    fn every_channel_gets_room_size_members_and_every_member_its_rooms() {
        for per_member in [1, 10] {
            let spec = spec(per_member);
            spec.check().unwrap();
            let mut counts = vec![0; spec.rooms()];
            for i in 0..spec.members {
                let mut mine = spec.channels_of(i);
                mine.sort_unstable();
                mine.dedup();
                assert_eq!(mine.len(), per_member, "member {i}");
                for c in mine {
                    counts[c] += 1;
                }
            }
            assert!(counts.iter().all(|&c| c == 100), "{counts:?}");
        }
        // Ten in each: a hundred channels, one sender each; one in each: ten channels of ten.
        assert_eq!(spec(10).rooms(), 100);
        assert_eq!(spec(1).rooms(), 10);
    }

    #[test]
    fn layouts_that_cannot_fill_their_channels_are_refused() {
        let bad = RoomsSpec {
            members: 999,
            ..spec(10)
        };
        assert!(bad.check().is_err());
        let bad = RoomsSpec {
            senders: 0,
            ..spec(10)
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn a_missed_notice_and_a_privmsg() {
        assert_eq!(
            missed(b":irc.bench.local NOTICE c1 :you missed 12 messages in #r3"),
            Some(12)
        );
        assert_eq!(missed(b":c1!u@h PRIVMSG #r1 :hello"), None);
        let token = Token {
            sender: 2,
            seq: 5,
            sent_ns: 7,
        };
        let line = privmsg("#r4", &msg::line(token));
        assert!(line.starts_with(b"PRIVMSG #r4 :m 2 5 7 x"));
        assert!(line.ends_with(b"x\r\n"));
        let mut found = Vec::new();
        msg::scan_tokens(&line, |t| found.push(t));
        assert_eq!(found, [token]);
    }
}
