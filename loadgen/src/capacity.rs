//! The capacity figure as hashrocket's websocket-shootout measures it: clients join in steps (of
//! 1,000 there); after each step one client sends sample broadcasts, a few in flight at once, and
//! each broadcast's time to reach every other client is taken; a step passes when the given share
//! of its broadcasts (95%) reached everyone within the limit (250 ms). The capacity is the largest
//! step that passed: the run stops at the first step that fails, whose clients cannot all
//! connect, at the most clients asked for, or when its time budget is spent (then the capacity is
//! a lower bound).
//!
//! Clients are lean (a small read buffer, no per-client histogram), since tens of thousands are
//! held at once; they read everything and answer IRC `PING`s, as in the fan-out cases.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::case::{settle, split};
use super::conn;
use super::irc::SharedWriter;
use super::msg::{self, Token, MSG_LEN};
use super::recv::{take_lines, Clock};
use super::send::TcpOut;
use super::server::ServerProc;
use super::sys;

/// Read buffer per client: enough for any line a server sends here (IRC's are 512 bytes at most).
const READ_BUF: usize = 8 * 1024;

/// What a capacity run asks for.
#[derive(Debug, Clone, Serialize)]
pub struct CapacitySpec {
    /// Clients added per step (websocket-shootout: 1,000).
    pub step: usize,
    /// No step beyond this many clients (the descriptors a process may hold set it here).
    pub max_clients: usize,
    /// Broadcasts sent per step.
    pub samples: u32,
    /// Broadcasts in flight at once (the next is sent as one completes).
    pub in_flight: u32,
    /// A broadcast counts when it reached every other client within this.
    #[serde(serialize_with = "ser_ms")]
    pub limit: Duration,
    /// The share of broadcasts that must count for a step to pass (0.95).
    pub share: f64,
    /// A broadcast not complete after this is given up on (it does not count).
    #[serde(serialize_with = "ser_ms")]
    pub give_up: Duration,
    /// The clients are WebSocket members of chatd (`/ws` on `server.http`).
    pub over_ws: bool,
    /// Handshakes in flight while a step connects.
    pub connect_concurrency: usize,
    /// Longest wait for a step's join notices to stop flowing before its broadcasts.
    #[serde(serialize_with = "ser_ms")]
    pub settle_max: Duration,
    /// The whole run against one server ends after this, even between steps: a server that
    /// announces every join to every member (IRC servers do) takes a time growing with the square
    /// of the clients to fill a room. The capacity found is then a lower bound.
    #[serde(serialize_with = "ser_ms")]
    pub budget: Duration,
}

impl CapacitySpec {
    /// websocket-shootout's procedure: steps of 1,000 up to `max_clients`, 40 broadcasts per step,
    /// 4 in flight, 95% within 250 ms.
    pub fn shootout(max_clients: usize) -> CapacitySpec {
        CapacitySpec {
            step: 1000,
            max_clients,
            samples: 40,
            in_flight: 4,
            limit: Duration::from_millis(250),
            share: 0.95,
            give_up: Duration::from_secs(2),
            over_ws: false,
            connect_concurrency: 64,
            settle_max: Duration::from_secs(120),
            budget: Duration::from_secs(600),
        }
    }

    /// The broadcasts that may miss the limit with the step still passing.
    fn allowed_misses(&self) -> u32 {
        let must = (self.share * f64::from(self.samples)).ceil() as u32;
        self.samples.saturating_sub(must)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Clients this step aimed for.
    pub clients: usize,
    /// Clients connected (greeted, or registered and joined) after it.
    pub connected: usize,
    /// Clients of this step that could not connect, and the first reason.
    pub connect_failures: usize,
    /// The first connect failure.
    pub first_error: Option<String>,
    /// Time to connect this step's clients (s).
    pub connect_s: f64,
    /// Time until their join notices stopped flowing (s).
    pub settle_s: f64,
    /// Broadcasts sent.
    pub broadcasts: u32,
    /// Broadcasts that reached every other client within the limit.
    pub within_limit: u32,
    /// Broadcasts given up on (some client never got them in time).
    pub incomplete: u32,
    /// `within_limit / samples`: the share that must reach `spec.share`.
    pub share_within_limit: f64,
    /// 95th percentile of the time for a broadcast to reach everyone (ms; given-up ones count as
    /// never, so this is infinite when more than 5% were).
    pub p95_ms: f64,
    /// Median of the same (ms).
    pub p50_ms: f64,
    /// Server CPU during the broadcasts (s).
    pub server_cpu_s: f64,
    /// This generator's CPU during the broadcasts (s): near the wall time, it was the bottleneck.
    pub gen_cpu_s: f64,
    /// Wall time of the broadcasts (s).
    pub broadcast_s: f64,
    /// Server resident memory after the step (KiB).
    pub server_rss_kib: Option<u64>,
    /// Whether the step passed.
    pub passed: bool,
}

/// A whole run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityResult {
    /// The procedure.
    pub spec: CapacitySpec,
    /// The largest number of clients at which a step passed (0 if none did).
    pub capacity: usize,
    /// Every step run.
    pub steps: Vec<Step>,
    /// Why the run ended.
    pub stopped: String,
    /// False when the time budget ended the run before a step failed or the most clients were
    /// reached: `capacity` is then only a lower bound.
    pub complete: bool,
}

/// Per-broadcast arrivals, shared by every reader: how many clients have the broadcast and when
/// the latest got it.
struct Arrivals {
    count: Vec<AtomicU32>,
    last_ns: Vec<AtomicU64>,
    /// Bytes read by all clients (to see join notices stop flowing).
    bytes: AtomicU64,
}

impl Arrivals {
    fn new(broadcasts: usize) -> Arrivals {
        Arrivals {
            count: (0..broadcasts).map(|_| AtomicU32::new(0)).collect(),
            last_ns: (0..broadcasts).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
        }
    }

    /// Notes every broadcast in `text`, received at `now_ns`; true if there was one.
    fn scan(&self, text: &[u8], now_ns: u64) -> bool {
        msg::scan_tokens(text, |t| {
            if let (0, Some(count)) = (t.sender, self.count.get(t.seq as usize)) {
                count.fetch_add(1, Ordering::Relaxed);
                self.last_ns[t.seq as usize].fetch_max(now_ns, Ordering::Relaxed);
            }
        }) > 0
    }
}

use super::ws::WsStream as Ws;

/// A client's receiving side.
enum Inlet {
    Tcp(OwnedReadHalf, Option<SharedWriter>),
    Ws(SplitStream<Ws>),
}

/// A client's sending side.
enum Outlet {
    Tcp(TcpOut),
    Ws(SplitSink<Ws, Message>),
}

impl Outlet {
    async fn put(&mut self, line: &[u8; MSG_LEN]) -> Result<()> {
        match self {
            Outlet::Tcp(out) => out.put(line).await?,
            Outlet::Ws(sink) => {
                let text = std::str::from_utf8(&line[..MSG_LEN - 1])?;
                sink.send(Message::text(text)).await?;
            }
        }
        Ok(())
    }
}

/// Reads one client until `stop`, noting broadcasts and answering IRC `PING`s.
async fn read(inlet: Inlet, arrivals: Arc<Arrivals>, clock: Clock, stop: CancellationToken) {
    match inlet {
        Inlet::Tcp(mut rd, pong) => {
            let mut buf = vec![0u8; READ_BUF];
            let mut filled = 0;
            let mut replies = Vec::new();
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = rd.read(&mut buf[filled..]) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                };
                let now = clock.now_ns();
                arrivals.bytes.fetch_add(n as u64, Ordering::Relaxed);
                filled = take_lines(&mut buf, filled, n, |line| {
                    if !arrivals.scan(line, now) && pong.is_some() {
                        replies.extend(crate::irc::pong_for(line).unwrap_or_default());
                    }
                });
                if let (Some(wr), false) = (&pong, replies.is_empty()) {
                    use tokio::io::AsyncWriteExt;
                    if wr.lock().await.write_all(&replies).await.is_err() {
                        return;
                    }
                    replies.clear();
                }
            }
        }
        Inlet::Ws(mut frames) => loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => return,
                f = frames.next() => f,
            };
            let Some(Ok(frame)) = frame else { return };
            let now = clock.now_ns();
            if let Message::Text(text) = frame {
                arrivals
                    .bytes
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
                arrivals.scan(text.as_bytes(), now);
            }
        },
    }
}

/// Connects one client the way `spec` says and splits it.
async fn connect(server: &ServerProc, spec: &CapacitySpec) -> Result<(Inlet, Outlet)> {
    let wait = Duration::from_secs(30);
    if spec.over_ws {
        let http = server
            .http
            .ok_or_else(|| anyhow!("a WebSocket run needs chatd started with --http"))?;
        let (sink, frames) = crate::ws::connect_ws(http, server.kind, wait)
            .await?
            .split();
        return Ok((Inlet::Ws(frames), Outlet::Ws(sink)));
    }
    let stream = conn::connect_greeted(server.tcp, None, server.kind, wait).await?;
    let (rd, out, pong) = split(stream, server.kind);
    Ok((Inlet::Tcp(rd, pong), Outlet::Tcp(out)))
}

/// The `q` quantile of `times` (ms), where `None` is a broadcast that never completed.
fn quantile_ms(times: &[Option<f64>], q: f64) -> f64 {
    let mut v: Vec<f64> = times.iter().map(|t| t.unwrap_or(f64::INFINITY)).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Runs the capacity procedure against `server`, which must be fresh (no other clients).
pub async fn run_capacity(server: &mut ServerProc, spec: &CapacitySpec) -> Result<CapacityResult> {
    let step = spec.step.max(1);
    let levels: Vec<usize> = (1..)
        .map(|i| i * step)
        .take_while(|&n| n <= spec.max_clients)
        .collect();
    let arrivals = Arc::new(Arrivals::new(levels.len() * spec.samples as usize));
    let clock = Clock::new();
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    // Every client's sending side stays open until the end (closing one would make the server
    // drop it); the first client's is the sender's.
    let mut outlets: Vec<Outlet> = Vec::new();
    let mut steps = Vec::new();
    let mut next_seq = 0u32;
    let mut capacity = 0;
    let mut stopped = format!("reached the most clients asked for ({})", spec.max_clients);
    let mut complete = true;
    let deadline = tokio::time::Instant::now() + spec.budget;
    for &target in &levels {
        let started = Instant::now();
        let want = target - outlets.len();
        let mut attempts = futures::stream::iter(0..want)
            .map(|_| connect(server, spec))
            .buffer_unordered(spec.connect_concurrency.max(1));
        let (mut failures, mut first_error) = (0, None);
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, attempts.next()).await else {
                complete = false;
                break;
            };
            let Some(r) = next else { break };
            match r {
                Ok((inlet, outlet)) => {
                    readers.spawn(read(inlet, Arc::clone(&arrivals), clock, stop.clone()));
                    outlets.push(outlet);
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        drop(attempts);
        let connect_s = started.elapsed().as_secs_f64();
        let mut result = Step {
            clients: target,
            connected: outlets.len(),
            connect_failures: failures,
            first_error,
            connect_s,
            settle_s: 0.0,
            broadcasts: 0,
            within_limit: 0,
            incomplete: 0,
            share_within_limit: 0.0,
            p95_ms: f64::NAN,
            p50_ms: f64::NAN,
            server_cpu_s: f64::NAN,
            gen_cpu_s: f64::NAN,
            broadcast_s: f64::NAN,
            server_rss_kib: None,
            passed: false,
        };
        if !complete {
            stopped = format!(
                "the time budget ({:?}) ran out while step {target} connected ({} clients in)",
                spec.budget, result.connected
            );
            steps.push(result);
            break;
        }
        if failures > 0 || !server.is_running() {
            stopped = match (server.is_running(), &result.first_error) {
                (false, _) => format!("the server died at {target} clients"),
                (true, e) => format!(
                    "{failures} of {target} clients could not connect ({})",
                    e.as_deref().unwrap_or("?")
                ),
            };
            steps.push(result);
            break;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let quiet = Duration::from_millis(500);
        result.settle_s = settle(&arrivals.bytes, quiet, spec.settle_max.min(left))
            .await
            .as_secs_f64();
        if tokio::time::Instant::now() >= deadline {
            complete = false;
            stopped = format!(
                "the time budget ({:?}) ran out while step {target}'s join notices flowed",
                spec.budget
            );
            steps.push(result);
            break;
        }
        let (cpu0, gen0, wall0) = (server.cpu_ns().ok(), sys::self_cpu_ns(), Instant::now());
        let receivers = (outlets.len() - 1) as u32;
        let sender = &mut outlets[0];
        let times = broadcasts(sender, &arrivals, clock, spec, &mut next_seq, receivers).await?;
        result.broadcast_s = wall0.elapsed().as_secs_f64();
        result.gen_cpu_s = sys::self_cpu_ns().saturating_sub(gen0) as f64 / 1e9;
        result.server_cpu_s = match (cpu0, server.cpu_ns().ok()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => f64::NAN,
        };
        result.server_rss_kib = server.rss_kib().ok();
        let limit_ms = spec.limit.as_secs_f64() * 1e3;
        result.broadcasts = times.len() as u32;
        result.within_limit = times.iter().flatten().filter(|&&t| t <= limit_ms).count() as u32;
        result.incomplete = times.iter().filter(|t| t.is_none()).count() as u32;
        result.share_within_limit = f64::from(result.within_limit) / f64::from(spec.samples.max(1));
        result.p95_ms = quantile_ms(&times, 0.95);
        result.p50_ms = quantile_ms(&times, 0.5);
        result.passed = result.share_within_limit >= spec.share;
        let passed = result.passed;
        steps.push(result);
        if !passed {
            stopped = format!(
                "fewer than {:.0}% of broadcasts reached everyone within {:?} at {target} clients",
                spec.share * 100.0,
                spec.limit
            );
            break;
        }
        capacity = target;
    }
    stop.cancel();
    while readers.join_next().await.is_some() {}
    drop(outlets);
    Ok(CapacityResult {
        spec: spec.clone(),
        capacity,
        steps,
        stopped,
        complete,
    })
}

/// Sends one step's broadcasts from `sender`, `spec.in_flight` at a time, and returns each one's
/// time to reach every other client (ms; `None` if given up on). Stops early once too many have
/// missed the limit for the step to pass.
async fn broadcasts(
    sender: &mut Outlet,
    arrivals: &Arrivals,
    clock: Clock,
    spec: &CapacitySpec,
    next_seq: &mut u32,
    receivers: u32,
) -> Result<Vec<Option<f64>>> {
    let limit_ns = spec.limit.as_nanos() as u64;
    let give_up_ns = spec.give_up.as_nanos() as u64;
    let mut in_flight: VecDeque<(u32, u64)> = VecDeque::new();
    let mut times = Vec::new();
    let (mut sent, mut misses) = (0, 0);
    while times.len() < spec.samples as usize {
        while sent < spec.samples && in_flight.len() < spec.in_flight.max(1) as usize {
            let seq = *next_seq;
            *next_seq += 1;
            let sent_ns = clock.now_ns();
            let line = msg::line(Token {
                sender: 0,
                seq,
                sent_ns,
            });
            sender.put(&line).await?;
            in_flight.push_back((seq, sent_ns));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = clock.now_ns();
        in_flight.retain(|&(seq, sent_ns)| {
            let i = seq as usize;
            if arrivals.count[i].load(Ordering::Relaxed) >= receivers {
                let took = arrivals.last_ns[i]
                    .load(Ordering::Relaxed)
                    .saturating_sub(sent_ns);
                misses += u32::from(took > limit_ns);
                times.push(Some(took as f64 / 1e6));
                false
            } else if now.saturating_sub(sent_ns) > give_up_ns {
                misses += 1;
                times.push(None);
                false
            } else {
                true
            }
        });
        if misses > spec.allowed_misses() {
            // The step cannot pass any more; what is still in flight counts as missed.
            times.extend(in_flight.drain(..).map(|_| None));
            break;
        }
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_count_given_up_broadcasts_as_never() {
        let mut t: Vec<Option<f64>> = (1..=20).map(|i| Some(f64::from(i))).collect();
        assert_eq!(quantile_ms(&t, 0.95), 19.0);
        assert_eq!(quantile_ms(&t, 0.5), 10.0);
        t[0] = None;
        t[1] = None;
        assert!(quantile_ms(&t, 0.95).is_infinite());
    }

    #[test]
    fn shootout_allows_two_misses_in_forty() {
        let spec = CapacitySpec::shootout(20_000);
        assert_eq!(spec.allowed_misses(), 2);
        assert_eq!(
            CapacitySpec {
                samples: 10,
                ..spec
            }
            .allowed_misses(),
            0
        );
    }

    #[test]
    fn arrivals_count_the_senders_broadcasts_only() {
        let a = Arrivals::new(2);
        let line = |sender, seq| {
            msg::line(Token {
                sender,
                seq,
                sent_ns: 5,
            })
        };
        assert!(a.scan(&line(0, 1)[..MSG_LEN - 1], 10));
        assert!(a.scan(&line(0, 1)[..MSG_LEN - 1], 30));
        assert!(
            a.scan(&line(1, 0)[..MSG_LEN - 1], 40),
            "another sender: seen, not counted"
        );
        assert!(
            a.scan(&line(0, 7)[..MSG_LEN - 1], 40),
            "beyond the run: ignored"
        );
        assert!(!a.scan(b"* welcome", 50));
        assert_eq!(a.count[1].load(Ordering::Relaxed), 2);
        assert_eq!(a.last_ns[1].load(Ordering::Relaxed), 30);
        assert_eq!(a.count[0].load(Ordering::Relaxed), 0);
    }
}
